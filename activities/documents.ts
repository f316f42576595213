import { chunkIngestionBatch, embedIngestionBatch, fetchIngestionBatch, parseIngestionBatch, storeIngestionBatch, type IngestionLlmDeps, type IngestionStoreDeps } from '../services/documents/pipeline';
import { completeIngestion, failUnstoredItems, removeAbsentDocuments, reportIngestionProgress } from '../services/documents/outcome';
import { planIngestion } from '../services/documents/planning';
import type { IngestStage } from '../workflows/definitions';
import { asLlmActivity } from './llm-failures';
import { keepingAlive, stepContext } from './scans';

/** Activities of a document ingestion on the `auditflow` queue: planning, the batch steps but embedding, the end. */
export function createIngestionActivities(deps: IngestionStoreDeps) {
  return {
    async planIngestion(jobId: string, blobPrefix: string, batchSize: number) {
      return keepingAlive(() => planIngestion(deps, jobId, blobPrefix, batchSize, stepContext(jobId)));
    },
    async fetchIngestionBatch(jobId: string, blobPrefix: string, batch: number): Promise<void> {
      await keepingAlive(() => fetchIngestionBatch(deps, jobId, blobPrefix, batch, stepContext(jobId)));
    },
    async parseIngestionBatch(jobId: string, batch: number): Promise<void> {
      await keepingAlive(() => parseIngestionBatch(deps, jobId, batch, stepContext(jobId)));
    },
    async chunkIngestionBatch(jobId: string, batch: number): Promise<void> {
      await keepingAlive(() => chunkIngestionBatch(deps, jobId, batch, stepContext(jobId)));
    },
    async storeIngestionBatch(jobId: string, batch: number): Promise<void> {
      await keepingAlive(() => storeIngestionBatch(deps, jobId, batch, stepContext(jobId)));
    },
    async reportIngestionProgress(jobId: string, step: string, stage: IngestStage | 'removing') {
      return reportIngestionProgress(deps.sequelize, jobId, step, stage);
    },
    async removeAbsentDocuments(jobId: string): Promise<number> {
      return keepingAlive(() => removeAbsentDocuments(deps, jobId));
    },
    /** Documents left unembedded (the budget ran out) or unstored (the job was cancelled or failed) fail, and what they staged goes. */
    async failUnstoredDocuments(jobId: string, error: string): Promise<void> {
      await keepingAlive(() => failUnstoredItems(deps, jobId, error));
    },
    async completeIngestion(jobId: string, blobPrefix: string) {
      return completeIngestion(deps, jobId, blobPrefix);
    },
  };
}

/** The embedding step of an ingestion, on the LLM queue. */
export function createIngestionEmbeddingActivities(deps: IngestionLlmDeps) {
  return {
    async embedIngestionBatch(jobId: string, tenantId: string, batch: number): Promise<void> {
      const context = stepContext(jobId);
      await keepingAlive(() => asLlmActivity(() => embedIngestionBatch(deps, jobId, batch, { tenantId, jobId, activity: context.activity, mode: 'job', signal: context.signal }, context)));
    },
  };
}
