import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { migrateUp } from '../../db/migrate';
import { freePort, startEmbeddedPostgres, startTemporalDevServer } from '../../scripts/services';
import { writeWorkflowBundle } from '../../workers/workflow-bundle';

/**
 * Starts the real services once for the whole run, on free ports and in a temporary directory,
 * so a running `npm run dev` is never disturbed. Suites read the addresses from the environment.
 */
export default async function globalSetup(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'auditflow-test-'));
  await chmod(dir, 0o755); // embedded Postgres runs as its own user when we are root
  const [pgPort, temporalPort, uiPort] = [await freePort(), await freePort(), await freePort()];
  const [postgres, temporal] = await Promise.all([
    startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres'), port: pgPort, durable: false }),
    startTemporalDevServer({
      cliPath: process.env.TEMPORAL_CLI_PATH ?? 'temporal',
      dbFile: path.join(dir, 'temporal.db'),
      port: temporalPort,
      uiPort,
      logFile: path.join(dir, 'temporal.log'),
    }),
  ]);
  await migrateUp(postgres.url);

  const bundlePath = path.join(dir, 'workflow-bundle.js');
  await writeWorkflowBundle(bundlePath);

  Object.assign(process.env, {
    NODE_ENV: 'test',
    AUDITFLOW_DATA_DIR: path.join(dir, 'data'),
    DATABASE_URL: postgres.url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_UI_URL: temporal.uiUrl,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    BCRYPT_COST: '4',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    AUDITFLOW_TEST_DIR: dir,
    AUDITFLOW_TEST_WORKFLOW_BUNDLE: bundlePath,
  });
  (globalThis as { __auditflowServices?: unknown }).__auditflowServices = { postgres, temporal, dir };
}
