import Router from '@koa/router';
import Koa from 'koa';
import type { Client } from '@temporalio/client';
import type { Sequelize } from 'sequelize';
import type { BlobStore } from '../lib/blob-store';
import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';
import type { Mailer } from '../lib/mailer';
import type { VectorStore } from '../lib/vector-store';
import type { PgListener } from '../lib/pg-listener';
import { docsRouter } from './docs';
import { jsonBody } from './middleware/body';
import { auditEveryChange, bearerAuth, requestContext } from './middleware/context';
import { problemJson } from './middleware/errors';
import { securityHeaders } from './middleware/security';
import { buildOpenApi } from './openapi';
import { uploadRouteMatcher, type ApiRouter } from './route';
import { apiTokensRouter } from './routes/api-tokens';
import { auditLogsRouter } from './routes/audit-logs';
import { documentsRouter } from './routes/documents';
import { authRouter } from './routes/auth';
import { healthRouter } from './routes/health';
import { invitationsRouter } from './routes/invitations';
import { issuesRouter } from './routes/issues';
import { jobsRouter } from './routes/jobs';
import { llmRouter } from './routes/llm';
import { membersRouter } from './routes/members';
import { projectsRouter } from './routes/projects';
import { scansRouter } from './routes/scans';
import { searchRouter } from './routes/search';
import { secretsRouter } from './routes/secrets';
import type { AppState } from './state';

export interface AppDeps {
  config: Config;
  sequelize: Sequelize;
  temporal: Client;
  logger: Logger;
  mailer: Mailer;
  /** Wakes job event streams when a job event is written, by this instance or any other process. */
  jobEvents: PgListener;
  /** Uploads (archives to scan) go here; workflows get their keys. */
  blobs: BlobStore;
  /** Chunk vectors of the knowledge base (search, document deletion). */
  vectors: VectorStore;
}

export const API_PREFIX = '/api/v1';

/** The Koa application; `server.ts` only listens, tests drive it in-process. */
export function createApp(deps: AppDeps): Koa<AppState> & { openapi: Record<string, unknown>; routers: ApiRouter[] } {
  const { config } = deps;
  const routers: ApiRouter[] = [
    healthRouter(deps),
    authRouter(deps),
    invitationsRouter(deps),
    membersRouter(deps),
    projectsRouter(deps),
    scansRouter(deps),
    documentsRouter(deps),
    searchRouter(deps),
    issuesRouter(deps),
    jobsRouter(deps),
    apiTokensRouter(deps),
    auditLogsRouter(deps),
    secretsRouter(deps),
    llmRouter(deps),
  ];
  const specs = routers.flatMap((r) => r.specs.map((s) => ({ ...s, path: API_PREFIX + s.path })));
  const openapi = buildOpenApi(specs, { version: '1.0.0', serverUrl: config.PUBLIC_URL });

  const api = new Router<AppState>({ prefix: API_PREFIX });
  for (const r of routers) api.use(r.router.routes(), r.router.allowedMethods());
  api.get('/openapi.json', (ctx) => {
    ctx.body = openapi;
  });

  // maxIpsCount: only the entries our own proxies appended to X-Forwarded-For are believed.
  const app = new Koa<AppState>({ proxy: config.TRUST_PROXY, maxIpsCount: config.TRUST_PROXY_HOPS });
  app.silent = true; // errors are logged once, by the problem middleware
  app.use(requestContext(deps.logger));
  app.use(problemJson);
  app.use(securityHeaders({ corsOrigins: config.CORS_ORIGINS, production: config.NODE_ENV === 'production' }));
  app.use(auditEveryChange);
  app.use(bearerAuth(config));
  app.use(jsonBody(config.BODY_LIMIT_BYTES, uploadRouteMatcher(specs)));
  app.use(docsRouter().routes());
  app.use(api.routes());
  app.use(api.allowedMethods());
  return Object.assign(app, { openapi, routers });
}
