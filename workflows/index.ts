export { auditRetention } from './audit-retention';
export { checkLlmProviders } from './check-llm-providers';
export { checkProjectCredentials } from './check-project-credentials';
export { deleteProject } from './delete-project';
export { reconcileJobs } from './reconcile-jobs';
export { scanRepository } from './scan-repository';
