import Router, { type RouterContext } from '@koa/router';
import type { z, ZodType } from 'zod';
import { ForbiddenError, UnauthorizedError, ValidationError } from '../lib/errors';
import { can, type Permission } from '../services/permissions';
import type { Principal } from '../services/principal';
import type { AppState } from './state';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ResponseSpec {
  description: string;
  schema?: ZodType;
  /** The body's media type when it is not JSON (e.g. `text/event-stream`, with a string schema). */
  mediaType?: string;
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

export interface RouteSpec<B extends ZodType | undefined, Q extends ZodType | undefined, P extends ZodType | undefined, A extends Access = Access> {
  method: HttpMethod;
  path: string;
  operationId: string;
  summary: string;
  tag: string;
  access: A;
  body?: B;
  query?: Q;
  params?: P;
  /** Starts a job: honours an `Idempotency-Key` header (see `idempotencyOf`). */
  idempotent?: boolean;
  responses: Record<number, ResponseSpec>;
}

export type AnyRouteSpec = RouteSpec<ZodType | undefined, ZodType | undefined, ZodType | undefined>;
type Parsed<T> = T extends ZodType ? z.output<T> : undefined;
export type Ctx = RouterContext<AppState>;

/** One router per resource: routes are declared with their schemas and access, handlers stay thin. */
export class ApiRouter {
  readonly router = new Router<AppState>();
  readonly specs: AnyRouteSpec[] = [];

  add<
    A extends Access,
    B extends ZodType | undefined = undefined,
    Q extends ZodType | undefined = undefined,
    P extends ZodType | undefined = undefined,
  >(
    spec: RouteSpec<B, Q, P, A>,
    handler: (
      ctx: Ctx,
      input: { body: Parsed<B>; query: Parsed<Q>; params: Parsed<P>; auth: AuthFor<A> },
    ) => void | Promise<void>,
  ): this {
    this.specs.push(spec);
    this.router[spec.method](spec.path, async (ctx) => {
      const auth = authorize(ctx, spec.access);
      const input = {
        auth: auth as AuthFor<A>,
        params: parse(spec.params, ctx.params, 'path') as Parsed<P>,
        query: parse(spec.query, ctx.query, 'query') as Parsed<Q>,
        body: parse(spec.body, ctx.request.body, 'body') as Parsed<B>,
      };
      await handler(ctx, input);
    });
    return this;
  }
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
