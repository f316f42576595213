import path from 'node:path';
import { freePort, startTemporalDevServer } from '../../scripts/services';
import { startTestApp, type TestApp } from '../harness';

describe('health', () => {
  it('liveness answers ok without touching dependencies', async () => {
    const t = await startTestApp();
    try {
      const res = await t.get('/api/v1/health');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ status: 'ok' });
    } finally {
      await t.close();
    }
  });

  describe('readiness', () => {
    // A Temporal server of this suite's own, so stopping it disturbs no other suite.
    let temporal: Awaited<ReturnType<typeof startTemporalDevServer>>;
    let t: TestApp;
    beforeAll(async () => {
      const dir = process.env.AUDITFLOW_TEST_DIR ?? '';
      temporal = await startTemporalDevServer({
        cliPath: process.env.TEMPORAL_CLI_PATH ?? 'temporal',
        dbFile: path.join(dir, 'health-temporal.db'),
        port: await freePort(),
        uiPort: await freePort(),
      });
      t = await startTestApp({ TEMPORAL_ADDRESS: temporal.address });
    });
    afterAll(async () => {
      await t.close();
      await temporal.stop();
    });

    it('is healthy with each check and its latency while everything runs', async () => {
      const res = await t.get('/api/v1/health/ready');
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('healthy');
      for (const name of ['database', 'temporal']) {
        expect(res.body.checks[name]).toMatchObject({ status: 'healthy', latencyMs: expect.any(Number) });
      }
    });

    it('answers 503 naming Temporal when Temporal is stopped', async () => {
      await temporal.stop();
      const res = await t.get('/api/v1/health/ready');
      expect(res.status).toBe(503);
      expect(res.body.status).toBe('unhealthy');
      expect(res.body.checks.temporal.status).toBe('unhealthy');
      expect(res.body.checks.temporal.error).toEqual(expect.any(String));
      expect(res.body.checks.database.status).toBe('healthy');
    });
  });
});
