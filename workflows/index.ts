export { auditRetention } from './audit-retention';
export { checkLlmProviders } from './check-llm-providers';
export { checkProjectCredentials } from './check-project-credentials';
export { deleteProject } from './delete-project';
export { ingestDocuments } from './ingest-documents';
export { reconcileJobs } from './reconcile-jobs';
export { reindexDocuments } from './reindex-documents';
export { scanRepository } from './scan-repository';
