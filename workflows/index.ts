export { auditRetention } from './audit-retention';
export { checkProjectCredentials } from './check-project-credentials';
export { deleteProject } from './delete-project';
export { reconcileJobs } from './reconcile-jobs';
