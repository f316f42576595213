import { createHash, randomUUID } from 'node:crypto';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { Op, type Sequelize, type Transaction, type WhereOptions } from 'sequelize';
import { IdempotencyKey, Job, JobEvent, terminalJobStatuses, type JobError, type JobStatus } from '../db';
import { withinDeadline } from '../lib/deadline';
import { AppError, ConflictError, NotFoundError } from '../lib/errors';
import {
  jobWorkflowId,
  progressQuery,
  searchAttributes,
  type JobInput,
  type JobKind,
  type JobProgress,
} from '../workflows/definitions';
import type { AuditScope } from './audit';
import { pageInCreationOrder, type Page, type PageRequest } from './pagination';

/**
 * Jobs: one row per workflow, and the one place that writes their status, progress and events.
 * The API starts, reads, cancels and retries them; activities report through `recordJobEvent`.
 */

export interface JobsDeps {
  sequelize: Sequelize;
  temporal: Client;
  config: { TEMPORAL_TASK_QUEUE: string };
}

/** Postgres channel on which every job event is announced (payload: the job id). */
export const JOB_EVENTS_CHANNEL = 'job_events';

/** How long an Idempotency-Key answers with the job it started. */
const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;

export const isTerminal = (status: JobStatus) => terminalJobStatuses.includes(status);

export interface Idempotency {
  /** Method and route template, e.g. `DELETE /api/v1/projects/:id`. */
  route: string;
  key: string;
  /** Digest of what the request asked for (path parameters and body). */
  requestHash: string;
}

export function requestDigest(request: unknown): string {
  return createHash('sha256').update(JSON.stringify(request)).digest('hex');
}

export interface StartJobRequest {
  tenantId: string;
  projectId: string | null;
  kind: JobKind;
  title: string;
  params: Record<string, unknown>;
  /** `user:<id>` or `api_token:<id>`. */
  requestedBy: string;
  retryOf?: string;
  idempotency?: Idempotency;
  /** Runs inside the job's transaction: the kind's own bookkeeping (e.g. hiding a project being deleted). */
  prepare?: (job: Job, transaction: Transaction) => Promise<void>;
}

/**
 * Starts any kind of job: the row, its first event and its audit entry in one transaction, then
 * the workflow. A request repeated with the same Idempotency-Key gets the job it started.
 */
export async function startJob(deps: JobsDeps, audit: AuditScope, request: StartJobRequest): Promise<{ job: Job; replayed: boolean }> {
  const { job, replayed } = await deps.sequelize.transaction(async (transaction) => {
    if (request.idempotency) {
      const earlier = await findIdempotentJob(deps.sequelize, request.tenantId, request.idempotency, transaction);
      if (earlier) return { job: earlier, replayed: true };
    }
    const id = randomUUID();
    const created = await Job.create(
      {
        id,
        tenantId: request.tenantId,
        projectId: request.projectId,
        kind: request.kind,
        workflowId: jobWorkflowId(request.kind, id),
        title: request.title,
        params: request.params,
        requestedBy: request.requestedBy,
        retryOf: request.retryOf ?? null,
      },
      { transaction },
    );
    if (request.idempotency) {
      await IdempotencyKey.create({ tenantId: request.tenantId, ...request.idempotency, jobId: id }, { transaction });
    }
    await request.prepare?.(created, transaction);
    await appendEvent(deps.sequelize, created, { type: 'queued', data: { kind: request.kind, retryOf: request.retryOf ?? null } }, transaction);
    await audit.record(
      { action: 'job.start', resourceType: 'job', resourceId: id, details: { kind: request.kind, projectId: request.projectId, retryOf: request.retryOf ?? null } },
      transaction,
    );
    return { job: created, replayed: false };
  });
  if (replayed) return { job, replayed };

  try {
    await startWorkflow(deps, job);
  } catch (err) {
    // The row exists and says why nothing runs; a retry starts it afresh.
    const reason = err instanceof Error ? err.message : String(err);
    await recordJobEvent(deps.sequelize, job.id, { type: 'failed', status: 'failed', error: { message: `The workflow could not be started: ${reason}` }, dedupeKey: 'terminal' });
  }
  return { job: await job.reload(), replayed };
}

async function startWorkflow(deps: JobsDeps, job: Job): Promise<void> {
  const input: JobInput<Record<string, unknown>> = { jobId: job.id, tenantId: job.tenantId, projectId: job.projectId, params: job.params };
  await deps.temporal.workflow.start(job.kind, {
    taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
    workflowId: job.workflowId,
    args: [input],
    memo: { title: job.title },
    staticSummary: job.title,
    typedSearchAttributes: new TypedSearchAttributes([
      { key: searchAttributes.tenantId, value: job.tenantId },
      { key: searchAttributes.jobKind, value: job.kind },
      { key: searchAttributes.requestedBy, value: job.requestedBy },
      ...(job.projectId ? [{ key: searchAttributes.projectId, value: job.projectId }] : []),
    ]),
  });
}

