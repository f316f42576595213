import { z } from 'zod';
import { jobStatuses } from '../../db';
import { streamJobEvents } from '../../services/job-event-stream';
import { cancelJob, getJob, isTerminal, listJobs, liveProgress, reconcileJob } from '../../services/jobs';
import { retryJob } from '../../services/job-retry';
import type { AppDeps } from '../app';
import { acceptedJob, idempotencyOf, jobSchema, jobView, requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { lastEventIdOf, openEventStream } from '../sse';
import { idParams, page, pageQuery, timestamp } from '../schemas';

const jobFilter = pageQuery.extend({
  kind: z.string().max(64).optional(),
  status: z.enum(jobStatuses).optional(),
  projectId: z.uuid().optional(),
  from: timestamp.optional(),
  to: timestamp.optional(),
});

const eventsQuery = z.object({
  /** For clients that cannot set the `Last-Event-ID` header. */
  lastEventId: z.coerce.number().int().min(0).max(999_999_999).optional(),
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
        method: 'get',
        path: '/jobs/:id/events',
        operationId: 'streamJobEvents',
        summary: 'Stream a job\'s events as Server-Sent Events, after `Last-Event-ID` (header) or `lastEventId`; ends after the final event',
        tag: 'jobs',
        access: 'jobs:read',
        params: idParams,
        query: eventsQuery,
        responses: {
          200: {
            description:
              'One event per job event: `id: <seq>`, `event: <type>`, `data: {"seq", "type", "data", "createdAt"}`; `: keep-alive` comments while idle. Closes after the completed, failed or cancelled event.',
            mediaType: 'text/event-stream',
            schema: z.string(),
          },
          204: { description: 'The job has finished and the client has all of its events (an EventSource stops reconnecting)' },
        },
      },
      async (ctx, { params, query, auth }) => {
        const job = await reconcileJob(deps, await getJob(auth.tenantId, params.id));
        // The header wins: a reconnecting EventSource sends the last id it saw, with its original URL.
        const afterSeq = lastEventIdOf(ctx) ?? query.lastEventId ?? 0;
        if (isTerminal(job.status) && afterSeq >= job.lastEventSeq) {
          ctx.status = 204;
          return;
        }
        const stream = openEventStream(ctx, deps.config.SSE_HEARTBEAT_SECONDS * 1000);
        const relay = async () => {
          for await (const event of streamJobEvents(deps.jobEvents, { jobId: job.id, afterSeq, signal: stream.signal })) {
            const view = { seq: event.seq, type: event.type, data: event.data, createdAt: event.createdAt.toISOString() };
            await stream.send({ id: event.seq, event: event.type, data: view });
          }
        };
        // The response is under way: a failure ends the stream, and the client reconnects from its last id.
        void relay()
          .catch((err: unknown) => {
            if (!stream.signal.aborted) ctx.state.log.error({ err, jobId: job.id }, 'job event stream failed');
          })
          .finally(() => stream.end());
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
