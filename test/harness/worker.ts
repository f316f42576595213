import { DefaultLogger, NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, createLlmQueueActivities } from '../../activities';
import type { TestApp } from './index';

let runtimeInstalled = false;

function installRuntime(): void {
  if (runtimeInstalled) return;
  // The SDK's own INFO lines (worker state changes) would drown the test output.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  runtimeInstalled = true;
}

/** The workflow bundle global-setup built once for the whole run. */
export const workflowBundle = { codePath: process.env.AUDITFLOW_TEST_WORKFLOW_BUNDLE ?? '' };

/**
 * A real worker on the app's own task queue, running our workflows (from the shared bundle) and
 * activities against the test database. Close its connection when done.
 */
export async function createTestWorker(t: TestApp, options: Partial<WorkerOptions> = {}): Promise<{ worker: Worker; taskQueue: string; connection: NativeConnection }> {
  installRuntime();
  const connection = await NativeConnection.connect({ address: t.config.TEMPORAL_ADDRESS });
  const taskQueue = t.config.TEMPORAL_TASK_QUEUE;
  const worker = await Worker.create({
    connection,
    namespace: t.config.TEMPORAL_NAMESPACE,
    taskQueue,
    workflowBundle,
    activities: createActivities({ sequelize: t.sequelize, temporal: t.temporal, config: t.config, blobs: t.blobs, vectors: t.vectors }),
    ...options,
  });
  return { worker, taskQueue, connection };
}

/**
 * A real worker on the app's LLM task queue, running the model-call activities (the gateway)
 * against the test database. Several may run at once, as several worker processes would.
 */
export async function createTestLlmWorker(t: TestApp, options: Partial<WorkerOptions> = {}): Promise<{ worker: Worker; taskQueue: string; connection: NativeConnection }> {
  installRuntime();
  const connection = await NativeConnection.connect({ address: t.config.TEMPORAL_ADDRESS });
  const taskQueue = t.config.TEMPORAL_LLM_TASK_QUEUE;
  const worker = await Worker.create({
    connection,
    namespace: t.config.TEMPORAL_NAMESPACE,
    taskQueue,
    activities: createLlmQueueActivities({ sequelize: t.sequelize, temporal: t.temporal, config: t.config, blobs: t.blobs, vectors: t.vectors }),
    maxConcurrentActivityTaskExecutions: t.config.LLM_WORKER_CONCURRENCY,
    ...options,
  });
  return { worker, taskQueue, connection };
}
