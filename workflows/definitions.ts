import { defineSearchAttributeKey } from '@temporalio/common';

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
