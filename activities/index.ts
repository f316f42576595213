import type { Sequelize } from 'sequelize';
import { createAuditActivities } from './audit';

export interface ActivityDeps {
  sequelize: Sequelize;
}

/** Activities of the `auditflow` queue, bound to the worker's dependencies. */
export function createActivities(deps: ActivityDeps) {
  return { ...createAuditActivities(deps.sequelize) };
}

/** Activities of the `auditflow-llm` queue (model calls); the LLM gateway adds them. */
export function createLlmActivities(_deps: ActivityDeps) {
  return {};
}

export type Activities = ReturnType<typeof createActivities>;