/** The job an earlier request with this key started, or null; the same key for another request is refused. */
async function findIdempotentJob(sequelize: Sequelize, tenantId: string, idem: Idempotency, transaction: Transaction): Promise<Job | null> {
  // Serialises requests with one key, so two concurrent retries start one job.
  await sequelize.query('SELECT pg_advisory_xact_lock(hashtext(:lock))', { replacements: { lock: `${tenantId}:${idem.route}:${idem.key}` }, transaction });
  const earlier = await IdempotencyKey.findOne({ where: { tenantId, route: idem.route, key: idem.key }, transaction });
  if (!earlier) return null;
  if (Date.now() - earlier.createdAt.getTime() > IDEMPOTENCY_WINDOW_MS) {
    await earlier.destroy({ transaction });
    return null;
  }
  if (earlier.requestHash !== idem.requestHash) {
    throw new AppError(422, 'idempotency-key-reused', 'This Idempotency-Key was already used for a different request.');
  }
  return Job.findByPk(earlier.jobId, { transaction, rejectOnEmpty: true });
}

export interface JobEventInput {
  type: string;
  data?: Record<string, unknown>;
  status?: JobStatus;
  stage?: string;
  counters?: Record<string, number>;
  error?: JobError;
  /** Writers that may run twice (activity retries) pass a key: an event is written once per key. */
  dedupeKey?: string;
}

/**
 * Appends one event and applies its change to the job, in one transaction, and announces it on
 * the job-events channel (Postgres delivers NOTIFY at commit). A finished job takes no more events.
 */
export async function recordJobEvent(sequelize: Sequelize, jobId: string, input: JobEventInput): Promise<{ job: Job; event: JobEvent | null }> {
  return sequelize.transaction(async (transaction) => {
    const job = await Job.findByPk(jobId, { transaction, lock: transaction.LOCK.UPDATE });
    if (!job) throw new NotFoundError('Job');
    if (isTerminal(job.status)) return { job, event: null };
    if (input.dedupeKey && (await JobEvent.count({ where: { jobId, dedupeKey: input.dedupeKey }, transaction })) > 0) return { job, event: null };
    const event = await appendEvent(sequelize, job, input, transaction);
    return { job, event };
  });
}

async function appendEvent(sequelize: Sequelize, job: Job, input: JobEventInput, transaction: Transaction): Promise<JobEvent> {
  const seq = job.lastEventSeq + 1;
  const now = new Date();
  const data = {
    ...input.data,
    ...(input.status ? { status: input.status } : {}),
    ...(input.stage ? { stage: input.stage } : {}),
    ...(input.counters ? { counters: input.counters } : {}),
    ...(input.error ? { error: input.error } : {}),
  };
  const event = await JobEvent.create({ jobId: job.id, seq, type: input.type, data, dedupeKey: input.dedupeKey ?? null }, { transaction });
  await job.update(
    {
      lastEventSeq: seq,
      ...(input.status ? { status: input.status } : {}),
      ...(input.stage ? { stage: input.stage } : {}),
      ...(input.counters ? { counters: { ...job.counters, ...input.counters } } : {}),
      ...(input.error ? { error: input.error } : {}),
      ...(input.status === 'running' && !job.startedAt ? { startedAt: now } : {}),
      ...(input.status && isTerminal(input.status) ? { finishedAt: now } : {}),
    },
    { transaction },
  );
  await sequelize.query('SELECT pg_notify(:channel, :jobId)', { replacements: { channel: JOB_EVENTS_CHANNEL, jobId: job.id }, transaction });
  return event;
}

export async function getJob(tenantId: string, id: string): Promise<Job> {
  const job = await Job.findOne({ where: { id, tenantId } });
  if (!job) throw new NotFoundError('Job');
  return job;
}

export interface JobFilter extends PageRequest {
  kind?: string;
  status?: JobStatus;
  projectId?: string;
  from?: Date;
  to?: Date;
}

/** A tenant's jobs, newest first. */
export async function listJobs(tenantId: string, f: JobFilter): Promise<Page<Job>> {
  const where: WhereOptions<Job>[] = [{ tenantId }];
  if (f.kind) where.push({ kind: f.kind });
  if (f.status) where.push({ status: f.status });
  if (f.projectId) where.push({ projectId: f.projectId });
  if (f.from) where.push({ createdAt: { [Op.gte]: f.from } });
  if (f.to) where.push({ createdAt: { [Op.lt]: f.to } });
  return pageInCreationOrder(
    f,
    ({ after, order, limit }) => Job.findAll({ where: { [Op.and]: [...where, after] }, order, limit }),
    { newestFirst: true },
  );
}

