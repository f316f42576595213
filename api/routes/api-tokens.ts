import { z } from 'zod';
import type { ApiToken } from '../../db';
import { createApiToken, listApiTokens, revokeApiToken } from '../../services/api-tokens';
import type { AppDeps } from '../app';
import { ApiRouter } from '../route';
import { idParams, noContent, page, pageQuery, role, timestamp } from '../schemas';

const apiTokenBody = z.object({
  name: z.string().trim().min(1).max(120),
  role,
  expiresAt: timestamp
    .transform((s) => new Date(s))
    .refine((d) => d.getTime() > Date.now(), 'must be in the future')
    .optional(),
});
const apiToken = z.object({
  id: z.uuid(),
  name: z.string(),
  prefix: z.string(),
  role,
  createdBy: z.uuid().nullable(),
  createdAt: timestamp,
  lastUsedAt: timestamp.nullable(),
  expiresAt: timestamp.nullable(),
  revokedAt: timestamp.nullable(),
});
const createdApiToken = apiToken.extend({
  token: z.string().describe('The token itself (`af_<public part>_<secret>`), shown this once: store it now.'),
});

/** Every field but the digest: neither the token nor its hash ever leaves the service after creation. */
const view = (t: ApiToken) => ({
  id: t.id,
  name: t.name,
  prefix: t.prefix,
  role: t.role,
  createdBy: t.createdBy,
  createdAt: t.createdAt.toISOString(),
  lastUsedAt: t.lastUsedAt?.toISOString() ?? null,
  expiresAt: t.expiresAt?.toISOString() ?? null,
  revokedAt: t.revokedAt?.toISOString() ?? null,
});

export function apiTokensRouter({ sequelize }: AppDeps): ApiRouter {
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/api-tokens',
        operationId: 'createApiToken',
        summary: 'Create an API token (for CI and scripts) with a role no higher than yours; the token is shown once',
        tag: 'api-tokens',
        access: 'apiTokens:manage',
        body: apiTokenBody,
        responses: { 201: { description: 'Created; `token` is never shown again', schema: createdApiToken } },
      },
      async (ctx, { body, auth }) => {
        const { apiToken: created, token } = await createApiToken(sequelize, ctx.state.audit, auth, body);
        ctx.status = 201;
        ctx.body = { ...view(created), token };
      },
    )
    .add(
      {
        method: 'get',
        path: '/api-tokens',
        operationId: 'listApiTokens',
        summary: "List your API tokens (admins: every token of the tenant), revoked and expired ones included",
        tag: 'api-tokens',
        access: 'apiTokens:manage',
        query: pageQuery,
        responses: { 200: { description: 'A page of API tokens', schema: page(apiToken) } },
      },
      async (ctx, { query, auth }) => {
        const result = await listApiTokens(auth, query);
        ctx.body = { items: result.items.map(view), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'delete',
        path: '/api-tokens/:id',
        operationId: 'revokeApiToken',
        summary: 'Revoke one of your API tokens (admins: any token of the tenant); it is refused from the next request',
        tag: 'api-tokens',
        access: 'apiTokens:manage',
        params: idParams,
        responses: { 204: noContent },
      },
      async (ctx, { params, auth }) => {
        await revokeApiToken(sequelize, ctx.state.audit, auth, params.id);
        ctx.status = 204;
      },
    );
}
