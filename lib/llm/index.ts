import { anthropicDefaults, createAnthropicProvider } from './anthropic';
import { createBuiltinProvider } from './builtin';
import { createOpenAiCompatibleProvider } from './openai-compatible';
import { isPresetName, presets, type OpenAiCompatiblePreset } from './presets';
import type { ProviderName } from './provider-names';
import type { LlmProvider } from './types';

/**
 * The model providers: `builtin` (offline, the default), `anthropic`, and the OpenAI-compatible
 * presets. `createProvider` is the one way the gateway gets a client.
 */

export interface ProviderConfig {
  provider: ProviderName;
  /** The endpoint, when not the provider's default (for azure: the resource endpoint, required). */
  baseUrl?: string;
  apiKey?: string;
  /** Azure OpenAI's `api-version`. */
  apiVersion?: string;
  /** This deployment's public URL (PUBLIC_URL), sent to OpenRouter as its app attribution. */
  appUrl?: string;
}

export interface ProviderCapabilities {
  chat: boolean;
  embeddings: boolean;
  apiKeyRequired: boolean;
  defaultBaseUrl: string | null;
  defaultChatModel: string;
  defaultEmbeddingModel: string | null;
  /** Runs on this machine or the user's network: free, and no data leaves it. */
  local: boolean;
}

/** Throws `LlmProviderError` (`unauthorized`) when a provider that needs a key has none, (`bad_request`) for a bad base URL. */
export function createProvider(config: ProviderConfig): LlmProvider {
  if (config.provider === 'builtin') return createBuiltinProvider();
  if (config.provider === 'anthropic') return createAnthropicProvider({ baseUrl: config.baseUrl, apiKey: config.apiKey });
  return createOpenAiCompatibleProvider({
    preset: config.provider,
    baseUrl: config.baseUrl,
    apiKey: config.apiKey,
    apiVersion: config.apiVersion,
    appUrl: config.appUrl,
  });
}

export function providerCapabilities(name: ProviderName): ProviderCapabilities {
  if (name === 'builtin') {
    return {
      chat: true,
      embeddings: true,
      apiKeyRequired: false,
      defaultBaseUrl: null,
      defaultChatModel: 'extractive',
      defaultEmbeddingModel: 'hashing-384',
      local: true,
    };
  }
  if (name === 'anthropic') {
    return {
      chat: true,
      embeddings: false,
      apiKeyRequired: true,
      defaultBaseUrl: anthropicDefaults.baseUrl,
      defaultChatModel: anthropicDefaults.chatModel,
      defaultEmbeddingModel: null,
      local: false,
    };
  }
  const preset: OpenAiCompatiblePreset = presets[name];
  return {
    chat: true,
    embeddings: preset.embeddings !== null,
    apiKeyRequired: preset.apiKeyRequired,
    defaultBaseUrl: preset.defaultBaseUrl,
    defaultChatModel: preset.defaultChatModel,
    defaultEmbeddingModel: preset.embeddings?.defaultModel ?? null,
    local: preset.local,
  };
}

export function isProviderName(name: string): name is ProviderName {
  return name === 'builtin' || name === 'anthropic' || isPresetName(name);
}

export { providerNames, type ProviderName } from './provider-names';
export type * from './types';
export { LlmProviderError, type LlmErrorKind } from './errors';
export { costOf, estimateTokens, isPriced } from './pricing';
export { presets, presetNames, defaultAzureApiVersion, type PresetName, type JsonMode, type OpenAiCompatiblePreset } from './presets';
export { createAnthropicProvider, type AnthropicConfig } from './anthropic';
export { createOpenAiCompatibleProvider, type OpenAiCompatibleConfig } from './openai-compatible';
