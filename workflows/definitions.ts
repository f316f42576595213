import { defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery } from '@temporalio/workflow';

/**
 * Everything client code shares with workflows: names, ids, search attributes, input types.
 * The only module of workflows/ that others import.
 */

export const TASK_QUEUE = 'auditflow';
export const LLM_TASK_QUEUE = 'auditflow-llm';

/** Search attributes on every workflow, registered on the namespace by the dev script and compose. */
export const searchAttributes = {
  tenantId: defineSearchAttributeKey('TenantId', 'KEYWORD'),
  projectId: defineSearchAttributeKey('ProjectId', 'KEYWORD'),
  jobKind: defineSearchAttributeKey('JobKind', 'KEYWORD'),
  requestedBy: defineSearchAttributeKey('RequestedBy', 'KEYWORD'),
};

export interface AuditRetentionInput {
  retentionDays: number;
}
export interface AuditRetentionResult {
  archived: number;
}

/** One schedule per deployment (named after its task queue) archives expired audit rows daily. */
export const auditRetentionScheduleId = (taskQueue: string) => `${taskQueue}-audit-retention`;

/** Every kind of job; the workflow type of a job is its kind. */
export const jobKinds = ['deleteProject', 'checkProjectCredentials', 'checkLlmProviders', 'scanRepository', 'reindexDocuments', 'ingestDocuments'] as const;
export type JobKind = (typeof jobKinds)[number];

/** One job = one workflow id: `<kind>-<jobId>`. */
export const jobWorkflowId = (kind: JobKind, jobId: string) => `${kind}-${jobId}`;

/** What every job workflow is started with; kind-specific options travel in `params`. */
export interface JobInput<P = Record<string, never>> {
  jobId: string;
  tenantId: string;
  projectId: string | null;
  params: P;
}

/** The live state a running job's workflow answers with. */
export interface JobProgress {
  stage: string;
  counters: Record<string, number>;
}
export const progressQuery = defineQuery<JobProgress>('progress');

export interface DeleteProjectParams {
  /** Rows deleted per activity call. */
  batchSize?: number;
  /** Carried across continue-as-new: what earlier runs deleted, per kind. */
  deletedSoFar?: Record<string, number>;
}

/**
 * What a credential check found for one `secret://<name>` reference of a project's settings:
 * whether it resolves, and if so which version and how old it is. Names and facts only, never
 * anything derived from the value (its length or a hash would be a clue to it).
 */
export interface SecretReferenceVerdict {
  reference: string;
  status: 'ok' | 'missing' | 'malformed';
  version?: number;
  /** Whole days since the current version was written: how long since the last rotation. */
  ageDays?: number;
}
export type SecretReferenceStatus = SecretReferenceVerdict['status'];

export interface CredentialCheckResult {
  counters: { references: number } & Record<SecretReferenceStatus, number>;
  verdicts: SecretReferenceVerdict[];
}

/** The kinds of a project's data deletion removes, in order; later features add theirs here. */
export const projectDataKinds = ['jobs', 'issues', 'scans', 'blobs', 'documents'] as const;
export type ProjectDataKind = (typeof projectDataKinds)[number];

/** The periodic sweep that reconciles job rows with their workflows, one per deployment. */
export const jobReconciliationScheduleId = (taskQueue: string) => `${taskQueue}-job-reconciliation`;

/** Jobs that call models carry the deployment's task queue of model calls. */
export interface LlmJobParams {
  llmTaskQueue: string;
}

/** Failure types of model-call activities, for workflows to tell a spent budget from a provider failure. */
export const llmFailureTypes = {
  /** The tenant's monthly budget is spent: LLM stages are skipped, not retried. */
  budgetExhausted: 'LlmBudgetExhausted',
  /** The provider (and the fallback) failed; retryable or not as the cause decides. */
  providerFailed: 'LlmProviderError',
} as const;

/** The stages of an LLM provider check, each a real call through the gateway. */
export const llmCheckStages = ['chat', 'structured', 'embeddings'] as const;
export type LlmCheckStage = (typeof llmCheckStages)[number];

export interface LlmStageVerdict {
  stage: LlmCheckStage;
  status: 'ok' | 'failed' | 'skipped';
  provider?: string;
  model?: string;
  latencyMs?: number;
  costUsd?: number;
  /** The chat provider that failed, when the fallback answered. */
  fallbackFrom?: string | null;
  /** What the stage saw (the answer's start, the embedding dimensions) or why it failed or was skipped. */
  detail: string;
}

export interface LlmCheckResult {
  counters: Record<LlmStageVerdict['status'], number>;
  verdicts: LlmStageVerdict[];
}

