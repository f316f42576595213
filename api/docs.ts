import { readFile } from 'node:fs/promises';
import path from 'node:path';
import Router from '@koa/router';
import { AppError } from '../lib/errors';
import { problemTypes } from './problems';

const assets: Record<string, string> = {
  'swagger-ui.css': 'text/css',
  'swagger-ui-bundle.js': 'application/javascript',
};
const assetDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));

const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AuditFlow API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script><script src="/docs/init.js"></script></body></html>`;
// A file of its own rather than an inline script, so the page's CSP needs no 'unsafe-inline' scripts.
const init = `window.ui = SwaggerUIBundle({ url: '/api/v1/openapi.json', dom_id: '#swagger-ui', deepLinking: true });`;

/** Swagger UI from the installed package (no CDN) and the problem-type pages. */
export function docsRouter(): Router {
  const router = new Router();
  router.get('/docs', (ctx) => {
    ctx.type = 'text/html';
    ctx.body = page;
  });
  router.get('/docs/init.js', (ctx) => {
    ctx.type = 'application/javascript';
    ctx.body = init;
  });
  router.get('/docs/:asset', async (ctx) => {
    const type = assets[ctx.params.asset ?? ''];
    if (!type) throw new AppError(404, 'route-not-found', 'No such documentation asset.');
    ctx.type = type;
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = await readFile(path.join(assetDir, ctx.params.asset ?? ''));
  });
  router.get('/problems/:slug', (ctx) => {
    const problem = problemTypes[ctx.params.slug ?? ''];
    if (!problem) throw new AppError(404, 'route-not-found', 'No such problem type.');
    ctx.body = { type: `/problems/${ctx.params.slug}`, ...problem };
  });
  return router;
}
