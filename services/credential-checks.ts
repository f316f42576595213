import { Project, type Job } from '../db';
import { NotFoundError } from '../lib/errors';
import type { SecretReferenceVerdict } from '../workflows/definitions';
import type { AuditScope } from './audit';
import { startJob, type Idempotency, type JobsDeps } from './jobs';
import { projectForNewJob } from './projects';
import { secretReferencesIn } from './secrets';
import { resolveSecretVersion, SecretReferenceError, type VaultDeps } from './vault';

/**
 * A project's credential check: a job that resolves every secret reference in the project's
 * settings, the way a job using them would, and reports for each whether it resolves, which
 * version it gets and how old that is. Values stay inside the activity that resolves them.
 */

export interface CredentialCheckRequest {
  tenantId: string;
  projectId: string;
  requestedBy: string;
  retryOf?: string;
  idempotency?: Idempotency;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export async function startCredentialCheck(deps: JobsDeps, audit: AuditScope, request: CredentialCheckRequest): Promise<{ job: Job; replayed: boolean }> {
  return startJob(deps, audit, {
    tenantId: request.tenantId,
    projectId: request.projectId,
    kind: 'checkProjectCredentials',
    title: 'Check project credentials',
    params: {},
    requestedBy: request.requestedBy,
    retryOf: request.retryOf,
    idempotency: request.idempotency,
    prepare: async (job, transaction) => {
      const project = await projectForNewJob(request.tenantId, request.projectId, transaction);
      await job.update({ title: `Check credentials of “${project.name}”` }, { transaction });
    },
  });
}

/** The references in a project's settings (names, not secrets). */
export async function projectSecretReferences(projectId: string): Promise<string[]> {
  const project = await Project.findByPk(projectId, { attributes: ['settings'] });
  if (!project) throw new NotFoundError('Project');
  return secretReferencesIn(project.settings);
}

/**
 * Resolves one reference as the job (an access-log row names the job and activity) and answers
 * with a verdict only: the value is decrypted, which proves it is intact, and dropped here.
 * Tampered ciphertext throws `TamperedCiphertextError`, as it would for any consumer.
 */
export async function checkSecretReference(
  deps: VaultDeps,
  context: { tenantId: string; jobId: string; activity: string },
  reference: string,
): Promise<SecretReferenceVerdict> {
  try {
    const { version, createdAt } = await resolveSecretVersion(deps, reference, context);
    return { reference, status: 'ok', version, ageDays: Math.floor((Date.now() - createdAt.getTime()) / DAY_MS) };
  } catch (err) {
    if (err instanceof SecretReferenceError) return { reference, status: err.reason };
    throw err;
  }
}