/** A repository scan's job: the scan row it fills, and how it divides the work. */
export interface ScanParams extends LlmJobParams {
  scanId: string;
  /** Files per analysis activity. */
  batchSize: number;
  /** Analysis activities running at once. */
  parallelism: number;
  /** Batches one workflow run analyzes before continuing as new (keeps each run's history bounded). */
  batchesPerRun: number;
  /**
   * How long a scan step (fetch and select, a batch, finalize) may go without a heartbeat before
   * Temporal retries it, presumably on another worker; 60 when absent. Tests of dead workers lower it.
   */
  heartbeatTimeoutSeconds?: number;
  /** Carried across continue-as-new: where the next run resumes, and what earlier runs counted. */
  resume?: { plan: ScanPlanSummary; nextBatch: number; counters: ScanCounters };
}

export interface ScanPlanSummary {
  filesTotal: number;
  filesToAnalyze: number;
  filesCarried: number;
  filesSkipped: number;
  batches: number;
}

export interface ScanCounters {
  filesTotal: number;
  filesAnalyzed: number;
  filesFailed: number;
  issuesFound: number;
}

/** The live state of a scan, answered by its `progress` query. */
export interface ScanProgress extends JobProgress {
  stage: 'starting' | 'fetching' | 'analyzing' | 'reviewing' | 'finalizing' | 'completed';
  filesTotal: number;
  filesAnalyzed: number;
  issuesFound: number;
}

/** A tenant's embedding model, as settings name it and as a vector collection is keyed. */
export interface EmbeddingTarget {
  provider: string;
  model: string;
}

/**
 * Where a reindex resumes: after this document, in (project, document) order; null: from the
 * start of a pass. A pass that moved anything is followed by another, for documents an
 * ingestion stored with the old model (or changed) behind the cursor.
 */
export interface ReindexCursor {
  projectId: string;
  documentId: string;
}

export interface ReindexCounters {
  /** Stored documents (and their live chunks) outside the new model's collection when the job resolved it. */
  documentsTotal: number;
  chunksTotal: number;
  documentsReindexed: number;
  chunksReindexed: number;
  /** Batches done, over every pass and run. */
  batches: number;
}

/**
 * Moving a tenant's document vectors to its new embedding model: every stored document outside
 * the new model's collection has its chunks embedded again, in batches of whole documents.
 */
export interface ReindexParams extends LlmJobParams {
  /** The embedding model the settings named when the job started: a later change supersedes this job. */
  target: EmbeddingTarget;
  /** Chunks per batch (a document is never split: a larger one makes a batch of its own). */
  batchSize: number;
  /** Batches one workflow run does before continuing as new. */
  batchesPerRun: number;
  /** As a scan's: how long a batch may go without a heartbeat before it is retried elsewhere; 60 when absent. */
  heartbeatTimeoutSeconds?: number;
  /** Carried across continue-as-new. */
  resume?: { collection: { model: string; dimensions: number }; cursor: ReindexCursor | null; movedThisPass: number; counters: ReindexCounters };
}

/** The live state of a reindex, answered by its `progress` query. */
export interface ReindexProgress extends JobProgress {
  stage: 'starting' | 'resolving' | 'reindexing' | 'completed' | 'superseded';
  documentsTotal: number;
  documentsReindexed: number;
  chunksReindexed: number;
}

/** The stages of an ingestion, in order; each runs over every batch before the next begins. */
export const ingestStages = ['fetching', 'parsing', 'chunking', 'embedding', 'storing'] as const;
export type IngestStage = (typeof ingestStages)[number];

export interface IngestCounters {
  documentsTotal: number;
  documentsStored: number;
  /** Same content as the stored version: nothing to do. */
  documentsUnchanged: number;
  documentsFailed: number;
  /** Documents of the request's origins a sync removed. */
  documentsRemoved: number;
  chunksCreated: number;
  embeddingsGenerated: number;
}

/** A document ingestion's job: how it divides the work. The documents themselves are rows of `ingestion_items`. */
export interface IngestParams extends LlmJobParams {
  /** `add`: store what the request names; `sync`: also remove the documents of its origins it no longer names. */
  mode: 'add' | 'sync';
  /** Where the job's uploads and fetched documents live in the blob store (under the project's prefix); deleted when it completes. */
  blobPrefix: string;
  /** Documents per batch. */
  batchSize: number;
  /** Batch activities running at once. */
  parallelism: number;
  /** Batch steps one workflow run does before continuing as new (keeps each run's history bounded). */
  batchesPerRun: number;
  /** As a scan's: how long a batch step may go without a heartbeat before it is retried elsewhere; 60 when absent. */
  heartbeatTimeoutSeconds?: number;
  /** Carried across continue-as-new: where the next run resumes, and what earlier runs counted. */
  resume?: { batches: number; stage: IngestStage; nextBatch: number; counters: IngestCounters };
}

/** What one batch step did, added to the job's counters. */
export type IngestBatchCounts = Partial<Omit<IngestCounters, 'documentsTotal' | 'documentsRemoved'>>;

/** The live state of an ingestion, answered by its `progress` query. */
export interface IngestProgress extends JobProgress {
  stage: 'starting' | IngestStage | 'removing' | 'completed';
  /** Batches of the plan, and how far the current stage has got. */
  batches: number;
  batchesDone: number;
}
