import type { Job } from '../db';
import { ConflictError } from '../lib/errors';
import type { DeleteProjectParams, JobKind } from '../workflows/definitions';
import type { AuditScope } from './audit';
import { startCredentialCheck } from './credential-checks';
import { restartIngestion, type StartIngestionDeps } from './documents/ingestion';
import { restartReindex } from './documents/reindex';
import { getJob, reconcileJob, type Idempotency } from './jobs';
import { startLlmCheck } from './llm-checks';
import { restartScan, type StartScanDeps } from './scans';
import { startProjectDeletion } from './project-deletion';

/** What restarting any kind of job needs. */
type RestartDeps = StartScanDeps & StartIngestionDeps;

type Restart = (deps: RestartDeps, audit: AuditScope, old: Job, requestedBy: string, idempotency?: Idempotency) => Promise<{ job: Job; replayed: boolean }>;

/** How each kind starts again: through the same function that started it, with the old job's parameters. */
const restarts: Record<JobKind, Restart> = {
  deleteProject: (deps, audit, old, requestedBy, idempotency) =>
    startProjectDeletion(deps, audit, {
      tenantId: old.tenantId,
      projectId: old.projectId ?? '',
      requestedBy,
      // Stored by startProjectDeletion; what an earlier run deleted is counted afresh.
      params: { batchSize: (old.params as DeleteProjectParams).batchSize },
      retryOf: old.id,
      idempotency,
    }),
  checkProjectCredentials: (deps, audit, old, requestedBy, idempotency) =>
    startCredentialCheck(deps, audit, { tenantId: old.tenantId, projectId: old.projectId ?? '', requestedBy, retryOf: old.id, idempotency }),
  checkLlmProviders: (deps, audit, old, requestedBy, idempotency) => startLlmCheck(deps, audit, { tenantId: old.tenantId, requestedBy, retryOf: old.id, idempotency }),
  scanRepository: restartScan,
  reindexDocuments: restartReindex,
  ingestDocuments: restartIngestion,
};

const isJobKind = (kind: string): kind is JobKind => kind in restarts;

/** A failed or cancelled job starts again as a new job linked to the old one (`retryOf`). */
export async function retryJob(
  deps: RestartDeps,
  audit: AuditScope,
  request: { tenantId: string; jobId: string; requestedBy: string; idempotency?: Idempotency },
): Promise<{ job: Job; replayed: boolean }> {
  const old = await reconcileJob(deps, await getJob(request.tenantId, request.jobId));
  if (old.status !== 'failed' && old.status !== 'cancelled') {
    throw new ConflictError(`Only a failed or cancelled job can be retried; this one is ${old.status}.`);
  }
  if (!isJobKind(old.kind)) throw new ConflictError(`Jobs of kind ${old.kind} cannot be retried.`);
  return restarts[old.kind](deps, audit, old, request.requestedBy, request.idempotency);
}