/** Events after `afterSeq`, in order. */
export function jobEventsAfter(jobId: string, afterSeq: number, limit = 500): Promise<JobEvent[]> {
  return JobEvent.findAll({ where: { jobId, seq: { [Op.gt]: afterSeq } }, order: [['seq', 'ASC']], limit });
}

const closedWorkflowStatus: Record<string, JobStatus> = {
  COMPLETED: 'completed',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
  TERMINATED: 'failed',
  TIMED_OUT: 'failed',
};

/** A queued job whose workflow is still unknown after this long was never started (the API died in between). */
const NEVER_STARTED_AFTER_MS = 60_000;

/**
 * Brings an open job's row in line with its workflow when the workflow closed without telling us
 * (terminated, reset or timed out from the Web UI or the CLI).
 */
export async function reconcileJob(deps: JobsDeps, job: Job): Promise<Job> {
  if (isTerminal(job.status)) return job;
  let workflowStatus: string;
  try {
    workflowStatus = (await deps.temporal.workflow.getHandle(job.workflowId).describe()).status.name;
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    if (Date.now() - job.createdAt.getTime() < NEVER_STARTED_AFTER_MS) return job;
    workflowStatus = 'NOT_FOUND';
  }
  const status = workflowStatus === 'NOT_FOUND' ? 'failed' : closedWorkflowStatus[workflowStatus];
  if (!status) return job;
  const outside =
    status === 'completed'
      ? undefined
      : workflowStatus === 'NOT_FOUND'
        ? { message: 'The workflow was never started (or no longer exists); retry the job to run it.' }
        : { message: `The workflow ended as ${workflowStatus.toLowerCase().replace('_', ' ')} outside AuditFlow.` };
  const { job: updated } = await recordJobEvent(deps.sequelize, job.id, {
    type: status,
    status,
    ...(outside ? { error: outside } : {}),
    data: { reconciled: true, workflowStatus },
    dedupeKey: 'terminal',
  });
  return updated;
}

/** The sweep: reconciles every open job not updated for `idleMs`; returns how many it closed. */
export async function reconcileOpenJobs(deps: JobsDeps, idleMs: number): Promise<number> {
  const open = await Job.findAll({
    where: { status: { [Op.in]: ['queued', 'running'] }, updatedAt: { [Op.lt]: new Date(Date.now() - idleMs) } },
    order: [['updatedAt', 'ASC']],
    limit: 500,
  });
  let closed = 0;
  for (const job of open) {
    if (isTerminal((await reconcileJob(deps, job)).status)) closed++;
  }
  return closed;
}

/** Keys past their 24 hours no longer answer; their rows go. Returns how many. */
export async function purgeExpiredIdempotencyKeys(): Promise<number> {
  return IdempotencyKey.destroy({ where: { createdAt: { [Op.lt]: new Date(Date.now() - IDEMPOTENCY_WINDOW_MS) } } });
}

/** The running workflow's own account of its progress, or null when it cannot answer in time. */
export async function liveProgress(deps: JobsDeps, job: Job, timeoutMs = 2000): Promise<JobProgress | null> {
  if (job.status !== 'running') return null;
  try {
    return await withinDeadline(deps.temporal.workflow.getHandle(job.workflowId).query(progressQuery), timeoutMs);
  } catch {
    return null;
  }
}

/** Asks the workflow to cancel; its activities learn of it at their next heartbeat and clean up. */
export async function cancelJob(deps: JobsDeps, audit: AuditScope, tenantId: string, id: string): Promise<Job> {
  const job = await reconcileJob(deps, await getJob(tenantId, id));
  if (isTerminal(job.status)) throw alreadyEnded(job);
  // Recorded before the workflow hears of it: its `cancelled` event can only come after this one.
  const { job: requested } = await recordJobEvent(deps.sequelize, job.id, { type: 'cancel_requested', dedupeKey: 'cancel_requested' });
  if (isTerminal(requested.status)) throw alreadyEnded(requested);
  try {
    await deps.temporal.workflow.getHandle(job.workflowId).cancel();
  } catch (err) {
    // The workflow closed in the meantime: say how it ended, not that the job is missing.
    const closed = err instanceof WorkflowNotFoundError ? await reconcileJob(deps, requested) : requested;
    throw isTerminal(closed.status) ? alreadyEnded(closed) : err;
  }
  await audit.record({ action: 'job.cancel', resourceType: 'job', resourceId: job.id, details: { kind: job.kind } });
  return requested;
}

const alreadyEnded = (job: Job) => new ConflictError(`The job has already ${job.status === 'completed' ? 'completed' : `ended (${job.status})`}.`);
