import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities, createLlmQueueActivities } from '../activities';
import { createDatabase } from '../db';
import { createBlobStore } from '../lib/blob-store';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createVectorStore } from '../lib/vector-store';
import { connectTemporal } from '../lib/temporal';
import { ensureSchedules } from './schedules';
import { writeWorkflowBundleInChild } from './workflow-bundle';

/** Runs the workers of both task queues until SIGINT/SIGTERM, then drains and exits. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.LOG_PRETTY ?? config.NODE_ENV === 'development', name: 'worker' });
  // The SDK's own log goes through ours, warnings and errors only (its INFO includes a webpack report).
  Runtime.install({
    logger: new DefaultLogger('WARN', ({ level, message, meta }) => logger[level === 'ERROR' ? 'error' : 'warn']({ sdk: meta }, message)),
  });
  const sequelize = createDatabase(config);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const client = await connectTemporal(config);
  const identity = `${process.pid}@${os.hostname()}`;
  const common = { connection, namespace: config.TEMPORAL_NAMESPACE, identity };
  const deps = { sequelize, temporal: client, config, blobs: createBlobStore(config), vectors: createVectorStore(config) };

  const workflowBundle = { codePath: path.join(config.AUDITFLOW_DATA_DIR, `workflow-bundle-${process.pid}.js`) };
  await mkdir(config.AUDITFLOW_DATA_DIR, { recursive: true });
  await writeWorkflowBundleInChild(workflowBundle.codePath);
  const queues = [
    { taskQueue: config.TEMPORAL_TASK_QUEUE, workflowBundle, activities: createActivities(deps) },
    // Global ceilings on model calls: per worker (concurrency) and per queue across all workers
    // (enforced by the Temporal server); per-provider limits live in the gateway.
    {
      taskQueue: config.TEMPORAL_LLM_TASK_QUEUE,
      activities: createLlmQueueActivities(deps),
      maxConcurrentActivityTaskExecutions: config.LLM_WORKER_CONCURRENCY,
      maxTaskQueueActivitiesPerSecond: config.LLM_QUEUE_ACTIVITIES_PER_SECOND,
    },
  ];
  // The SDK refuses a worker with nothing to run, so a queue without work yet gets no worker.
  const served = queues.filter((q) => q.workflowBundle !== undefined || Object.keys(q.activities).length > 0);
  const workers = await Promise.all(served.map((q) => Worker.create({ ...common, ...q })));
  await ensureSchedules(client, config.TEMPORAL_TASK_QUEUE, config);
  logger.info({ identity, taskQueues: served.map((q) => q.taskQueue), namespace: config.TEMPORAL_NAMESPACE }, 'worker started');

  // Worker.run() handles SIGINT/SIGTERM itself: it stops polling, lets running tasks finish, then resolves.
  await Promise.all(workers.map((w) => w.run()));
  logger.info({ identity }, 'worker stopped');
  await client.connection.close();
  await connection.close();
  await sequelize.close();
  await deps.vectors.close();
  await rm(workflowBundle.codePath, { force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
