import { z } from 'zod';
import { providerCapabilities, providerNames } from '../../lib/llm';
import { updateLlmSettingsAndReindex } from '../../services/documents/reindex';
import { startLlmCheck } from '../../services/llm-checks';
import {
  aggregateUsage,
  effectiveLlmSettings,
  llmSettingsSchema,
  probeProviders,
  spentThisMonth,
  storedLlmSettings,
  usageDimensions,
  type EffectiveLlmSettings,
  type ProviderStatus,
  type ProviderTarget,
} from '../../services/llm';
import type { AppDeps } from '../app';
import { acceptedJob, idempotencyOf, jobSchema, jobView, requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { timestamp } from '../schemas';

const provider = z.object({
  role: z.enum(['chat', 'embedding', 'fallback']),
  provider: z.enum(providerNames),
  model: z.string(),
  baseUrl: z.string().nullable().describe('The endpoint calls go to (null: in-process)'),
  apiVersion: z.string().nullable(),
  apiKey: z
    .object({ source: z.enum(['vault', 'environment', 'none']), reference: z.string().optional() })
    .describe('Where the key comes from: a vault reference, an environment variable, or none. Never the key.'),
  requestsPerMinute: z.number().int(),
  source: z.enum(['tenant', 'environment']).describe("The tenant's settings or the environment's defaults"),
});
const probedProvider = provider.extend({
  status: z.enum(['ok', 'failed']),
  latencyMs: z.number().int(),
  error: z.string().nullable(),
});
const budget = z.object({
  monthlyBudgetUsd: z.number().nullable().describe('null: no budget'),
  source: z.enum(['tenant', 'environment']),
  spentThisMonthUsd: z.number(),
});
const capabilities = z.object({
  name: z.enum(providerNames),
  chat: z.boolean(),
  embeddings: z.boolean(),
  apiKeyRequired: z.boolean(),
  local: z.boolean(),
  defaultBaseUrl: z.string().nullable(),
  defaultChatModel: z.string(),
  defaultEmbeddingModel: z.string().nullable(),
});
const settingsView = z.object({
  stored: llmSettingsSchema.describe("The tenant's own settings; what they leave out comes from the environment"),
  chat: provider,
  embedding: provider,
  fallback: provider.nullable(),
  budget,
});
const updatedSettingsView = settingsView.extend({
  reindexJob: jobSchema
    .optional()
    .describe(
      "Present when the change moved the embedding model while stored documents have vectors of another: the job (`reindexDocuments`, poll GET /jobs/{id}) that re-embeds them into the new model's collection. Until it completes, vector search misses the documents it has not moved yet.",
    ),
});
const providersView = z.object({
  chat: probedProvider,
  embedding: probedProvider,
  fallback: probedProvider.nullable(),
  budget,
  available: z.array(capabilities),
});

const usageQuery = z.object({
  from: timestamp.optional().describe('Default: the start of this month (UTC)'),
  to: timestamp.optional().describe('Default: now'),
  groupBy: z
    .string()
    .default(usageDimensions.join(','))
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(z.enum(usageDimensions)).max(usageDimensions.length))
    .describe(`Comma-separated: ${usageDimensions.join(', ')}; empty for totals only`),
  projectId: z.uuid().optional(),
});
const usageCounts = {
  calls: z.number().int().describe('Provider calls (cache hits not included)'),
  cachedCalls: z.number().int(),
  failedCalls: z.number().int(),
  items: z.number().int(),
  cacheHits: z.number().int().describe('Prompts or texts answered from the cache'),
  cacheMisses: z.number().int().describe('Prompts or texts a provider answered'),
  promptTokens: z.number().int(),
  completionTokens: z.number().int(),
  costUsd: z.number(),
  averageLatencyMs: z.number().int(),
};
const usageView = z.object({
  from: timestamp,
  to: timestamp,
  groupBy: z.array(z.enum(usageDimensions)),
  groups: z.array(
    z.object({
      day: z.string().optional(),
      provider: z.string().optional(),
      model: z.string().optional(),
      projectId: z.uuid().nullable().optional(),
      ...usageCounts,
    }),
  ),
  totals: z.object(usageCounts),
  budget,
});

const targetView = (t: ProviderTarget) => ({
  role: t.role,
  provider: t.provider,
  model: t.model,
  baseUrl: t.baseUrl ?? providerCapabilities(t.provider).defaultBaseUrl,
  apiVersion: t.apiVersion,
  apiKey: t.apiKey === null ? { source: 'none' as const } : t.apiKey.source === 'vault' ? { source: 'vault' as const, reference: t.apiKey.reference } : { source: 'environment' as const },
  requestsPerMinute: t.requestsPerMinute,
  source: t.source,
});

