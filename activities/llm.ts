import { Context } from '@temporalio/activity';
import { checkLlmStage } from '../services/llm-checks';
import type { LlmDeps } from '../services/llm';
import type { LlmCheckStage, LlmStageVerdict } from '../workflows/definitions';
import { asLlmActivity } from './llm-failures';

/** Activities of the `auditflow-llm` queue: every model call a workflow makes runs here. */
export function createLlmActivities(deps: LlmDeps) {
  return {
    async checkLlmStage(jobId: string, tenantId: string, stage: LlmCheckStage): Promise<LlmStageVerdict> {
      const { info, cancellationSignal } = Context.current();
      return asLlmActivity(() => checkLlmStage(deps, { tenantId, jobId, activity: info.activityType, mode: 'job', signal: cancellationSignal, cache: 'bypass' }, stage));
    },
  };
}
