import { randomUUID } from 'node:crypto';
import type { ActivityInterceptorsFactory, Worker } from '@temporalio/worker';
import { JobEvent, type JobStatus } from '../../db';
import type { TestApp } from '../harness';
import { createTestWorker } from '../harness/worker';
import { backendsBlockedBy, lockJobRow, seedFinishedJobs, waitUntil, type RowLock } from './deletion-fixtures';

export { backendsBlockedBy, lockJobRow, seedFinishedJobs, waitUntil, type RowLock } from './deletion-fixtures';

/**
 * Helpers of the API-level jobs suites, on top of deletion-fixtures: holding a deletion "running"
 * with a real Postgres row lock (no sleeps, no mocks), and polling the API until a job reaches a state.
 */

export interface JobBody {
  id: string;
  kind: string;
  title: string;
  status: JobStatus;
  stage: string | null;
  counters: Record<string, number>;
  error: { message: string } | null;
  projectId: string | null;
  workflowId: string;
  requestedBy: string;
  retryOf: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  progress?: { stage: string; counters: Record<string, number> } | null;
}

/** Generous: only a broken job ever waits this long. */
const DEADLINE_MS = 20_000;

/** GET /jobs/:id until the job satisfies `done`; returns that answer. */
export function waitForJob(t: TestApp, token: string, id: string, done: (job: JobBody) => boolean, what = 'the job'): Promise<JobBody> {
  return waitUntil(
    `${what} (${id}) is as expected`,
    async () => {
      const res = await t.get(`/api/v1/jobs/${id}`, { token });
      if (res.status !== 200) throw new Error(`GET /jobs/${id} answered ${res.status}: ${res.text}`);
      return done(res.body as JobBody) ? (res.body as JobBody) : undefined;
    },
    DEADLINE_MS,
  );
}

export const isFinished = (job: JobBody) => job.status !== 'queued' && job.status !== 'running';

export async function createProject(t: TestApp, token: string, label = 'project'): Promise<{ id: string; name: string }> {
  const res = await t.post('/api/v1/projects', { name: `${label} ${randomUUID()}` }, { token });
  if (res.status !== 201) throw new Error(`create project answered ${res.status}: ${res.text}`);
  return res.body;
}

/** Resolves once a session (a deletion batch) waits for the row `lock` holds. */
export function blockedOn(t: TestApp, lock: RowLock): Promise<number> {
  return waitUntil('a deletion batch waits for the locked row', async () => (await backendsBlockedBy(t.sequelize, lock.pid)) || undefined, DEADLINE_MS);
}

export interface HeldDeletion {
  project: { id: string; name: string };
  /** The 202 answer of DELETE /projects/:id. */
  job: JobBody;
  lock: RowLock;
}

/**
 * A project deletion held in its first batch: the project has `seeded` finished jobs, the newest
 * is row-locked, so the batch that reaches it blocks. Resolves once the batch is waiting on the
 * lock and GET shows the job running. Release `lock` to let it go on.
 */
export async function holdDeletionRunning(t: TestApp, token: string, tenantId: string, seeded = 3): Promise<HeldDeletion> {
  const project = await createProject(t, token, 'held');
  const ids = await seedFinishedJobs(tenantId, project.id, seeded);
  const lock = await lockJobRow(ids.at(-1)!);
  try {
    const res = await t.delete(`/api/v1/projects/${project.id}`, { token });
    if (res.status !== 202) throw new Error(`DELETE project answered ${res.status}: ${res.text}`);
    await blockedOn(t, lock);
    await waitForJob(t, token, res.body.id, (j) => j.status === 'running', 'the deletion to run');
    return { project, job: res.body as JobBody, lock };
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/** The event types of a job, in order. */
export async function eventTypes(jobId: string): Promise<string[]> {
  const events = await JobEvent.findAll({ where: { jobId }, order: [['seq', 'ASC']] });
  return events.map((e) => e.type);
}

/** What the worker saw of one activity execution: whether a cancellation reached it, and how it ended. */
export interface ActivityRun {
  type: string;
  workflowId: string;
  /** Set when the activity's cancellation signal fired (delivered by a heartbeat's answer). */
  cancelled?: string;
  outcome?: 'completed' | 'failed';
}

/** An inbound interceptor that only watches: every activity runs as it would, and is recorded in `runs`. */
function watchActivities(runs: ActivityRun[]): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const run: ActivityRun = { type: ctx.info.activityType, workflowId: ctx.info.workflowExecution?.workflowId ?? '' };
        runs.push(run);
        ctx.cancellationSignal.addEventListener('abort', () => (run.cancelled = String(ctx.cancellationSignal.reason)), { once: true });
        try {
          const result = await next(input);
          run.outcome = 'completed';
          return result;
        } catch (err) {
          run.outcome = 'failed';
          throw err;
        }
      },
    },
  });
}

export interface RunningWorker {
  worker: Worker;
  /** Every activity execution so far, in start order. */
  activityRuns: ActivityRun[];
  stop(): Promise<void>;
}

/** A real worker on the app's task queue, running until `stop()`, that records its activity executions. */
export async function runTestWorker(t: TestApp): Promise<RunningWorker> {
  const activityRuns: ActivityRun[] = [];
  const { worker, connection } = await createTestWorker(t, { interceptors: { activity: [watchActivities(activityRuns)] } });
  const running = worker.run();
  return {
    worker,
    activityRuns,
    async stop() {
      worker.shutdown();
      await running;
      await connection.close();
    },
  };
}
