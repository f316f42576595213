import { z } from 'zod';
import type { Secret, SecretAccessLog } from '../../db';
import {
  createSecret,
  deleteSecret,
  getSecret,
  listSecretAccessLog,
  listSecrets,
  rotateSecret,
  SECRET_VALUE_MAX_BYTES,
  secretNamePattern,
  secretReference,
} from '../../services/secrets';
import type { AppDeps } from '../app';
import { requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { idParams, noContent, page, pageQuery, timestamp } from '../schemas';

const secretValue = z
  .string()
  .min(1)
  .refine((v) => Buffer.byteLength(v, 'utf8') <= SECRET_VALUE_MAX_BYTES, `must be at most ${SECRET_VALUE_MAX_BYTES / 1024} KiB`)
  .describe('Write-only: no response ever contains it');
const createBody = z.object({
  name: z.string().regex(secretNamePattern, 'must be 1-63 characters of a-z, 0-9, "-", "_" and ".", starting with a letter or digit'),
  value: secretValue,
  description: z.string().max(2000).optional(),
});
const rotateBody = z.object({ value: secretValue });
const deleteQuery = z.object({
  force: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true')
    .describe('Delete even while records still reference the secret'),
});

const secretMetadata = {
  id: z.uuid(),
  name: z.string(),
  reference: z.string().describe('What records hold instead of the value: secret://<name>'),
  description: z.string(),
  currentVersion: z.number().int(),
  createdBy: z.string().nullable(),
  createdAt: timestamp,
  updatedAt: timestamp,
};
const secretSummary = z.object(secretMetadata);
const secretDetail = z.object({
  ...secretMetadata,
  versions: z.array(
    z.object({
      version: z.number().int(),
      enabled: z.boolean().describe('Only the current version is enabled'),
      masterKeyId: z.string().describe('The master key its data key is wrapped under'),
      createdAt: timestamp,
    }),
  ),
});
const accessLogEntry = z.object({
  id: z.uuid(),
  version: z.number().int(),
  jobId: z.uuid().nullable(),
  activity: z.string().nullable(),
  actor: z.string().nullable(),
  createdAt: timestamp,
});

const summaryView = (s: Secret) => ({
  id: s.id,
  name: s.name,
  reference: secretReference(s.name),
  description: s.description,
  currentVersion: s.currentVersion,
  createdBy: s.createdBy,
  createdAt: s.createdAt.toISOString(),
  updatedAt: s.updatedAt.toISOString(),
});
const detailView = (s: Secret) => ({
  ...summaryView(s),
  versions: (s.versions ?? []).map((v) => ({ version: v.version, enabled: v.enabled, masterKeyId: v.masterKeyId, createdAt: v.createdAt.toISOString() })),
});
const accessLogView = (a: SecretAccessLog) => ({
  id: a.id,
  version: a.version,
  jobId: a.jobId,
  activity: a.activity,
  actor: a.actor,
  createdAt: a.createdAt.toISOString(),
});

export function secretsRouter(deps: AppDeps): ApiRouter {
  const tag = 'secrets';
  const access = 'secrets:manage';
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/secrets',
        operationId: 'createSecret',
        summary: 'Store a secret (its value is never returned)',
        tag,
        access,
        body: createBody,
        responses: { 201: { description: 'Created', schema: secretSummary } },
      },
      async (ctx, { body, auth }) => {
        const created = await createSecret(deps, ctx.state.audit, auth.tenantId, requesterOf(ctx), body);
        ctx.status = 201;
        ctx.set('Location', `/api/v1/secrets/${created.id}`);
        ctx.body = summaryView(created);
      },
    )
    .add(
      {
        method: 'get',
        path: '/secrets',
        operationId: 'listSecrets',
        summary: 'List secrets, metadata only (oldest first)',
        tag,
        access,
        query: pageQuery,
        responses: { 200: { description: 'A page of secrets', schema: page(secretSummary) } },
      },
      async (ctx, { query, auth }) => {
        const result = await listSecrets(auth.tenantId, query);
        ctx.body = { items: result.items.map(summaryView), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'get',
        path: '/secrets/:id',
        operationId: 'getSecret',
        summary: "A secret's metadata and versions (never a value)",
        tag,
        access,
        params: idParams,
        responses: { 200: { description: 'The secret', schema: secretDetail } },
      },
      async (ctx, { params, auth }) => {
        ctx.body = detailView(await getSecret(auth.tenantId, params.id));
      },
    )
    .add(
      {
        method: 'post',
        path: '/secrets/:id/rotate',
        operationId: 'rotateSecret',
        summary: 'Store a new current version; older versions are disabled, and the oldest beyond VAULT_KEEP_VERSIONS deleted',
        tag,
        access,
        params: idParams,
        body: rotateBody,
        responses: { 200: { description: 'The secret with its versions', schema: secretDetail } },
      },
      async (ctx, { params, body, auth }) => {
        await rotateSecret(deps, ctx.state.audit, auth.tenantId, params.id, body.value);
        ctx.body = detailView(await getSecret(auth.tenantId, params.id));
      },
    )
    .add(
      {
        method: 'delete',
        path: '/secrets/:id',
        operationId: 'deleteSecret',
        summary: 'Delete a secret and all its versions; refused (409, listing them) while records reference it, unless ?force=true',
        tag,
        access,
        params: idParams,
        query: deleteQuery,
        responses: { 204: noContent },
      },
      async (ctx, { params, query, auth }) => {
        await deleteSecret(deps, ctx.state.audit, auth.tenantId, params.id, query.force);
        ctx.status = 204;
      },
    )
    .add(
      {
        method: 'get',
        path: '/secrets/:id/access-log',
        operationId: 'listSecretAccessLog',
        summary: 'Every resolution of the secret (version, job, activity, actor), newest first',
        tag,
        access,
        params: idParams,
        query: pageQuery,
        responses: { 200: { description: 'A page of access-log entries', schema: page(accessLogEntry) } },
      },
      async (ctx, { params, query, auth }) => {
        const result = await listSecretAccessLog(auth.tenantId, params.id, query);
        ctx.body = { items: result.items.map(accessLogView), nextCursor: result.nextCursor };
      },
    );
}
