import type { VectorCollection } from '../lib/vector-store';
import { countReindexWork, reindexBatch, resolveReindexTarget, type ReindexDeps } from '../services/documents/reindex';
import type { EmbeddingTarget, ReindexCursor } from '../workflows/definitions';
import { asLlmActivity } from './llm-failures';
import { keepingAlive, stepContext } from './scans';

/** The reindex's bookkeeping on the `auditflow` queue. */
export function createReindexActivities(deps: ReindexDeps) {
  return {
    async countReindexWork(tenantId: string, collection: VectorCollection): Promise<{ documents: number; chunks: number }> {
      return countReindexWork(deps.sequelize, tenantId, collection);
    },
  };
}

/** The reindex's model calls, on the LLM queue. A batch heartbeats throughout: one embedding call may wait for the rate limit, then for a slow provider. */
export function createReindexLlmActivities(deps: ReindexDeps) {
  return {
    async resolveReindexTarget(jobId: string, tenantId: string, target: EmbeddingTarget) {
      const { activity, signal } = stepContext(jobId);
      return asLlmActivity(() => resolveReindexTarget(deps, { tenantId, jobId, activity, mode: 'job', signal }, target));
    },
    async reindexBatch(jobId: string, tenantId: string, collection: VectorCollection, cursor: ReindexCursor | null, batchSize: number) {
      return keepingAlive(() => asLlmActivity(() => reindexBatch(deps, stepContext(jobId), tenantId, collection, cursor, batchSize)));
    },
  };
}
