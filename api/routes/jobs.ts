import { z } from 'zod';
import { jobStatuses } from '../../db';
import { cancelJob, getJob, listJobs, liveProgress, reconcileJob } from '../../services/jobs';
import { retryJob } from '../../services/job-retry';
import type { AppDeps } from '../app';
import { acceptedJob, idempotencyOf, jobSchema, jobView, requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { idParams, page, pageQuery, timestamp } from '../schemas';

const jobFilter = pageQuery.extend({
  kind: z.string().max(64).optional(),
  status: z.enum(jobStatuses).optional(),
  projectId: z.uuid().optional(),
  from: timestamp.optional(),
  to: timestamp.optional(),
});

export function jobsRouter(deps: AppDeps): ApiRouter {
  return new ApiRouter()
    .add(
      {
        method: 'get',
        path: '/jobs',
        operationId: 'listJobs',
        summary: 'List jobs, newest first (filters: kind, status, project, time range)',
        tag: 'jobs',
        access: 'jobs:read',
        query: jobFilter,
        responses: { 200: { description: 'A page of jobs', schema: page(jobSchema) } },
      },
      async (ctx, { query, auth }) => {
        const { from, to, ...rest } = query;
        const result = await listJobs(auth.tenantId, { ...rest, from: from ? new Date(from) : undefined, to: to ? new Date(to) : undefined });
        ctx.body = { items: result.items.map((j) => jobView(j)), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'get',
        path: '/jobs/:id',
        operationId: 'getJob',
        summary: 'Get a job; while it runs, with its workflow\'s live progress',
        tag: 'jobs',
        access: 'jobs:read',
        params: idParams,
        responses: { 200: { description: 'The job', schema: jobSchema } },
      },
      async (ctx, { params, auth }) => {
        const job = await reconcileJob(deps, await getJob(auth.tenantId, params.id));
        ctx.body = jobView(job, await liveProgress(deps, job));
      },
    )
    .add(
      {
        method: 'post',
        path: '/jobs/:id/cancel',
        operationId: 'cancelJob',
        summary: 'Cancel a running job (cleanup runs; the job ends as cancelled)',
        tag: 'jobs',
        access: 'jobs:control',
        params: idParams,
        responses: { 202: { description: 'Cancellation requested', schema: jobSchema } },
      },
      async (ctx, { params, auth }) => {
        const job = await cancelJob(deps, ctx.state.audit, auth.tenantId, params.id);
        ctx.status = 202;
        ctx.body = jobView(job);
      },
    )
    .add(
      {
        method: 'post',
        path: '/jobs/:id/retry',
        operationId: 'retryJob',
        summary: 'Start a failed or cancelled job again, as a new job linked to it',
        tag: 'jobs',
        access: 'jobs:control',
        params: idParams,
        idempotent: true,
        responses: { 202: { description: 'The new job', schema: jobSchema } },
      },
      async (ctx, { params, auth }) => {
        const { job } = await retryJob(deps, ctx.state.audit, {
          tenantId: auth.tenantId,
          jobId: params.id,
          requestedBy: requesterOf(ctx),
          idempotency: idempotencyOf(ctx, params),
        });
        acceptedJob(ctx, job);
      },
    );
}
