import 'koa';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body, set by api/middleware/body.ts. */
    body?: unknown;
  }
}
