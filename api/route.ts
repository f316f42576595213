import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Router, { type RouterContext } from '@koa/router';
import type { z, ZodType } from 'zod';
import { AppError, ForbiddenError, UnauthorizedError, ValidationError } from '../lib/errors';
import { can, type Permission } from '../services/permissions';
import type { Principal } from '../services/principal';
import { receiveMultipart, type UploadedFile } from './middleware/multipart';
import type { AppState } from './state';

export type { UploadedFile } from './middleware/multipart';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ResponseSpec {
  description: string;
  schema?: ZodType;
  /** The body's media type when it is not JSON (e.g. `text/event-stream`, with a string schema). */
  mediaType?: string;
  /**
   * Other media types the same response may take instead, chosen by the request's `Accept`
   * header, each with its schema: e.g. `text/event-stream`, a string schema describing the events.
   */
  alternatives?: Record<string, ZodType>;
}

/**
 * A route that takes files as `multipart/form-data` (besides, or instead of, a JSON body): the
 * body middleware lets such bodies through to it alone (any other route answers 415), and the
 * router streams the file parts to temporary files, removed once the handler returns.
 */
export interface UploadSpec<F extends ZodType = ZodType> {
  /** The form field carrying the files: one file part (up to `maxFiles`), under this name (missing: 400). */
  field: string;
  /** What the file is, for the OpenAPI document. */
  description: string;
  /** The size limit in bytes of the files together (a configuration value), counted while they arrive: beyond it, 413. */
  maxBytes: number;
  /** How many file parts the field may carry; 1 when absent. */
  maxFiles?: number;
  /** Media types a file part may declare (lower case); others answer 415. Absent: `fileLimit` decides on each part. */
  mediaTypes?: readonly string[];
  /**
   * Decides on each file part from its name and media type, before its bytes are read: throws
   * (an AppError, e.g. a 415 naming the file) to refuse it, or returns its own size limit in bytes.
   */
  fileLimit?: (part: { fileName: string; mediaType: string }) => number;
  /** The form's text fields, validated (and documented) like a body; unknown fields are dropped. */
  fields: F;
}

/** What a route declares: the OpenAPI document and the request validation both come from it. */
/**
 * `public`: no token needed. `authenticated`: any member or API token of the tenant. `session`: a
 * person signed in (their own session, password, email), never an API token, which acts for a
 * tenant. Anything else is the permission the caller's role must hold.
 */
type Access = 'public' | 'authenticated' | 'session' | Permission;

/** A person's session: what `session` routes are handed. */
export type UserPrincipal = Principal & { kind: 'user'; userId: string };
type AuthFor<A extends Access> = A extends 'public' ? Principal | undefined : A extends 'session' ? UserPrincipal : Principal;

export interface RouteSpec<
  B extends ZodType | undefined,
  Q extends ZodType | undefined,
  P extends ZodType | undefined,
  A extends Access = Access,
  U extends UploadSpec | undefined = UploadSpec | undefined,
> {
  method: HttpMethod;
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  access: A;
  body?: B;
  /** Also (or only) accepts the body as `multipart/form-data` with a file. */
  upload?: U;
  query?: Q;
  params?: P;
  /** Starts a job: honours an `Idempotency-Key` header (see `idempotencyOf`). */
  idempotent?: boolean;
  /** A POST that changes nothing (a query whose input does not fit a URL): not audited as a change. */
  readOnly?: boolean;
  responses: Record<number, ResponseSpec>;
}

export type AnyRouteSpec = RouteSpec<ZodType | undefined, ZodType | undefined, ZodType | undefined>;
type Parsed<T> = T extends ZodType ? z.output<T> : undefined;
export type Ctx = RouterContext<AppState>;

/** A received upload: the files (on disk while the handler runs) and the form's validated fields. */
export interface Upload<F> {
  /** The first file: a route that takes one file reads it here. */
  file: UploadedFile;
  /** Every file, in the order sent. */
  files: UploadedFile[];
  fields: F;
}

/**
 * A route that takes uploads gets either the JSON body or the upload, never both: `upload` is
 * set exactly when the request was multipart. Other routes get the body alone.
 */
type Payload<B, U> =
  U extends UploadSpec<infer F>
    ? { body: Parsed<B>; upload: undefined } | { body: undefined; upload: Upload<z.output<F>> }
    : { body: Parsed<B>; upload?: undefined };

