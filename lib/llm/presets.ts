import { LlmProviderError } from './errors';

/**
 * Endpoints that speak OpenAI's chat-completions wire format, and what differs between them:
 * where they live, whether they need a key, which JSON mode and token-limit field they accept.
 * The client (openai-compatible.ts) is the same for all of them.
 */

/** How a preset is asked for a JSON answer: a schema it enforces, or "some JSON object" plus instructions. */
export type JsonMode = 'json_schema' | 'json_object';

export interface OpenAiCompatiblePreset {
  /** Shown in the UI. */
  label: string;
  /** The API root when no `baseUrl` is configured; null for azure, whose endpoint is per resource. */
  defaultBaseUrl: string | null;
  /** Appended to a configured `baseUrl` that has no path of its own (`http://gpu-box:8000` → `…/v1`). */
  defaultPath: string;
  apiKeyRequired: boolean;
  /** Runs on the user's own machine or network: no per-token price, no key needed by default. */
  local: boolean;
  /** Model names; for azure these are deployment names, which users choose when deploying. */
  defaultChatModel: string;
  /** Null when the endpoint serves no embeddings. */
  embeddings: {
    /** Null when there is no model every installation has (vLLM serves what it was started with). */
    defaultModel: string | null;
    /** Inputs per embeddings request the endpoint accepts. */
    maxBatch: number;
  } | null;
  jsonMode: JsonMode;
  /**
   * OpenAI deprecated `max_tokens` (its reasoning models reject it) for `max_completion_tokens`;
   * most compatible servers still know only `max_tokens`.
   */
  maxTokensField: 'max_tokens' | 'max_completion_tokens';
  /**
   * Whether streams are asked for a final usage chunk (`stream_options.include_usage`). Mistral
   * rejects unknown fields and sends usage in its last chunk anyway.
   */
  streamUsageOption: boolean;
}

export const presets = {
  openai: {
    label: 'OpenAI',
    defaultBaseUrl: 'https://api.openai.com/v1',
    defaultPath: '/v1',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'gpt-4o-mini',
    embeddings: { defaultModel: 'text-embedding-3-small', maxBatch: 2048 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_completion_tokens',
    streamUsageOption: true,
  },
  azure: {
    label: 'Azure OpenAI',
    defaultBaseUrl: null,
    defaultPath: '/openai',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'gpt-4o-mini',
    embeddings: { defaultModel: 'text-embedding-3-small', maxBatch: 2048 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_completion_tokens',
    streamUsageOption: true,
  },
  ollama: {
    label: 'Ollama',
    defaultBaseUrl: 'http://127.0.0.1:11434/v1',
    defaultPath: '/v1',
    apiKeyRequired: false,
    local: true,
    defaultChatModel: 'llama3.2',
    embeddings: { defaultModel: 'nomic-embed-text', maxBatch: 64 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  vllm: {
    label: 'vLLM',
    defaultBaseUrl: 'http://127.0.0.1:8000/v1',
    defaultPath: '/v1',
    apiKeyRequired: false,
    local: true,
    defaultChatModel: 'Qwen/Qwen2.5-7B-Instruct',
    embeddings: { defaultModel: null, maxBatch: 128 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  lmstudio: {
    label: 'LM Studio',
    defaultBaseUrl: 'http://127.0.0.1:1234/v1',
    defaultPath: '/v1',
    apiKeyRequired: false,
    local: true,
    defaultChatModel: 'qwen2.5-7b-instruct',
    embeddings: { defaultModel: 'text-embedding-nomic-embed-text-v1.5', maxBatch: 64 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  openrouter: {
    label: 'OpenRouter',
    defaultBaseUrl: 'https://openrouter.ai/api/v1',
    defaultPath: '/api/v1',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'openai/gpt-4o-mini',
    embeddings: null,
    // It routes to many models, and only some of them take a schema; every one takes json_object.
    jsonMode: 'json_object',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  groq: {
    label: 'Groq',
    defaultBaseUrl: 'https://api.groq.com/openai/v1',
    defaultPath: '/openai/v1',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'llama-3.3-70b-versatile',
    embeddings: null,
    jsonMode: 'json_object',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  together: {
    label: 'Together AI',
    defaultBaseUrl: 'https://api.together.xyz/v1',
    defaultPath: '/v1',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'meta-llama/Llama-3.3-70B-Instruct-Turbo',
    embeddings: { defaultModel: 'BAAI/bge-base-en-v1.5', maxBatch: 128 },
    jsonMode: 'json_object',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  mistral: {
    label: 'Mistral AI',
    defaultBaseUrl: 'https://api.mistral.ai/v1',
    defaultPath: '/v1',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'mistral-small-latest',
    embeddings: { defaultModel: 'mistral-embed', maxBatch: 128 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_tokens',
    streamUsageOption: false,
  },
  deepseek: {
    label: 'DeepSeek',
    defaultBaseUrl: 'https://api.deepseek.com/v1',
    defaultPath: '/v1',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'deepseek-chat',
    embeddings: null,
    jsonMode: 'json_object',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
  gemini: {
    label: 'Google Gemini',
    defaultBaseUrl: 'https://generativelanguage.googleapis.com/v1beta/openai',
    defaultPath: '/v1beta/openai',
    apiKeyRequired: true,
    local: false,
    defaultChatModel: 'gemini-2.5-flash',
    embeddings: { defaultModel: 'gemini-embedding-001', maxBatch: 100 },
    jsonMode: 'json_schema',
    maxTokensField: 'max_tokens',
    streamUsageOption: true,
  },
} as const satisfies Record<string, OpenAiCompatiblePreset>;

export type PresetName = keyof typeof presets;

export const presetNames = Object.keys(presets) as PresetName[];

/** The Azure OpenAI data-plane API version used when none is configured (the latest GA one). */
export const defaultAzureApiVersion = '2024-10-21';

/** OpenRouter ranks and shows apps by these headers; the title is ours, the URL the deployment's. */
export const openRouterAppTitle = 'AuditFlow';

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(presets, name);
}

/**
 * The API root requests go to: the preset's default, or the configured URL. A configured URL
 * with no path gets the preset's path (users type the host and port a server listens on); one
 * with a path is taken as the full API root, so proxies and unusual layouts still work.
 */
export function resolveBaseUrl(name: PresetName, configured: string | undefined): string {
  const preset: OpenAiCompatiblePreset = presets[name];
  if (configured === undefined || configured === '') {
    if (preset.defaultBaseUrl === null) {
      throw new LlmProviderError(name, 'bad_request', `${preset.label} needs a base URL: the resource endpoint, e.g. https://<resource>.openai.azure.com`);
    }
    return preset.defaultBaseUrl;
  }
  let url: URL;
  try {
    url = new URL(configured);
  } catch {
    throw new LlmProviderError(name, 'bad_request', `${preset.label} base URL is not a URL: ${configured.slice(0, 200)}`);
  }
  if (url.pathname === '' || url.pathname === '/') url.pathname = preset.defaultPath;
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}
