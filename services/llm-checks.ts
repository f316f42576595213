import { z } from 'zod';
import type { Job } from '../db';
import type { LlmCheckStage, LlmJobParams, LlmStageVerdict } from '../workflows/definitions';
import type { AuditScope } from './audit';
import { startJob, type Idempotency, type JobsDeps } from './jobs';
import { assertLlmBudgetLeft, chatCompletion, effectiveLlmSettings, embedTexts, structuredCompletion, type LlmAnswer, type LlmCall, type LlmDeps } from './llm';

/**
 * The LLM provider check: a job that makes one real call of each kind (chat, structured output,
 * embeddings) through the gateway, from the LLM task queue, and reports for each what answered,
 * how fast and at what cost. Operators run it after changing settings or keys.
 */

export interface LlmCheckRequest {
  tenantId: string;
  requestedBy: string;
  retryOf?: string;
  idempotency?: Idempotency;
}

/** What starting a job that calls models needs: the jobs' and the gateway's dependencies, and the LLM task queue. */
export type LlmJobsDeps = JobsDeps & LlmDeps & { config: { TEMPORAL_LLM_TASK_QUEUE: string } };

/** Starts the check; refused (402) when the tenant's budget is already spent, since every stage spends. */
export async function startLlmCheck(deps: LlmJobsDeps, audit: AuditScope, request: LlmCheckRequest): Promise<{ job: Job; replayed: boolean }> {
  const settings = await effectiveLlmSettings(deps.config, request.tenantId);
  await assertLlmBudgetLeft(deps.sequelize, request.tenantId, settings.monthlyBudgetUsd);
  const params: LlmJobParams = { llmTaskQueue: deps.config.TEMPORAL_LLM_TASK_QUEUE };
  return startJob(deps, audit, {
    tenantId: request.tenantId,
    projectId: null,
    kind: 'checkLlmProviders',
    title: `Check LLM providers (${settings.chat.provider} / ${settings.embedding.provider})`,
    params: { ...params },
    requestedBy: request.requestedBy,
    retryOf: request.retryOf,
    idempotency: request.idempotency,
  });
}

const CHECK_CONTEXT =
  'AuditFlow runs durable audit jobs on Temporal. This request checks that the configured model provider answers. ' +
  'The provider answered this connectivity check, so jobs can use it.';

const checkAnswerSchema = z.object({ answered: z.boolean(), summary: z.string().max(500) });

const verdictOf = (stage: LlmCheckStage, answer: Pick<LlmAnswer, 'provider' | 'model' | 'latencyMs' | 'costUsd' | 'fallbackFrom'>, detail: string): LlmStageVerdict => ({
  stage,
  status: 'ok',
  provider: answer.provider,
  model: answer.model,
  latencyMs: answer.latencyMs,
  costUsd: answer.costUsd,
  fallbackFrom: answer.fallbackFrom,
  detail,
});

/** One stage of the check, made as any job's model call is; the gateway's errors propagate (the activity maps them). */
export async function checkLlmStage(deps: LlmDeps, call: LlmCall, stage: LlmCheckStage): Promise<LlmStageVerdict> {
  const messages = [
    { role: 'system' as const, content: `Context: ${CHECK_CONTEXT}` },
    { role: 'user' as const, content: 'Did the provider answer this connectivity check?' },
  ];
  if (stage === 'chat') {
    const answer = await chatCompletion(deps, call, { messages, maxTokens: 60, temperature: 0 });
    return verdictOf(stage, answer, answer.text.slice(0, 200));
  }
  if (stage === 'structured') {
    const settings = await effectiveLlmSettings(deps.config, call.tenantId);
    if (settings.chat.provider === 'builtin' && !settings.fallback) {
      return { stage, status: 'skipped', provider: 'builtin', detail: 'The built-in provider produces no structured output; configure a real chat model to use it.' };
    }
    const { value, answer, repaired } = await structuredCompletion(deps, call, { name: 'connectivity_check', schema: checkAnswerSchema, messages, maxTokens: 120, temperature: 0 });
    return verdictOf(stage, answer, `${value.answered ? 'answered' : 'did not answer'}${repaired ? ' (after one repair)' : ''}: ${value.summary.slice(0, 160)}`);
  }
  const started = Date.now();
  const embeddings = await embedTexts(deps, call, ['AuditFlow connectivity check', CHECK_CONTEXT]);
  return verdictOf(stage, { ...embeddings, latencyMs: Date.now() - started, fallbackFrom: null }, `${embeddings.vectors.length} vectors of ${embeddings.dimensions} dimensions`);
}
