import { randomUUID } from 'node:crypto';
import type { ActivityInterceptorsFactory, Worker } from '@temporalio/worker';
import { Client } from 'pg';
import type { Sequelize } from 'sequelize';
import { Job, JobEvent, type JobStatus } from '../../db';
import { auditRetentionScheduleId, jobReconciliationScheduleId } from '../../workflows/definitions';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { runEntry, type RunningEntry } from '../harness/processes';
import { createTestWorker } from '../harness/worker';

/**
 * Helpers of the jobs suites (and of the workflow history recorder): data in a known deletion
 * order, a row lock that holds a deletion "running" for as long as a test wants (real Postgres
 * locks: no sleeps, no mocks), polling the API until a job reaches a state, and a real worker.
 */

/**
 * Finished jobs of a project, as its data for deletion to remove, created a second apart so the
 * deletion order (oldest first) is known. Returns their ids in that order.
 */
export async function seedFinishedJobs(tenantId: string, projectId: string, count: number): Promise<string[]> {
  const first = Date.now() - (count + 60) * 1000;
  const rows = Array.from({ length: count }, (_, i) => {
    const id = randomUUID();
    return {
      id,
      tenantId,
      projectId,
      kind: 'deleteProject',
      workflowId: `seed-${id}`,
      title: 'seeded',
      requestedBy: 'system',
      status: 'completed' as const,
      createdAt: new Date(first + i * 1000),
    };
  });
  await Job.bulkCreate(rows);
  const ids = rows.map((r) => r.id);
  // The deleter's own order (oldest first): what a test locks must be where it thinks it is.
  const stored = await Job.findAll({ attributes: ['id'], where: { id: ids }, order: [['createdAt', 'ASC']] });
  if (stored.map((j) => j.id).join() !== ids.join()) throw new Error('seeded jobs are not stored in creation order');
  return ids;
}

export interface RowLock {
  /** The backend holding the lock: a batch waiting for it shows up in `pg_blocking_pids`. */
  pid: number;
  /** Rolls back and disconnects; safe to call twice. */
  release(): Promise<void>;
}

/**
 * Holds `SELECT … FOR UPDATE` on one job row in an open transaction of a connection of its own:
 * the deletion batch that reaches this row waits until `release()`, the batches before it go through.
 */
export const lockJobRow = (jobId: string): Promise<RowLock> => lockRow('jobs', jobId);

/**
 * The same on a secret's row: a resolution of that secret waits until `release()` (its
 * access-log row's foreign key needs a share lock on the secret), so a credential check holds running.
 */
export const lockSecretRow = (secretId: string): Promise<RowLock> => lockRow('secrets', secretId);

function lockRow(table: 'jobs' | 'secrets', id: string): Promise<RowLock> {
  return holdTransaction(async (client) => {
    const locked = await client.query(`SELECT id FROM ${table} WHERE id = $1 FOR UPDATE`, [id]);
    if (locked.rowCount !== 1) throw new Error(`${table} row ${id} not found to lock`);
  });
}

/**
 * Opens a transaction on a connection of its own, runs `work` in it (taking the locks a test
 * wants held) and leaves it open: whatever waits for those locks waits until `release()`.
 */
export async function holdTransaction(work: (client: Client) => Promise<void>): Promise<RowLock> {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  await client.query('BEGIN');
  await work(client);
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  let released: Promise<void> | undefined;
  return {
    pid: rows[0]?.pid ?? 0,
    release() {
      released ??= client.query('ROLLBACK').then(
        () => client.end(),
        () => client.end(),
      );
      return released;
    },
  };
}

/** How many other backends are waiting for a lock `pid` holds (read live, outside any transaction). */
export async function backendsBlockedBy(sequelize: Sequelize, pid: number): Promise<number> {
  const [rows] = await sequelize.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))', { replacements: { pid } });
  return (rows as { n: number }[])[0]?.n ?? 0;
}

/** Polls `check` until it returns a value other than undefined/false; fails with `what` after `timeoutMs`. */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

/** A new project named `<label>-<uuid>`, with `settings` when given. */
export async function createProject(t: TestApp, token: string, label = 'project', settings?: Record<string, unknown>): Promise<{ id: string; name: string }> {
  const res = await t.post('/api/v1/projects', { name: `${label}-${randomUUID()}`, settings }, { token });
  if (res.status !== 201) throw new Error(`create project answered ${res.status}: ${res.text}`);
  return res.body;
}

/**
 * Creates a project named `<label>-<uuid>` as `member`, deletes it, and waits for the deletion
 * job to finish; expects it completed. Returns the project's id and the finished job.
 */
