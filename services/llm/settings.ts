import type { Sequelize, Transaction } from 'sequelize';
import { LlmSettings, Secret } from '../../db';
import type { Config } from '../../lib/config';
import { AppError } from '../../lib/errors';
import { providerCapabilities, providerNames, type ProviderName } from '../../lib/llm';
import { z } from 'zod';
import type { AuditScope } from '../audit';
import { secretNameOf } from '../secrets';
import { SecretReferenceError } from '../vault';

/**
 * Which providers and models a tenant's calls go to: the environment's defaults, overridden by
 * the tenant's own settings. API keys are vault references (`secret://<name>`) in settings, and
 * environment variables for the defaults; both are resolved only at the moment of a call.
 */

export type LlmConfig = Pick<
  Config,
  | 'LLM_CHAT_PROVIDER'
  | 'LLM_CHAT_MODEL'
  | 'LLM_CHAT_BASE_URL'
  | 'LLM_CHAT_API_KEY'
  | 'LLM_EMBEDDING_PROVIDER'
  | 'LLM_EMBEDDING_MODEL'
  | 'LLM_EMBEDDING_BASE_URL'
  | 'LLM_EMBEDDING_API_KEY'
  | 'LLM_MONTHLY_BUDGET_USD'
  | 'LLM_REQUESTS_PER_MINUTE'
  | 'LLM_ALLOWED_HOSTS'
>;

export const providerSettingsSchema = z
  .object({
    provider: z.enum(providerNames),
    model: z.string().trim().min(1).max(200).optional().describe("Defaults to the provider's default model (for azure: the deployment name)"),
    baseUrl: z
      .url({ protocol: /^https?$/ })
      .max(2000)
      .optional()
      .describe("The endpoint, when not the preset's; its host must be in LLM_ALLOWED_HOSTS"),
    apiKey: z
      .string()
      .max(100)
      .refine((v) => secretNameOf(v) !== null, 'must be a vault reference: secret://<name>')
      .optional()
      .describe('A vault reference (secret://<name>), never the key itself'),
    apiVersion: z.string().trim().min(1).max(40).optional().describe('Azure OpenAI api-version'),
    requestsPerMinute: z.number().int().min(1).max(1_000_000).optional().describe('Rate limit for this endpoint and key, across all workers'),
  })
  .strict();
export type ProviderSettings = z.output<typeof providerSettingsSchema>;

/** What a tenant stores; a key left out takes the environment's default. */
export const llmSettingsSchema = z
  .object({
    chat: providerSettingsSchema.optional(),
    embedding: providerSettingsSchema.optional(),
    fallback: providerSettingsSchema.optional().describe('Chat calls go here when the chat provider fails; embeddings never fall back (vectors of two models do not compare)'),
    monthlyBudgetUsd: z.number().min(0).max(1e9).nullable().optional().describe('US dollars per calendar month (UTC); null: no budget'),
  })
  .strict();
export type StoredLlmSettings = z.output<typeof llmSettingsSchema>;

export type ProviderRole = 'chat' | 'embedding' | 'fallback';

/** Where a call's API key comes from: a vault reference, an environment variable, or nowhere (local and builtin providers). */
export type ApiKeySource = { source: 'vault'; reference: string } | { source: 'environment'; variable: 'LLM_CHAT_API_KEY' | 'LLM_EMBEDDING_API_KEY' } | null;

/** One provider endpoint as calls use it. */
export interface ProviderTarget {
  role: ProviderRole;
  provider: ProviderName;
  model: string;
  baseUrl: string | null;
  apiVersion: string | null;
  apiKey: ApiKeySource;
  requestsPerMinute: number;
  source: 'tenant' | 'environment';
}

export interface EffectiveLlmSettings {
  chat: ProviderTarget;
  embedding: ProviderTarget;
  fallback: ProviderTarget | null;
  monthlyBudgetUsd: number | null;
  budgetSource: 'tenant' | 'environment';
}

export class InvalidLlmSettingsError extends AppError {
  constructor(message: string, path: string) {
    super(422, 'invalid-llm-settings', message, { errors: [{ path, message }] });
  }
}

