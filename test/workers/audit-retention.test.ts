import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { ensureSchedules } from '../../workers/schedules';
import { auditRetentionScheduleId, jobReconciliationScheduleId } from '../../workflows/definitions';
import { startTestApp, type TestApp } from '../harness';
import { createTestWorker, workflowBundle } from '../harness/worker';

describe('audit retention workflow', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('moves rows past retention to the archive, keeps recent ones, and replays deterministically', async () => {
    const marker = `test.retention.${randomUUID()}`;
    await t.sequelize.query(
      `INSERT INTO audit_logs (actor_type, action, outcome, created_at) VALUES
         ('system', :old, 'success', now() - interval '400 days'),
         ('system', :recent, 'success', now() - interval '5 days')`,
      { replacements: { old: `${marker}.old`, recent: `${marker}.recent` } },
    );

    const { worker, taskQueue, connection } = await createTestWorker(t);
    const handle = await worker.runUntil(async () => {
      const h = await t.temporal.workflow.start('auditRetention', { taskQueue, workflowId: `audit-retention-${randomUUID()}`, args: [{ retentionDays: 365 }] });
      // How many rows it moved depends on what other suites left behind; the end state below is what counts.
      await h.result();
      return h;
    });

    const [live] = await t.sequelize.query('SELECT action FROM audit_logs WHERE action LIKE :m', { replacements: { m: `${marker}%` } });
    const [archived] = await t.sequelize.query('SELECT action FROM audit_logs_archive WHERE action LIKE :m', { replacements: { m: `${marker}%` } });
    expect(live).toEqual([{ action: `${marker}.recent` }]);
    expect(archived).toEqual([{ action: `${marker}.old` }]);

    await connection.close();
    await Worker.runReplayHistory({ workflowBundle }, await handle.fetchHistory());
  });

  it('is scheduled daily with the configured retention, idempotently, beside the job reconciliation sweep', async () => {
    const taskQueue = `test-schedule-${randomUUID()}`;
    await ensureSchedules(t.temporal, taskQueue, { AUDIT_RETENTION_DAYS: 90 });
    await ensureSchedules(t.temporal, taskQueue, { AUDIT_RETENTION_DAYS: 30 });
    const handle = t.temporal.schedule.getHandle(auditRetentionScheduleId(taskQueue));
    const schedule = await handle.describe();
    expect(schedule.action).toMatchObject({ type: 'startWorkflow', workflowType: 'auditRetention', args: [{ retentionDays: 30 }] });
    expect(schedule.spec.intervals?.[0]?.every).toBe(86_400_000);
    expect(schedule.action).toMatchObject({ taskQueue });
    await handle.delete();

    const sweep = t.temporal.schedule.getHandle(jobReconciliationScheduleId(taskQueue));
    expect((await sweep.describe()).action).toMatchObject({ workflowType: 'reconcileJobs', taskQueue });
    await sweep.delete();
  });
});
