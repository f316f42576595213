import { costOf, isPriced } from '../../../lib/llm/pricing';

const million = { promptTokens: 1_000_000, completionTokens: 1_000_000 };
const promptOnly = { promptTokens: 1_000_000, completionTokens: 0 };

describe('pricing', () => {
  test.each([
    // provider, model, USD for a million prompt and a million completion tokens
    ['openai', 'gpt-4o', 12.5],
    ['openai', 'gpt-4o-mini', 0.75],
    ['openai', 'gpt-4.1', 10],
    ['openai', 'gpt-4.1-mini', 2],
    ['openai', 'gpt-4.1-nano', 0.5],
    ['openai', 'o3', 10],
    ['openai', 'o4-mini', 5.5],
    ['azure', 'gpt-4o-mini', 0.75],
    ['anthropic', 'claude-opus-4-1', 90],
    ['anthropic', 'claude-opus-4-5', 30],
    ['anthropic', 'claude-sonnet-4-5', 18],
    ['anthropic', 'claude-haiku-4-5', 6],
    ['anthropic', 'claude-3-5-haiku-latest', 4.8],
    ['mistral', 'mistral-large-latest', 8],
    ['mistral', 'mistral-small-latest', 0.4],
    ['deepseek', 'deepseek-chat', 1.37],
    ['groq', 'llama-3.3-70b-versatile', 1.38],
    ['gemini', 'gemini-2.5-flash', 2.8],
    ['gemini', 'gemini-2.5-flash-lite', 0.5],
    ['together', 'meta-llama/Llama-3.3-70B-Instruct-Turbo', 1.76],
  ])('%s %s: $%d per million prompt + million completion tokens', (provider, model, dollars) => {
    expect(costOf(provider, model, million)).toBeCloseTo(dollars, 6);
    expect(isPriced(provider, model)).toBe(true);
  });

  test('embedding models are priced by their input tokens', () => {
    expect(costOf('openai', 'text-embedding-3-small', promptOnly)).toBeCloseTo(0.02, 6);
    expect(costOf('openai', 'text-embedding-3-large', promptOnly)).toBeCloseTo(0.13, 6);
  });

  test('a dated or tagged name takes its model’s price; a longer listed name wins over its prefix', () => {
    expect(costOf('openai', 'gpt-4o-2024-08-06', million)).toBe(costOf('openai', 'gpt-4o', million));
    expect(costOf('openai', 'gpt-4o-mini-2024-07-18', million)).toBe(costOf('openai', 'gpt-4o-mini', million));
    expect(costOf('anthropic', 'claude-sonnet-4-5-20250929', million)).toBe(costOf('anthropic', 'claude-sonnet-4', million));
    expect(costOf('gemini', 'models/gemini-2.5-pro', million)).toBe(costOf('gemini', 'gemini-2.5-pro', million));
  });

  test('OpenRouter models cost what their vendor charges', () => {
    expect(costOf('openrouter', 'openai/gpt-4o-mini', million)).toBe(costOf('openai', 'gpt-4o-mini', million));
    expect(costOf('openrouter', 'anthropic/claude-3.5-sonnet', million)).toBe(costOf('anthropic', 'claude-3-5-sonnet', million));
    expect(isPriced('openrouter', 'google/gemini-2.5-flash')).toBe(true);
  });

  test('a small call costs its share', () => {
    expect(costOf('openai', 'gpt-4o-mini', { promptTokens: 1000, completionTokens: 500 })).toBeCloseTo(0.00045, 10);
  });

  test.each(['builtin', 'ollama', 'vllm', 'lmstudio'])('%s runs locally and costs nothing, whatever the model', (provider) => {
    expect(costOf(provider, 'any-model-at-all', million)).toBe(0);
    expect(isPriced(provider, 'any-model-at-all')).toBe(true);
  });

  test.each([
    ['openai', 'gpt-5.4'], // not gpt-5: a different model whose price we do not know
    ['openai', 'my-azure-style-name'],
    ['azure', 'our-gpt-deployment'],
    ['anthropic', 'claude-sonnet-5-5'],
    ['mistral', 'mistral-next'],
    ['openrouter', 'some-lab/new-model'],
    ['gemini', 'gemini-9-ultra'],
  ])('an unknown model of a paid provider (%s %s) is never free: a conservative estimate, flagged as one', (provider, model) => {
    expect(costOf(provider, model, million)).toBeGreaterThan(0);
    expect(isPriced(provider, model)).toBe(false);
  });

  test('the estimate for an unknown model is at least the price of the provider’s listed flagship', () => {
    expect(costOf('openai', 'gpt-new', million)).toBeGreaterThanOrEqual(costOf('openai', 'gpt-4o', million));
    expect(costOf('anthropic', 'claude-new', million)).toBeGreaterThanOrEqual(costOf('anthropic', 'claude-opus-4-1', million));
    expect(costOf('someone-new', 'model', million)).toBeGreaterThan(0);
  });
});
