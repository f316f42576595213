import type { TokenUsage } from './types';

/**
 * What a call costs, in US dollars, from list prices kept here (USD per million tokens). A model
 * is matched by the longest listed name it starts with, followed by nothing or a `-`, `:` or `@`
 * suffix (a date, a tag): `gpt-4o-2024-08-06` is `gpt-4o`, `gpt-4o-mini` is its own entry, and
 * `gpt-5.4` is not `gpt-5` (a different model, whose price we do not know).
 *
 * Prices change; the usage rows keep the tokens, so costs can be recomputed when they do.
 */

interface Price {
  /** USD per million prompt (input) tokens. */
  input: number;
  /** USD per million completion (output) tokens; 0 for embedding models. */
  output: number;
}

type PriceTable = Readonly<Record<string, Price>>;

const openAiPrices: PriceTable = {
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4.1': { input: 2, output: 8 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4 },
  'gpt-5': { input: 1.25, output: 10 },
  'gpt-5-mini': { input: 0.25, output: 2 },
  'gpt-5-nano': { input: 0.05, output: 0.4 },
  o1: { input: 15, output: 60 },
  'o1-mini': { input: 1.1, output: 4.4 },
  o3: { input: 2, output: 8 },
  'o3-mini': { input: 1.1, output: 4.4 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
};

/** Dots are written as dashes (`claude-3.5-sonnet`, as OpenRouter names it, is `claude-3-5-sonnet`). */
const anthropicPrices: PriceTable = {
  'claude-opus-4': { input: 15, output: 75 },
  'claude-opus-4-1': { input: 15, output: 75 },
  'claude-opus-4-5': { input: 5, output: 25 },
  'claude-sonnet-4': { input: 3, output: 15 },
  'claude-haiku-4-5': { input: 1, output: 5 },
  'claude-3-opus': { input: 15, output: 75 },
  'claude-3-7-sonnet': { input: 3, output: 15 },
  'claude-3-5-sonnet': { input: 3, output: 15 },
  'claude-3-5-haiku': { input: 0.8, output: 4 },
  'claude-3-haiku': { input: 0.25, output: 1.25 },
};

const mistralPrices: PriceTable = {
  'mistral-large': { input: 2, output: 6 },
  'mistral-medium': { input: 0.4, output: 2 },
  'mistral-small': { input: 0.1, output: 0.3 },
  'open-mistral-nemo': { input: 0.15, output: 0.15 },
  'ministral-8b': { input: 0.1, output: 0.1 },
  'ministral-3b': { input: 0.04, output: 0.04 },
  codestral: { input: 0.3, output: 0.9 },
  'pixtral-large': { input: 2, output: 6 },
  'mistral-embed': { input: 0.1, output: 0 },
};

const deepSeekPrices: PriceTable = {
  'deepseek-chat': { input: 0.27, output: 1.1 },
  'deepseek-reasoner': { input: 0.55, output: 2.19 },
};

const groqPrices: PriceTable = {
  'llama-3.3-70b-versatile': { input: 0.59, output: 0.79 },
  'llama-3.1-8b-instant': { input: 0.05, output: 0.08 },
  'gemma2-9b-it': { input: 0.2, output: 0.2 },
  'meta-llama/llama-4-scout-17b-16e-instruct': { input: 0.11, output: 0.34 },
  'meta-llama/llama-4-maverick-17b-128e-instruct': { input: 0.2, output: 0.6 },
  'openai/gpt-oss-120b': { input: 0.15, output: 0.75 },
  'openai/gpt-oss-20b': { input: 0.1, output: 0.5 },
  'qwen/qwen3-32b': { input: 0.29, output: 0.59 },
};

const geminiPrices: PriceTable = {
  'gemini-2.5-pro': { input: 1.25, output: 10 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5 },
  'gemini-2.5-flash-lite': { input: 0.1, output: 0.4 },
  'gemini-2.0-flash': { input: 0.1, output: 0.4 },
  'gemini-2.0-flash-lite': { input: 0.075, output: 0.3 },
  'gemini-1.5-pro': { input: 1.25, output: 5 },
  'gemini-1.5-flash': { input: 0.075, output: 0.3 },
  'gemini-embedding-001': { input: 0.15, output: 0 },
};

/** Together names models by their Hugging Face repository; matched in lower case. */
const togetherPrices: PriceTable = {
  'meta-llama/llama-3.3-70b-instruct-turbo': { input: 0.88, output: 0.88 },
  'meta-llama/meta-llama-3.1-8b-instruct-turbo': { input: 0.18, output: 0.18 },
  'meta-llama/meta-llama-3.1-70b-instruct-turbo': { input: 0.88, output: 0.88 },
  'meta-llama/meta-llama-3.1-405b-instruct-turbo': { input: 3.5, output: 3.5 },
  'qwen/qwen2.5-72b-instruct-turbo': { input: 1.2, output: 1.2 },
  'deepseek-ai/deepseek-v3': { input: 1.25, output: 1.25 },
  'deepseek-ai/deepseek-r1': { input: 3, output: 7 },
  'baai/bge-base-en-v1.5': { input: 0.008, output: 0 },
  'baai/bge-large-en-v1.5': { input: 0.016, output: 0 },
};

/**
 * The price of a model of a paid provider that is not in its table (a new model, a custom Azure
 * deployment name): about the provider's most expensive common model. An unknown model must
 * never cost nothing, or a budget would silently stop counting; overestimating only makes the
 * budget run out early, which the UI flags as an estimate (`isPriced`).
 */
const unknownModelPrices: Readonly<Record<string, Price>> = {
  openai: { input: 15, output: 60 },
  azure: { input: 15, output: 60 },
  anthropic: { input: 15, output: 75 },
  openrouter: { input: 15, output: 75 },
  mistral: { input: 2, output: 6 },
  deepseek: { input: 0.55, output: 2.19 },
  groq: { input: 1, output: 3 },
  together: { input: 3.5, output: 7 },
  gemini: { input: 2.5, output: 15 },
};

/** For a provider we know nothing about, the most expensive of the above. */
const unknownProviderPrice: Price = { input: 15, output: 75 };

/** Run on the user's own hardware: no per-token price. */
const freeProviders: ReadonlySet<string> = new Set(['builtin', 'ollama', 'vllm', 'lmstudio']);

const tablesByProvider: Readonly<Record<string, PriceTable>> = {
  openai: openAiPrices,
  azure: openAiPrices,
  anthropic: anthropicPrices,
  mistral: mistralPrices,
  deepseek: deepSeekPrices,
  groq: groqPrices,
  gemini: geminiPrices,
  together: togetherPrices,
};

/** OpenRouter names models `<vendor>/<model>` and passes the vendor's price through. */
const openRouterVendors: Readonly<Record<string, PriceTable>> = {
  openai: openAiPrices,
  anthropic: anthropicPrices,
  mistralai: mistralPrices,
  deepseek: deepSeekPrices,
  google: geminiPrices,
};

function lookUp(table: PriceTable, model: string): Price | undefined {
  let best: { name: string; price: Price } | undefined;
  for (const [name, price] of Object.entries(table)) {
    const matches = model === name || (model.startsWith(name) && /^[-:@]/.test(model.slice(name.length)));
    if (matches && (best === undefined || name.length > best.name.length)) best = { name, price };
  }
  return best?.price;
}

function listedPrice(provider: string, model: string): Price | undefined {
  let name = model.trim().toLowerCase();
  let table = tablesByProvider[provider];
  if (provider === 'openrouter') {
    const slash = name.indexOf('/');
    table = slash === -1 ? undefined : openRouterVendors[name.slice(0, slash)];
    name = name.slice(slash + 1);
  }
  if (provider === 'gemini') name = name.replace(/^models\//, '');
  if (table === anthropicPrices) name = name.replace(/\./g, '-');
  return table === undefined ? undefined : lookUp(table, name);
}

/** Whether the cost of this model's calls comes from a listed price (false: a conservative estimate). */
export function isPriced(provider: string, model: string): boolean {
  return freeProviders.has(provider) || listedPrice(provider, model) !== undefined;
}

/** The cost of one call in US dollars. */
export function costOf(provider: string, model: string, usage: TokenUsage): number {
  if (freeProviders.has(provider)) return 0;
  const price = listedPrice(provider, model) ?? unknownModelPrices[provider] ?? unknownProviderPrice;
  const dollars = (usage.promptTokens * price.input + usage.completionTokens * price.output) / 1_000_000;
  return Math.round(dollars * 1e10) / 1e10; // drop binary noise (0.30000000000000004) before it reaches a numeric column
}

/** A rough token count (about four characters per token in English and code) for servers that report none. */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}