export async function deleteProjectAndWait(t: TestApp, member: Member, label: string): Promise<{ projectId: string; job: JobBody }> {
  const project = await createProject(t, member.accessToken, label);
  const started = await t.delete(`/api/v1/projects/${project.id}`, { token: member.accessToken });
  expect(started.status).toBe(202);
  const job = await waitForJob(t, member.accessToken, (started.body as JobBody).id, isFinished, 'the deletion');
  expect(job.status).toBe('completed');
  return { projectId: project.id, job };
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

export interface JobsSuite {
  t: TestApp;
  worker: RunningWorker;
  /** The admin of a tenant registered for the suite. */
  admin: Member;
  /** Stops the worker, then closes the app. */
  stop(): Promise<void>;
}

/**
 * What a jobs suite runs against: the app, a real worker on its task queue (`runTestWorker`) and
 * a tenant registered as `label`. Whatever started is stopped again if a later step fails.
 */
export async function startJobsSuite(label?: string, app: { env?: Record<string, string>; logTo?: NodeJS.WritableStream } = {}): Promise<JobsSuite> {
  const t = await startTestApp(app.env, { logTo: app.logTo });
  let worker: RunningWorker | undefined;
  try {
    worker = await runTestWorker(t);
    const admin = await registerTenant(t, label);
    const running = worker;
    return {
      t,
      worker: running,
      admin,
      async stop() {
        await running.stop();
        await t.close();
      },
    };
  } catch (err) {
    await worker?.stop();
    await t.close();
    throw err;
  }
}

/** Secrets made by `createSecrets`: what a leak test looks for, and what the API answered. */
export interface CreatedSecret {
  id: string;
  name: string;
  reference: string;
  value: string;
}

/** Creates a secret per label (named `<label>-<random>`, with a random value of its own) as `admin`. */
export async function createSecrets(t: TestApp, admin: Member, labels: string[]): Promise<CreatedSecret[]> {
  const created: CreatedSecret[] = [];
  for (const label of labels) {
    const name = `${label}-${randomUUID().slice(0, 8)}`;
    // Long and random: found anywhere, it can only be a leak.
    const value = `${label}-value-${randomUUID()}-${randomUUID()}`;
    const res = await t.post('/api/v1/secrets', { name, value }, { token: admin.accessToken });
    if (res.status !== 201) throw new Error(`create secret answered ${res.status}: ${res.text}`);
    created.push({ id: res.body.id, name, reference: res.body.reference, value });
  }
  return created;
}

export interface CredentialCheckRun {
  /** The values of the secrets the check resolved: none may appear in its history, logs or events. */
  secretValues: string[];
  secrets: CreatedSecret[];
  /** The reference in the settings that names no secret. */
  missingReference: string;
  project: { id: string; name: string };
  /** The finished job (GET /jobs/:id), completed. */
  job: JobBody;
  workflowId: string;
}

/**
 * A credential check run to completion, as the API does it, on a suite with a worker
 * (`startJobsSuite`): two secrets, and a project whose settings reference both (nested) and one
 * secret that does not exist. The check completes with `{ references: 3, ok: 2, missing: 1 }`.
 */
export async function runCredentialCheck(t: TestApp, admin: Member): Promise<CredentialCheckRun> {
  const secrets = await createSecrets(t, admin, ['ci-token', 'llm-key']);
  const [ciToken, llmKey] = secrets;
  if (!ciToken || !llmKey) throw new Error('unreachable');
  const missingReference = `secret://nope-${randomUUID().slice(0, 8)}`;
  const project = await createProject(t, admin.accessToken, 'checked', {
    git: { token: ciToken.reference },
    llm: { apiKey: llmKey.reference },
    other: missingReference,
  });
  const res = await t.post(`/api/v1/projects/${project.id}/credential-checks`, undefined, { token: admin.accessToken });
  if (res.status !== 202) throw new Error(`POST credential-checks answered ${res.status}: ${res.text}`);
  const job = await waitForJob(t, admin.accessToken, (res.body as JobBody).id, isFinished, 'the credential check');
  if (job.status !== 'completed') throw new Error(`the credential check ended ${job.status}: ${JSON.stringify(job.error)}`);
  return { secretValues: secrets.map((s) => s.value), secrets, missingReference, project, job, workflowId: job.workflowId };
}

/**
 * Worker processes (workers/main.ts) a test starts one after another, each with `env` plus what
 * `prepare` gives the n-th (1-based) — a data directory of its own, say. `start` resolves once the
 * worker polls; stop them all with `stopWorkerProcesses(t, workers.all, …)`.
 */
export function workerProcesses(env: Record<string, string>, prepare: (n: number) => Promise<Record<string, string>> = () => Promise.resolve({})) {
  const all: RunningEntry[] = [];
  return {
    all,
    async start(): Promise<RunningEntry> {
      const w = runEntry('workers/main.ts', { ...env, ...(await prepare(all.length + 1)) });
      all.push(w);
      await w.waitFor(/"msg":"worker started"/, 60_000);
      return w;
    },
  };
}

/**
 * Kills worker processes a test started and waits for them, then deletes the schedules a worker
 * creates for its task queue at start-up (they would outlive the test otherwise).
 */
export async function stopWorkerProcesses(t: TestApp, workers: RunningEntry[], taskQueue: string): Promise<void> {
  for (const w of workers) w.child.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  for (const id of [auditRetentionScheduleId(taskQueue), jobReconciliationScheduleId(taskQueue)]) {
    await t.temporal.schedule.getHandle(id).delete().catch(() => undefined);
  }
}
