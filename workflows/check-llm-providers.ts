import { proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities, LlmActivities } from '../activities';
import { llmCheckStages, progressQuery, type JobInput, type JobProgress, type LlmCheckResult, type LlmJobParams, type LlmStageVerdict } from './definitions';
import { finishAfterFailure } from './failures';
import { llmProviderFailure, runLlmStage } from './llm-stage';

const { markJobRunning, reportJobProgress, recordStageSkipped, finishJob } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumInterval: '30 seconds' },
});

/**
 * Checks the tenant's model providers end to end, the way jobs use them: a chat completion,
 * structured output and embeddings, each a real call through the gateway on the LLM task
 * queue (metered, rate-limited, budgeted, with the fallback). A provider that fails is a
 * finding; a spent budget skips the remaining stages with the reason.
 */
export async function checkLlmProviders(input: JobInput<LlmJobParams>): Promise<LlmCheckResult> {
  const { jobId, tenantId } = input;
  const { checkLlmStage } = proxyActivities<LlmActivities>({
    taskQueue: input.params.llmTaskQueue,
    startToCloseTimeout: '3 minutes',
    // Retryable provider failures (429, 5xx, timeouts) are retried, honouring the provider's Retry-After.
    retry: { maximumAttempts: 3, initialInterval: '1 second', maximumInterval: '30 seconds' },
  });
  const counters: LlmCheckResult['counters'] = { ok: 0, failed: 0, skipped: 0 };
  const progress: JobProgress = { stage: 'starting', counters };
  setHandler(progressQuery, () => progress);

  try {
    await markJobRunning(jobId);
    const verdicts: LlmStageVerdict[] = [];
    for (const stage of llmCheckStages) {
      progress.stage = stage;
      let verdict: LlmStageVerdict;
      try {
        const outcome = await runLlmStage(() => checkLlmStage(jobId, tenantId, stage));
        verdict = outcome.status === 'done' ? outcome.value : { stage, status: 'skipped', detail: outcome.reason };
      } catch (err) {
        const failure = llmProviderFailure(err);
        if (failure === null) throw err;
        verdict = { stage, status: 'failed', detail: failure };
      }
      verdicts.push(verdict);
      counters[verdict.status]++;
      if (verdict.status === 'skipped') await recordStageSkipped(jobId, stage, verdict.detail);
      await reportJobProgress(jobId, `stage:${stage}`, { stage: `${stage}: ${verdict.status}`, counters });
    }
    progress.stage = 'completed';
    await finishJob(jobId, { status: 'completed', counters, data: { verdicts } });
    return { counters, verdicts };
  } catch (err) {
    return finishAfterFailure(err, { jobId, counters: () => counters, finishJob });
  }
}
