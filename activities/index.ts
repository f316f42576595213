import type { JobsDeps } from '../services/jobs';
import type { VaultDeps } from '../services/vault';
import { createAuditActivities } from './audit';
import { createCredentialCheckActivities } from './credential-checks';
import { createJobActivities } from './jobs';
import { createProjectDeletionActivities } from './project-deletion';

/** What activities are bound to: the database, a Temporal client (for reconciliation), the task queue, the vault's keyring. */
export type ActivityDeps = JobsDeps & VaultDeps;

/** Activities of the `auditflow` queue, bound to the worker's dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createAuditActivities(deps.sequelize),
    ...createJobActivities(deps),
    ...createProjectDeletionActivities(deps),
    ...createCredentialCheckActivities(deps),
  };
}

/** Activities of the `auditflow-llm` queue (model calls); the LLM gateway adds them. */
export function createLlmActivities(_deps: ActivityDeps) {
  return {};
}

export type Activities = ReturnType<typeof createActivities>;