function tenantTarget(role: ProviderRole, s: ProviderSettings, config: LlmConfig): ProviderTarget {
  const caps = providerCapabilities(s.provider);
  return {
    role,
    provider: s.provider,
    model: s.model ?? (role === 'embedding' ? (caps.defaultEmbeddingModel ?? '') : caps.defaultChatModel),
    baseUrl: s.baseUrl ?? null,
    apiVersion: s.apiVersion ?? null,
    apiKey: s.apiKey ? { source: 'vault', reference: s.apiKey } : null,
    requestsPerMinute: s.requestsPerMinute ?? config.LLM_REQUESTS_PER_MINUTE,
    source: 'tenant',
  };
}

function environmentTarget(role: 'chat' | 'embedding', config: LlmConfig): ProviderTarget {
  const [provider, model, baseUrl, apiKey] =
    role === 'chat'
      ? ([config.LLM_CHAT_PROVIDER, config.LLM_CHAT_MODEL, config.LLM_CHAT_BASE_URL, config.LLM_CHAT_API_KEY] as const)
      : ([config.LLM_EMBEDDING_PROVIDER, config.LLM_EMBEDDING_MODEL, config.LLM_EMBEDDING_BASE_URL, config.LLM_EMBEDDING_API_KEY] as const);
  const caps = providerCapabilities(provider);
  return {
    role,
    provider,
    model: model ?? (role === 'chat' ? caps.defaultChatModel : (caps.defaultEmbeddingModel ?? '')),
    baseUrl: baseUrl ?? null,
    apiVersion: null,
    apiKey: apiKey ? { source: 'environment', variable: role === 'chat' ? 'LLM_CHAT_API_KEY' : 'LLM_EMBEDDING_API_KEY' } : null,
    requestsPerMinute: config.LLM_REQUESTS_PER_MINUTE,
    source: 'environment',
  };
}

export async function storedLlmSettings(tenantId: string): Promise<StoredLlmSettings> {
  const row = await LlmSettings.findByPk(tenantId);
  // Stored settings were validated on write; parsing again keeps an old row from smuggling in a key a newer schema dropped.
  const parsed = llmSettingsSchema.safeParse(row?.settings ?? {});
  return parsed.success ? parsed.data : {};
}

/** The settings every call of the tenant uses: its own where it has them, the environment's otherwise. */
export async function effectiveLlmSettings(config: LlmConfig, tenantId: string): Promise<EffectiveLlmSettings> {
  const stored = await storedLlmSettings(tenantId);
  return {
    chat: stored.chat ? tenantTarget('chat', stored.chat, config) : environmentTarget('chat', config),
    embedding: stored.embedding ? tenantTarget('embedding', stored.embedding, config) : environmentTarget('embedding', config),
    fallback: stored.fallback ? tenantTarget('fallback', stored.fallback, config) : null,
    monthlyBudgetUsd: stored.monthlyBudgetUsd === undefined ? (config.LLM_MONTHLY_BUDGET_USD ?? null) : stored.monthlyBudgetUsd,
    budgetSource: stored.monthlyBudgetUsd === undefined ? 'environment' : 'tenant',
  };
}

/** Whether the tenant's chat model can do what the built-in extractive one cannot (e.g. analyse code). */
export async function hasRealChatModel(config: LlmConfig, tenantId: string): Promise<boolean> {
  return (await effectiveLlmSettings(config, tenantId)).chat.provider !== 'builtin';
}

/**
 * A tenant's endpoint may point only at hosts the operator allows: otherwise a tenant could make
 * workers call internal services (cloud metadata, the database) with its settings. Public
 * presets at their own endpoints need no allowance; local presets (ollama, vllm, lmstudio) do.
 */
