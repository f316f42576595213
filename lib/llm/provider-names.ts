import type { PresetName } from './presets';

/**
 * The names of every provider, in a module of their own: the configuration schema needs them,
 * and should not load the provider SDKs to get them.
 */
export const providerNames = [
  'builtin',
  'anthropic',
  'openai',
  'azure',
  'ollama',
  'vllm',
  'lmstudio',
  'openrouter',
  'groq',
  'together',
  'mistral',
  'deepseek',
  'gemini',
] as const satisfies readonly ('builtin' | 'anthropic' | PresetName)[];

export type ProviderName = (typeof providerNames)[number];

/** Fails to compile when a preset is missing from providerNames. */
const everyPresetIsListed: [Exclude<PresetName, ProviderName>] extends [never] ? true : never = true;
void everyPresetIsListed;
