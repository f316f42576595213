import { randomUUID } from 'node:crypto';
import type { Next } from 'koa';
import type { AppContext } from '../state';
import { withLogContext, type Logger } from '../../lib/logger';
import { AuditScope } from '../../services/audit';
import { authenticate, type Principal } from '../../services/principal';
import type { JwtSettings } from '../../services/tokens';
import { UnauthorizedError } from '../../lib/errors';

const validRequestId = /^[A-Za-z0-9._-]{1,64}$/;
const mutating = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Request id (echoed, or minted) on the response and on every log line of the request, and one access-log line. */
export function requestContext(logger: Logger) {
  return (ctx: AppContext, next: Next): Promise<void> => {
    const incoming = ctx.get('X-Request-Id');
    const requestId = validRequestId.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    ctx.state.log = logger;
    return withLogContext({ requestId }, () => handle(ctx, next));
  };

  async function handle(ctx: AppContext, next: Next): Promise<void> {
    ctx.state.audit = new AuditScope(
      { type: 'anonymous', id: null, tenantId: null },
      { requestId: ctx.state.requestId, ip: ctx.ip, userAgent: ctx.get('User-Agent').slice(0, 512) || null },
    );
    const started = performance.now();
    try {
      await next();
    } finally {
      // The route template, not the path: paths can carry secrets (invitation tokens).
      const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? '(no route)';
      ctx.state.log.info({ method: ctx.method, route, status: ctx.status, ms: Math.round(performance.now() - started) }, 'request');
    }
  }
}

/** Resolves the bearer token, when one is sent, into `ctx.state.auth`; routes decide whether one is required. */
export function bearerAuth(config: JwtSettings) {
  return async (ctx: AppContext, next: Next): Promise<void> => {
    const header = ctx.get('Authorization');
    if (header) {
      const match = /^Bearer ([\x21-\x7e]{1,4096})$/.exec(header);
      if (!match?.[1]) throw new UnauthorizedError('Use "Authorization: Bearer <token>".');
      const principal: Principal = await authenticate(config, match[1]);
      ctx.state.auth = principal;
      ctx.state.audit.actor = {
        type: principal.kind,
        id: principal.userId ?? principal.apiTokenId,
        tenantId: principal.tenantId,
      };
    }
    await next();
  };
}

/**
 * Every mutating request, and every authorization denial, leaves one audit row. Services write
 * theirs in the transaction of their change; this writes one for requests that did not. A route
 * declared `readOnly` (a search sent as a POST) changes nothing: only its denials are recorded.
 */
export async function auditEveryChange(ctx: AppContext, next: Next): Promise<void> {
  const audit = ctx.state.audit;
  let failed: Error | undefined;
  try {
    await next();
  } catch (err) {
    failed = err instanceof Error ? err : new Error(String(err));
  }
  const status = failed ? ((failed as { status?: number }).status ?? 500) : ctx.status;
  const changes = mutating.has(ctx.method) && !ctx.state.readOnly;
  if (!audit.recorded && (changes || ctx.state.denied || status === 403)) {
    const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? ctx.path;
    await audit
      .record({
        action: `${ctx.method} ${route}`,
        outcome: status === 401 || status === 403 ? 'denied' : status < 400 ? 'success' : 'failure',
        details: { status, ...(ctx.state.denied ? { permission: ctx.state.denied } : {}) },
      })
      .catch((err: unknown) => ctx.state.log.error({ err }, 'could not write audit row'));
  }
  if (failed) throw failed;
}
