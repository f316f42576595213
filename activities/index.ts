import type { VectorStore } from '../lib/vector-store';
import type { JobsDeps } from '../services/jobs';
import type { LlmDeps } from '../services/llm';
import type { IngestionDeps } from '../services/documents/pipeline';
import type { LlmReviewDeps, ScanDeps } from '../services/scans';
import type { VaultDeps } from '../services/vault';
import { createAuditActivities } from './audit';
import { createCredentialCheckActivities } from './credential-checks';
import { createIngestionActivities, createIngestionEmbeddingActivities } from './documents';
import { createReindexActivities, createReindexLlmActivities } from './documents-reindex';
import { createJobActivities } from './jobs';
import { createLlmActivities } from './llm';
import { createProjectDeletionActivities } from './project-deletion';
import { createScanActivities, createScanReviewActivities } from './scans';

/** What activities are bound to: the database, a Temporal client (for reconciliation), the configuration (task queues, vault keyring, LLM settings). */
export type ActivityDeps = JobsDeps & VaultDeps & LlmDeps & ScanDeps & LlmReviewDeps & IngestionDeps & { vectors: VectorStore };

/** Activities of the `auditflow` queue, bound to the worker's dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditActivities(deps.sequelize),
    ...createJobActivities(deps),
    ...createProjectDeletionActivities(deps),
    ...createCredentialCheckActivities(deps),
    ...createScanActivities(deps),
    ...createReindexActivities(deps),
    ...createIngestionActivities(deps),
  };
}

/** Activities of the `auditflow-llm` queue: every model call a workflow makes runs there. */
export function createLlmQueueActivities(deps: ActivityDeps) {
  return { ...createLlmActivities(deps), ...createScanReviewActivities(deps), ...createReindexLlmActivities(deps), ...createIngestionEmbeddingActivities(deps) };
}

export type Activities = ReturnType<typeof createActivities>;
export type LlmActivities = ReturnType<typeof createLlmQueueActivities>;
