import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import request from 'supertest';
import type { Client } from '@temporalio/client';
import type { Sequelize } from 'sequelize';
import type { createApp } from '../../api/app';
import { listenApi } from '../../api/listen';
import { createDatabase } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import { loadConfig, type Config } from '../../lib/config';
import { createLogger } from '../../lib/logger';
import type { VectorStore } from '../../lib/vector-store';
import type { PgListener } from '../../lib/pg-listener';
import { startMailbox, type Mailbox } from './mailbox';
import { responseValidator } from './openapi-validator';

export { startMailbox, type Mailbox } from './mailbox';

export interface CallOptions {
  token?: string;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests read whatever the API answered
  headers: Record<string, string>;
  text: string;
}

export interface TestApp {
  config: Config;
  sequelize: Sequelize;
  temporal: Client;
  mailbox: Mailbox;
  jobEvents: PgListener;
  blobs: BlobStore;
  vectors: VectorStore;
  app: ReturnType<typeof createApp>;
  server: Server;
  openapi: Record<string, unknown>;
  get(path: string, opts?: CallOptions): Promise<TestResponse>;
  post(path: string, body?: unknown, opts?: CallOptions): Promise<TestResponse>;
  put(path: string, body?: unknown, opts?: CallOptions): Promise<TestResponse>;
  patch(path: string, body?: unknown, opts?: CallOptions): Promise<TestResponse>;
  delete(path: string, opts?: CallOptions): Promise<TestResponse>;
  /** A raw supertest agent for requests the helpers cannot express (bad bodies, odd headers). */
  raw(): ReturnType<typeof request>;
  close(): Promise<void>;
}

/**
 * The app wired to the services global-setup started, with mail going to a real SMTP server on
 * 127.0.0.1. Every call's response is validated against the OpenAPI document. `logTo` captures
 * the app's log lines (set LOG_LEVEL in `env` to see them).
 *
 * Models bind to one app's database pool at a time: in one file, close an app before starting another.
 */
export async function startTestApp(env: Record<string, string> = {}, opts: { logTo?: NodeJS.WritableStream } = {}): Promise<TestApp> {
  const mailbox = await startMailbox();
  // A task queue of its own per app: a suite's workflows run only on the suite's workers.
  const config = loadConfig({ ...process.env, SMTP_URL: mailbox.url, TEMPORAL_TASK_QUEUE: `test-${randomUUID()}`, ...env });
  const logger = createLogger({ level: config.LOG_LEVEL }, opts.logTo);
  const sequelize = createDatabase(config);
  const api = await listenApi(config, { sequelize, logger, host: '127.0.0.1', port: 0 });
  const { app, server } = api;
  const validate = responseValidator(app.openapi);
  const agent = () => request(server);

  async function call(method: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string, body: unknown, opts: CallOptions = {}) {
    let req = agent()[method](path).set(opts.headers ?? {});
    if (opts.token) req = req.set('Authorization', `Bearer ${opts.token}`);
    if (body !== undefined) req = req.send(body as object);
    const res = await req;
    validate(method, path, res.status, String(res.headers['content-type'] ?? ''), res.body);
    return { status: res.status, body: res.body, headers: res.headers as Record<string, string>, text: res.text };
  }

  return {
    config,
    sequelize,
    temporal: api.temporal,
    mailbox,
    jobEvents: api.jobEvents,
    blobs: api.blobs,
    vectors: api.vectors,
    app,
    server,
    openapi: app.openapi,
    get: (path, opts) => call('get', path, undefined, opts),
    post: (path, body, opts) => call('post', path, body, opts),
    put: (path, body, opts) => call('put', path, body, opts),
    patch: (path, body, opts) => call('patch', path, body, opts),
    delete: (path, opts) => call('delete', path, undefined, opts),
    raw: agent,
    async close() {
      await api.close();
      await mailbox.close();
      await sequelize.close();
    },
  };
}

/** A unique email, so suites sharing the database never collide. */
export function uniqueEmail(label = 'user'): string {
  return `${label}-${randomUUID().slice(0, 8)}@example.test`;
}

/** A password zxcvbn rates strong. */
export const strongPassword = 'correct horse battery staple 42!';

export interface Member {
  email: string;
  password: string;
  userId: string;
  tenantId: string;
  accessToken: string;
  refreshToken: string;
}

/** Registers a new tenant through the API and returns its admin, signed in. */
export async function registerTenant(t: TestApp, label = 'admin'): Promise<Member> {
  const email = uniqueEmail(label);
  const res = await t.post('/api/v1/auth/register', { email, password: strongPassword, name: label, tenantName: `${label} org` });
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${res.text}`);
  return {
    email,
    password: strongPassword,
    userId: res.body.user.id,
    tenantId: res.body.tenant.id,
    accessToken: res.body.accessToken,
    refreshToken: res.body.refreshToken,
  };
}
