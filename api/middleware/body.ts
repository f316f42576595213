import type { Next } from 'koa';
import type { AppContext } from '../state';
import getRawBody from 'raw-body';
import { AppError } from '../../lib/errors';

const hasBody = (ctx: AppContext) => ctx.request.length > 0 || ctx.get('transfer-encoding') !== '';

/**
 * JSON bodies, with a size limit counted while reading (Content-Length can lie).
 * Each failure has its own problem type: 415 wrong type, 413 too large, 400 malformed.
 *
 * `multipart/form-data` goes through unread, and only, to the routes that take uploads
 * (`acceptsUpload`, from the routes' specs): their router streams the file with its own limit.
 */
export function jsonBody(limit: number, acceptsUpload: (method: string, path: string) => boolean = () => false) {
  return async (ctx: AppContext, next: Next): Promise<void> => {
    if (!['POST', 'PUT', 'PATCH', 'DELETE'].includes(ctx.method) || !hasBody(ctx)) {
      await next();
      return;
    }
    const uploadRoute = acceptsUpload(ctx.method, ctx.path);
    if (uploadRoute && ctx.is('multipart/form-data')) {
      await next();
      return;
    }
    if (!ctx.is('application/json', '+json')) {
      throw new AppError(
        415,
        'unsupported-media-type',
        uploadRoute ? 'Send the body as application/json, or as multipart/form-data with the file.' : 'Send the body as application/json.',
      );
    }
    let raw: string;
    try {
      raw = await getRawBody(ctx.req, { limit, length: ctx.get('content-length') || undefined, encoding: 'utf8' });
    } catch (err) {
      const type = (err as { type?: string }).type;
      if (type === 'entity.too.large') throw new AppError(413, 'payload-too-large', `The body exceeds ${limit} bytes.`, { limit });
      throw new AppError(400, 'malformed-json', 'The request body could not be read.');
    }
    try {
      ctx.request.body = raw.trim() === '' ? undefined : (JSON.parse(raw) as unknown);
    } catch (err) {
      throw new AppError(400, 'malformed-json', `The body is not valid JSON: ${(err as Error).message}`);
    }
    await next();
  };
}
