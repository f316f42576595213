import type { JobsDeps } from '../services/jobs';
import { createAuditActivities } from './audit';
import { createJobActivities } from './jobs';
import { createProjectDeletionActivities } from './project-deletion';

/** What activities are bound to: the database, a Temporal client (for reconciliation), the task queue. */
export type ActivityDeps = JobsDeps;

/** Activities of the `auditflow` queue, bound to the worker's dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditActivities(deps.sequelize),
    ...createJobActivities(deps),
    ...createProjectDeletionActivities(deps),
  };
}

/** Activities of the `auditflow-llm` queue (model calls); the LLM gateway adds them. */
export function createLlmActivities(_deps: ActivityDeps) {
  return {};
}

export type Activities = ReturnType<typeof createActivities>;
