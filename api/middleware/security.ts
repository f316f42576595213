import type { Next } from 'koa';
import type { AppContext } from '../state';

const apiPolicy = "default-src 'none'; frame-ancestors 'none'";
// Swagger UI is served from our own origin; its stylesheet sets inline styles.
const docsPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/** Security headers on every response, and CORS only for configured origins (never reflected blindly). */
export function securityHeaders(opts: { corsOrigins: readonly string[]; production: boolean }) {
  const allowed = new Set(opts.corsOrigins);
  return async (ctx: AppContext, next: Next): Promise<void> => {
    ctx.set({
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'no-referrer',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Content-Security-Policy': ctx.path.startsWith('/docs') ? docsPolicy : apiPolicy,
      'Cache-Control': 'no-store',
    });
    if (opts.production) ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    const origin = ctx.get('Origin');
    ctx.vary('Origin');
    if (origin && allowed.has(origin)) {
      ctx.set('Access-Control-Allow-Origin', origin);
      ctx.set('Access-Control-Expose-Headers', 'X-Request-Id, Location, Retry-After');
      if (ctx.method === 'OPTIONS' && ctx.get('Access-Control-Request-Method')) {
        ctx.set('Access-Control-Allow-Methods', 'GET, POST, PUT, PATCH, DELETE');
        ctx.set('Access-Control-Allow-Headers', 'Authorization, Content-Type, Idempotency-Key, X-Request-Id');
        ctx.set('Access-Control-Max-Age', '600');
        ctx.status = 204;
        return;
      }
    }
    await next();
  };
}
