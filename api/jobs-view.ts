import { z } from 'zod';
import { jobStatuses, type Job } from '../db';
import { ValidationError } from '../lib/errors';
import { requestDigest, type Idempotency } from '../services/jobs';
import type { JobProgress } from '../workflows/definitions';
import type { Ctx } from './route';
import { timestamp } from './schemas';

/** The job resource, shared by every route that starts or shows jobs. */
export const jobSchema = z.object({
  id: z.uuid(),
  kind: z.string(),
  title: z.string(),
  status: z.enum(jobStatuses),
  stage: z.string().nullable(),
  counters: z.record(z.string(), z.number()),
  error: z.object({ message: z.string(), type: z.string().optional() }).nullable(),
  projectId: z.uuid().nullable(),
  workflowId: z.string(),
  requestedBy: z.string(),
  retryOf: z.uuid().nullable(),
  createdAt: timestamp,
  startedAt: timestamp.nullable(),
  finishedAt: timestamp.nullable(),
  /** While running: the workflow's own live answer to the `progress` query (a kind may add numbers: a scan's filesTotal, filesAnalyzed, issuesFound). */
  progress: z.object({ stage: z.string(), counters: z.record(z.string(), z.number()) }).catchall(z.number()).nullable().optional(),
});

export function jobView(job: Job, progress?: JobProgress | null) {
  return {
    id: job.id,
    kind: job.kind,
    title: job.title,
    status: job.status,
    stage: job.stage,
    counters: job.counters,
    error: job.error,
    projectId: job.projectId,
    workflowId: job.workflowId,
    requestedBy: job.requestedBy,
    retryOf: job.retryOf,
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    ...(progress !== undefined ? { progress } : {}),
  };
}

/** Answers a started job: 202, its resource and where to poll it. */
export function acceptedJob(ctx: Ctx, job: Job): void {
  ctx.status = 202;
  ctx.set('Location', `/api/v1/jobs/${job.id}`);
  ctx.body = jobView(job);
}

const validKey = /^[\x21-\x7e]{1,255}$/;

/** The request's Idempotency-Key, scoped to its route and bound to what it asks for. */
export function idempotencyOf(ctx: Ctx, request: unknown): Idempotency | undefined {
  // An empty header is a key too (an invalid one): the client expects protection it would not get.
  if (ctx.headers['idempotency-key'] === undefined) return undefined;
  const key = ctx.get('Idempotency-Key');
  if (!validKey.test(key)) throw new ValidationError('Invalid Idempotency-Key.', [{ path: 'header.Idempotency-Key', message: 'must be 1 to 255 printable ASCII characters' }]);
  return { route: `${ctx.method} ${String(ctx._matchedRoute ?? ctx.path)}`, key, requestHash: requestDigest(request) };
}

/** Who asked, as recorded on jobs and their workflows' `RequestedBy` search attribute. */
export function requesterOf(ctx: Ctx): string {
  const auth = ctx.state.auth;
  return auth ? `${auth.kind}:${auth.userId ?? auth.apiTokenId ?? ''}` : 'anonymous';
}