function checkEndpoint(path: string, s: ProviderSettings, config: LlmConfig): void {
  const caps = providerCapabilities(s.provider);
  const url = s.baseUrl ?? caps.defaultBaseUrl;
  if (url === null) {
    if (s.provider !== 'builtin') throw new InvalidLlmSettingsError(`${s.provider} needs a baseUrl (its endpoint).`, `${path}.baseUrl`);
    return;
  }
  if (s.baseUrl === undefined && !caps.local) return;
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (!config.LLM_ALLOWED_HOSTS.includes(host)) {
    throw new InvalidLlmSettingsError(`The endpoint host "${host}" is not allowed here: an operator must list it in LLM_ALLOWED_HOSTS.`, `${path}.baseUrl`);
  }
}

async function checkProvider(tenantId: string, path: ProviderRole, s: ProviderSettings, config: LlmConfig): Promise<void> {
  const caps = providerCapabilities(s.provider);
  if (path === 'embedding' && !caps.embeddings) throw new InvalidLlmSettingsError(`${s.provider} offers no embeddings.`, 'embedding.provider');
  if (path !== 'embedding' && !caps.chat) throw new InvalidLlmSettingsError(`${s.provider} offers no chat completions.`, `${path}.provider`);
  if (path === 'embedding' && !s.model && !caps.defaultEmbeddingModel) throw new InvalidLlmSettingsError(`Name the embedding model of ${s.provider}.`, 'embedding.model');
  if (caps.apiKeyRequired && !s.apiKey) throw new InvalidLlmSettingsError(`${s.provider} needs an API key: store it as a secret and give its reference (secret://<name>).`, `${path}.apiKey`);
  checkEndpoint(path, s, config);
  if (s.apiKey) {
    const name = secretNameOf(s.apiKey);
    if (!name || !(await Secret.findOne({ where: { tenantId, name }, attributes: ['id'] }))) throw new SecretReferenceError(s.apiKey, name ? 'missing' : 'malformed');
  }
}

/** The advisory lock (a hashtext key) that orders changes of a tenant's settings with work that must commit under the settings it read. */
const llmSettingsLock = (tenantId: string) => `llm-settings:${tenantId}`;

/**
 * Holds the tenant's settings still until `transaction` ends: a change waits for it, and it
 * waits for a change being committed. Publishing documents embedded with the current model takes
 * it, so a change of model (whose reindex moves the documents published before it) never slips
 * in between reading the model and publishing.
 */
export async function holdLlmSettings(sequelize: Sequelize, tenantId: string, transaction: Transaction): Promise<void> {
  await sequelize.query('SELECT pg_advisory_xact_lock_shared(hashtext(:lock))', { replacements: { lock: llmSettingsLock(tenantId) }, transaction });
}

/** Replaces the tenant's settings (keys left out fall back to the environment's defaults); audited. */
export async function updateLlmSettings(
  deps: { sequelize: Sequelize; config: LlmConfig },
  audit: AuditScope,
  tenantId: string,
  settings: StoredLlmSettings,
  updatedBy: string,
): Promise<EffectiveLlmSettings> {
  for (const role of ['chat', 'embedding', 'fallback'] as const) {
    const s = settings[role];
    if (s) await checkProvider(tenantId, role, s, deps.config);
  }
  if (settings.fallback) {
    const chat = settings.chat ?? { provider: deps.config.LLM_CHAT_PROVIDER, model: deps.config.LLM_CHAT_MODEL, baseUrl: deps.config.LLM_CHAT_BASE_URL };
    if (chat.provider === settings.fallback.provider && chat.model === settings.fallback.model && chat.baseUrl === settings.fallback.baseUrl) {
      throw new InvalidLlmSettingsError('The fallback is the chat provider itself; name another provider or model.', 'fallback');
    }
  }
  await deps.sequelize.transaction(async (transaction) => {
    // Waits for work holding the settings (holdLlmSettings) to commit under the old ones.
    await deps.sequelize.query('SELECT pg_advisory_xact_lock(hashtext(:lock))', { replacements: { lock: llmSettingsLock(tenantId) }, transaction });
    await LlmSettings.upsert({ tenantId, settings, updatedBy }, { transaction });
    // The settings hold references only, never a key, so they can be audited whole.
    await audit.record({ action: 'llm.settings.update', resourceType: 'llm_settings', resourceId: tenantId, details: { settings } }, transaction);
  });
  return effectiveLlmSettings(deps.config, tenantId);
}