const isMultipart = (ctx: Ctx) => ctx.is('multipart/form-data') === 'multipart/form-data';

/** One router per resource: routes are declared with their schemas and access, handlers stay thin. */
export class ApiRouter {
  readonly router = new Router<AppState>();
  readonly specs: AnyRouteSpec[] = [];

  add<
    A extends Access,
    B extends ZodType | undefined = undefined,
    Q extends ZodType | undefined = undefined,
    P extends ZodType | undefined = undefined,
    U extends UploadSpec | undefined = undefined,
  >(
    spec: RouteSpec<B, Q, P, A, U>,
    handler: (
      ctx: Ctx,
      input: { query: Parsed<Q>; params: Parsed<P>; auth: AuthFor<A> } & Payload<B, U>,
    ) => void | Promise<void>,
  ): this {
    this.specs.push(spec);
    this.router[spec.method](spec.path, async (ctx) => {
      if (spec.readOnly) ctx.state.readOnly = true;
      // Who and which resource first: an upload is read only for a caller allowed to send it.
      const auth = authorize(ctx, spec.access) as AuthFor<A>;
      const params = parse(spec.params, ctx.params, 'path') as Parsed<P>;
      const query = parse(spec.query, ctx.query, 'query') as Parsed<Q>;
      const run = (payload: Payload<B, U>) => handler(ctx, { auth, params, query, ...payload });
      if (!spec.upload || !isMultipart(ctx)) {
        if (spec.upload && !spec.body) throw new AppError(415, 'unsupported-media-type', `Send the body as multipart/form-data, with the file as "${spec.upload.field}".`);
        await run({ body: parse(spec.body, ctx.request.body, 'body') } as Payload<B, U>);
        return;
      }
      await withUpload(ctx, spec.upload, (upload) => run({ body: undefined, upload } as Payload<B, U>));
    });
    return this;
  }
}

/**
 * Receives the request's upload into a temporary directory of its own, validates the form, runs
 * `use` and removes the directory, whatever happened.
 */
async function withUpload<F extends ZodType>(ctx: Ctx, spec: UploadSpec<F>, use: (upload: Upload<z.output<F>>) => Promise<void> | void): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `auditflow-upload-${ctx.state.requestId}-`));
  try {
    const form = await receiveMultipart(
      ctx.req,
      { fileField: spec.field, maxBytes: spec.maxBytes, maxFiles: spec.maxFiles ?? 1, mediaTypes: spec.mediaTypes, fileLimit: spec.fileLimit },
      dir,
    );
    const fields = parse(spec.fields, form.fields, 'body') as z.output<F>;
    const [file] = form.files;
    if (!file) {
      throw new ValidationError('Invalid request body.', [{ path: `body.${spec.field}`, message: `is required: attach the file as a multipart part named "${spec.field}"` }]);
    }
    await use({ file, files: form.files, fields });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Whether a request reaches a route that takes uploads (`specs` with their full paths): the body
 * middleware lets `multipart/form-data` through to those routes only.
 */
export function uploadRouteMatcher(specs: readonly AnyRouteSpec[]): (method: string, path: string) => boolean {
  const routes = specs
    .filter((s) => s.upload)
    .map((s) => ({
      method: s.method.toUpperCase(),
      pattern: new RegExp(`^${s.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:\w+/g, '[^/]+')}/?$`),
    }));
  return (method, requestPath) => routes.some((r) => r.method === method && r.pattern.test(requestPath));
}

function authorize(ctx: Ctx, access: Access): Principal | undefined {
  const auth = ctx.state.auth;
  if (access === 'public') return auth;
  if (!auth) throw new UnauthorizedError();
  if (access === 'session') {
    if (auth.kind === 'user' && auth.userId) return auth;
    ctx.state.denied = access;
    throw new ForbiddenError('This route needs a person signed in, not an API token.');
  }
  if (access !== 'authenticated' && !can(auth.role, access)) {
    ctx.state.denied = access;
    throw new ForbiddenError(`Your role (${auth.role}) does not allow ${access}.`);
  }
  return auth;
}

function parse(schema: ZodType | undefined, value: unknown, where: 'path' | 'query' | 'body'): unknown {
  if (!schema) return undefined;
  const result = schema.safeParse(value ?? (where === 'body' ? undefined : {}));
  if (result.success) return result.data;
  throw new ValidationError(
    `Invalid request ${where}.`,
    result.error.issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message })),
  );
}
