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
export const jobKinds = ['deleteProject', 'checkProjectCredentials', 'checkLlmProviders', 'scanRepository'] as const;
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
export const projectDataKinds = ['jobs', 'issues', 'scans', 'blobs'] as const;
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
