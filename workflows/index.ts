export { auditRetention } from './audit-retention';
export { deleteProject } from './delete-project';
export { reconcileJobs } from './reconcile-jobs';
