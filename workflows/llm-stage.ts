import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import { llmFailureTypes } from './definitions';

export type LlmStageOutcome<T> = { status: 'done'; value: T } | { status: 'skipped'; reason: string };

/**
 * Runs a stage that calls models. Once the tenant's monthly budget is spent the stage is
 * skipped, with the gateway's explanation as the reason, instead of failing the whole job.
 */
export async function runLlmStage<T>(stage: () => Promise<T>): Promise<LlmStageOutcome<T>> {
  try {
    return { status: 'done', value: await stage() };
  } catch (err) {
    const cause = err instanceof ActivityFailure ? err.cause : undefined;
    if (cause instanceof ApplicationFailure && cause.type === llmFailureTypes.budgetExhausted) return { status: 'skipped', reason: cause.message };
    throw err;
  }
}

/** The message of a model call's provider failure (after its retries), or null for any other error. */
export function llmProviderFailure(err: unknown): string | null {
  const cause = err instanceof ActivityFailure ? err.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === llmFailureTypes.providerFailed ? cause.message : null;
}