async function budgetView(deps: AppDeps, tenantId: string, s: EffectiveLlmSettings) {
  return { monthlyBudgetUsd: s.monthlyBudgetUsd, source: s.budgetSource, spentThisMonthUsd: await spentThisMonth(deps.sequelize, tenantId) };
}

async function settingsOf(deps: AppDeps, tenantId: string) {
  const s = await effectiveLlmSettings(deps.config, tenantId);
  return {
    stored: await storedLlmSettings(tenantId),
    chat: targetView(s.chat),
    embedding: targetView(s.embedding),
    fallback: s.fallback && targetView(s.fallback),
    budget: await budgetView(deps, tenantId, s),
  };
}

export function llmRouter(deps: AppDeps): ApiRouter {
  const tag = 'llm';
  return new ApiRouter()
    .add(
      {
        method: 'get',
        path: '/llm/providers',
        operationId: 'listLlmProviders',
        summary: 'The configured chat, embedding and fallback providers, whether each answers now, and every provider available',
        tag,
        access: 'llm:read',
        responses: { 200: { description: 'Providers and their status (never a key)', schema: providersView } },
      },
      async (ctx, { auth }) => {
        const s = await effectiveLlmSettings(deps.config, auth.tenantId);
        const statuses = await probeProviders(deps, { tenantId: auth.tenantId, actor: requesterOf(ctx), mode: 'interactive' });
        const probed = (t: ProviderTarget) => {
          const { status, latencyMs, error } = statuses.find((p) => p.role === t.role) as ProviderStatus;
          return { ...targetView(t), status, latencyMs, error };
        };
        ctx.body = {
          chat: probed(s.chat),
          embedding: probed(s.embedding),
          fallback: s.fallback && probed(s.fallback),
          budget: await budgetView(deps, auth.tenantId, s),
          available: providerNames.map((name) => ({ name, ...providerCapabilities(name) })),
        };
      },
    )
    .add(
      {
        method: 'get',
        path: '/llm/settings',
        operationId: 'getLlmSettings',
        summary: "The tenant's LLM settings and the effective configuration (environment defaults filled in)",
        tag,
        access: 'llm:read',
        responses: { 200: { description: 'Settings', schema: settingsView } },
      },
      async (ctx, { auth }) => {
        ctx.body = await settingsOf(deps, auth.tenantId);
      },
    )
    .add(
      {
        method: 'put',
        path: '/llm/settings',
        operationId: 'updateLlmSettings',
        summary:
          "Replace the tenant's LLM settings (providers, models, API keys as vault references, fallback, monthly budget); audited. A new embedding model starts a reindex of the stored documents",
        tag,
        access: 'llm:manage',
        body: llmSettingsSchema,
        responses: { 200: { description: 'The settings now in effect, and the reindex job when one started', schema: updatedSettingsView } },
      },
      async (ctx, { body, auth }) => {
        const reindexJob = await updateLlmSettingsAndReindex(deps, ctx.state.audit, auth.tenantId, body, requesterOf(ctx));
        ctx.body = { ...(await settingsOf(deps, auth.tenantId)), ...(reindexJob ? { reindexJob: jobView(reindexJob) } : {}) };
      },
    )
    .add(
      {
        method: 'get',
        path: '/llm/usage',
        operationId: 'getLlmUsage',
        summary: 'Model calls, tokens, cache hits and cost, summed by day, provider, model and project',
        tag,
        access: 'llm:read',
        query: usageQuery,
        responses: { 200: { description: 'Usage', schema: usageView } },
      },
      async (ctx, { query, auth }) => {
        const now = new Date();
        const from = query.from ? new Date(query.from) : new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
        const to = query.to ? new Date(query.to) : now;
        const range = { from, to, projectId: query.projectId };
        const [groups, [totals]] = await Promise.all([
          aggregateUsage(deps.sequelize, auth.tenantId, { ...range, groupBy: query.groupBy }),
          aggregateUsage(deps.sequelize, auth.tenantId, { ...range, groupBy: [] }),
        ]);
        const s = await effectiveLlmSettings(deps.config, auth.tenantId);
        ctx.body = { from: from.toISOString(), to: to.toISOString(), groupBy: query.groupBy, groups, totals, budget: await budgetView(deps, auth.tenantId, s) };
      },
    )
    .add(
      {
        method: 'post',
        path: '/llm/checks',
        operationId: 'checkLlmProviders',
        summary: 'Check the providers end to end as a job: a chat completion, structured output and embeddings through the LLM task queue (verdicts on its completed event)',
        tag,
        access: 'llm:check',
        idempotent: true,
        responses: { 202: { description: 'The provider check job', schema: jobSchema } },
      },
      async (ctx, { auth }) => {
        const { job } = await startLlmCheck(deps, ctx.state.audit, { tenantId: auth.tenantId, requestedBy: requesterOf(ctx), idempotency: idempotencyOf(ctx, {}) });
        acceptedJob(ctx, job);
      },
    );
}
