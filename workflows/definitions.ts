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
export const jobKinds = ['deleteProject', 'checkProjectCredentials'] as const;
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
export const projectDataKinds = ['jobs'] as const;
export type ProjectDataKind = (typeof projectDataKinds)[number];

/** The periodic sweep that reconciles job rows with their workflows, one per deployment. */
export const jobReconciliationScheduleId = (taskQueue: string) => `${taskQueue}-job-reconciliation`;
