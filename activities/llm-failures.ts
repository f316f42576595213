import { ApplicationFailure } from '@temporalio/common';
import { LlmProviderError } from '../lib/llm';
import { LlmBudgetExhaustedError } from '../services/llm';
import type { llmFailureTypes } from '../workflows/definitions';

// activities/ may import only types of workflows/definitions: the names are spelled here and type-checked against it.
const failureTypes: typeof llmFailureTypes = { budgetExhausted: 'LlmBudgetExhausted', providerFailed: 'LlmProviderError' };

/**
 * Runs a model call inside an activity and turns the gateway's errors into failures Temporal
 * acts on: a retryable provider failure is retried after the provider's Retry-After; a 4xx,
 * an unsupported call or invalid output is not retried; a spent budget is not retried either,
 * and workflows skip their LLM stage on it.
 */
export async function asLlmActivity<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof LlmBudgetExhaustedError) {
      throw ApplicationFailure.create({ type: failureTypes.budgetExhausted, message: err.message, nonRetryable: true });
    }
    if (err instanceof LlmProviderError) {
      throw ApplicationFailure.create({
        type: failureTypes.providerFailed,
        message: err.message,
        nonRetryable: !err.retryable,
        nextRetryDelay: err.details.retryAfterMs,
        details: [{ provider: err.provider, kind: err.kind, status: err.details.status ?? null }],
      });
    }
    throw err;
  }
}
