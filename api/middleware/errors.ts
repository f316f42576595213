import type { Next } from 'koa';
import type { AppContext } from '../state';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { AppError } from '../../lib/errors';
import { problemTypes } from '../problems';
import { LlmProviderError } from '../../lib/llm';
import { UnsafeSourceError } from '../../lib/net-guard';
import { ArchiveRejectedError } from '../../lib/zip-extract';
import { UnsafeDocumentUrlError } from '../../services/documents/fetch';

/** Archive rejections about size, not shape: the client can send a smaller archive (or the operator raise a limit). */
const archiveTooLarge = new Set(['too-many-entries', 'too-large']);

/** problem+json body for an error; unexpected errors reveal nothing but the request id. */
function toProblem(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof WorkflowNotFoundError) return new AppError(404, 'not-found', 'The job\'s workflow was not found.');
  if (err instanceof WorkflowExecutionAlreadyStartedError) return new AppError(409, 'conflict', 'This job is already running.');
  if (err instanceof LlmProviderError) {
    // The provider failed us, not the client: 502, or 503 with the provider's wait when it is throttling.
    const retryAfter = err.details.retryAfterMs === undefined ? undefined : Math.ceil(err.details.retryAfterMs / 1000);
    return new AppError(
      err.kind === 'rate_limited' ? 503 : 502,
      'llm-provider-error',
      err.message,
      { provider: err.provider, kind: err.kind, retryable: err.retryable },
      retryAfter === undefined ? {} : { 'Retry-After': String(retryAfter) },
    );
  }
  if (err instanceof UnsafeDocumentUrlError) return new AppError(422, 'unsafe-document-url', err.message, { code: err.code });
  if (err instanceof UnsafeSourceError) return new AppError(422, 'unsafe-repository-url', err.message, { code: err.code });
  if (err instanceof ArchiveRejectedError) {
    const extra = { code: err.code, ...(err.entry === undefined ? {} : { entry: err.entry }) };
    return archiveTooLarge.has(err.code) ? new AppError(413, 'archive-too-large', err.message, extra) : new AppError(422, 'archive-rejected', err.message, extra);
  }
  if (err instanceof WorkflowUpdateFailedError) return new AppError(409, 'conflict', err.cause?.message ?? 'The workflow refused the update.');
  const status = (err as { status?: unknown; expose?: unknown }).status;
  // http-errors raised by Koa itself (e.g. a malformed URI) are safe to show.
  if (typeof status === 'number' && status >= 400 && status < 500 && (err as { expose?: boolean }).expose) {
    return new AppError(status, status === 404 ? 'route-not-found' : 'validation-error', (err as Error).message);
  }
  return new AppError(500, 'internal-error', 'An unexpected error occurred.');
}

export function renderProblem(ctx: AppContext, err: AppError): void {
  const known = problemTypes[err.slug];
  ctx.status = err.status;
  ctx.set(err.headers);
  ctx.type = 'application/problem+json';
  ctx.body = {
    type: `/problems/${err.slug}`,
    title: known?.title ?? err.slug,
    status: err.status,
    detail: err.message,
    instance: ctx.path,
    requestId: ctx.state.requestId,
    ...err.extra,
  };
}

/** The one place errors become responses. */
export async function problemJson(ctx: AppContext, next: Next): Promise<void> {
  try {
    await next();
    // The routers leave unmatched paths as a bare 404 and wrong methods as a bare 405.
    if (ctx.status === 404 && ctx.body == null) throw new AppError(404, 'route-not-found', `No route for ${ctx.path}.`);
    if (ctx.status === 405 && ctx.body == null) {
      throw new AppError(405, 'method-not-allowed', `${ctx.method} is not allowed here.`, {}, { Allow: ctx.response.get('Allow') });
    }
  } catch (err) {
    const problem = toProblem(err);
    if (problem.status >= 500) ctx.state.log.error({ err }, 'request failed');
    renderProblem(ctx, problem);
  }
}
