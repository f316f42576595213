import { Op, type Transaction } from 'sequelize';
import { Document, Issue, Job, Project, Scan, terminalJobStatuses } from '../db';
import type { BlobStore } from '../lib/blob-store';
import type { VectorStore } from '../lib/vector-store';
import { ConflictError, NotFoundError } from '../lib/errors';
import type { DeleteProjectParams, ProjectDataKind } from '../workflows/definitions';
import type { AuditScope } from './audit';
import { removeDocuments } from './documents/removal';
import { startJob, type Idempotency, type JobsDeps } from './jobs';

/**
 * Deleting a project is a durable job: the project disappears for clients at once, its data goes
 * in batches, and the project row last. Each kind of project data has its batch deleter here.
 */

export interface ProjectDeletionRequest {
  tenantId: string;
  projectId: string;
  requestedBy: string;
  params?: DeleteProjectParams;
  retryOf?: string;
  idempotency?: Idempotency;
}

export async function startProjectDeletion(deps: JobsDeps, audit: AuditScope, request: ProjectDeletionRequest): Promise<{ job: Job; replayed: boolean }> {
  return startJob(deps, audit, {
    tenantId: request.tenantId,
    projectId: request.projectId,
    kind: 'deleteProject',
    title: 'Delete project',
    params: { ...request.params },
    requestedBy: request.requestedBy,
    retryOf: request.retryOf,
    idempotency: request.idempotency,
    prepare: async (job, transaction) => {
      const project = await Project.findOne({ where: { id: request.projectId, tenantId: request.tenantId }, transaction, lock: transaction.LOCK.UPDATE });
      // Hidden already, unless by the failed deletion this one retries.
      if (!project || (project.deletionJobId !== null && project.deletionJobId !== request.retryOf)) throw new NotFoundError('Project');
      const running = await Job.count({ where: { projectId: project.id, status: { [Op.in]: ['queued', 'running'] }, id: { [Op.ne]: job.id } }, transaction });
      if (running > 0) throw new ConflictError(`The project has ${running} job(s) still running: cancel them or let them finish first.`);
      await job.update({ title: `Delete project “${project.name}”` }, { transaction });
      await project.update({ deletionJobId: job.id }, { transaction });
    },
  });
}

/**
 * The deletion job and the earlier attempts it retries (`retryOf`, transitively): the deletion's
 * own history, kept. Deleting an attempt would also cut its retry's `retryOf` link (SET NULL).
 */
async function deletionAttempts(deletionJobId: string, transaction?: Transaction): Promise<string[]> {
  const ids: string[] = [];
  for (let id: string | null = deletionJobId; id && !ids.includes(id); ) {
    ids.push(id);
    id = (await Job.findByPk(id, { attributes: ['retryOf'], transaction }))?.retryOf ?? null;
  }
  return ids;
}

const finishedJobsOf = async (projectId: string, deletionJobId: string, transaction?: Transaction) => ({
  projectId,
  id: { [Op.notIn]: await deletionAttempts(deletionJobId, transaction) },
  status: { [Op.in]: terminalJobStatuses },
});

type BatchDeleter = (projectId: string, deletionJobId: string, batchSize: number, transaction: Transaction) => Promise<number>;
type Counter = (projectId: string, deletionJobId: string) => Promise<number>;

/** What deleting a project's data needs: its rows, the blob store holding its uploads, the vector store holding its documents' vectors. */
export type ProjectDeletionDeps = Pick<JobsDeps, 'sequelize'> & { blobs: BlobStore; vectors: VectorStore };

/** Every blob of a project lives under this prefix (uploads to scan, reports). */
export const projectBlobPrefix = (projectId: string) => `projects/${projectId}/`;

/** A batch of the project's rows of one table, oldest first. */
async function deleteRows(table: 'issues' | 'scans', deps: ProjectDeletionDeps, projectId: string, batchSize: number, transaction: Transaction): Promise<number> {
  const [, meta] = await deps.sequelize.query(
    `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE project_id = :projectId ORDER BY created_at, id LIMIT :batchSize)`,
    { replacements: { projectId, batchSize }, transaction },
  );
  return (meta as { rowCount?: number }).rowCount ?? 0;
}

/** For each kind of project data: how much is left, and how to delete one batch of it. */
const projectData = (deps: ProjectDeletionDeps): Record<ProjectDataKind, { remaining: Counter; deleteBatch: BatchDeleter }> => ({
  // The project's finished jobs (and, by cascade, their events), never the deletion itself nor the attempts it retries.
  jobs: {
    remaining: async (projectId, deletionJobId) => Job.count({ where: await finishedJobsOf(projectId, deletionJobId) }),
    async deleteBatch(projectId, deletionJobId, batchSize, transaction) {
      const batch = await Job.findAll({ attributes: ['id'], where: await finishedJobsOf(projectId, deletionJobId, transaction), order: [['createdAt', 'ASC']], limit: batchSize, transaction });
      return Job.destroy({ where: { id: batch.map((j) => j.id) }, transaction });
    },
  },
  issues: {
    remaining: (projectId) => Issue.count({ where: { projectId } }),
    deleteBatch: (projectId, _deletionJobId, batchSize, transaction) => deleteRows('issues', deps, projectId, batchSize, transaction),
  },
  // A scan's files go with it (cascade).
  scans: {
    remaining: (projectId) => Scan.count({ where: { projectId } }),
    deleteBatch: (projectId, _deletionJobId, batchSize, transaction) => deleteRows('scans', deps, projectId, batchSize, transaction),
  },
  // Blobs are not in the database: a batch deletes up to batchSize of them, outside the transaction (deleting a blob twice is harmless).
  blobs: {
    remaining: (projectId) => deps.blobs.countPrefix(projectBlobPrefix(projectId)),
    deleteBatch: (projectId, _deletionJobId, batchSize) => deps.blobs.deletePrefix(projectBlobPrefix(projectId), batchSize),
  },
  // Each document's vectors, then its row (its chunks by cascade), outside the transaction as blobs are:
  // a cancelled batch leaves no document without its vectors. The last batch also clears any vector
  // of the project a crashed ingestion left in a collection no document names.
  documents: {
    remaining: (projectId) => Document.count({ where: { projectId } }),
    async deleteBatch(projectId, _deletionJobId, batchSize, transaction) {
      const batch = await Document.findAll({ attributes: ['id', 'tenantId'], where: { projectId }, order: [['createdAt', 'ASC'], ['id', 'ASC']], limit: batchSize, transaction });
      const tenantId = batch[0]?.tenantId;
      const deleted = tenantId === undefined ? 0 : await removeDocuments(deps, tenantId, batch.map((d) => d.id));
      if (tenantId !== undefined && (await Document.count({ where: { projectId } })) === 0) {
        for (const collection of await deps.vectors.listCollections()) await deps.vectors.deleteByProject(collection, { tenantId, projectId });
      }
      return deleted;
    },
  },
});

export function remainingProjectData(deps: ProjectDeletionDeps, kind: ProjectDataKind, projectId: string, deletionJobId: string): Promise<number> {
  return projectData(deps)[kind].remaining(projectId, deletionJobId);
}

/**
 * Deletes one batch; idempotent (a retry deletes what is left). Returns how much remains. When
 * `cancelled` fires before the batch commits, the batch is rolled back.
 */
export async function deleteProjectDataBatch(
  deps: ProjectDeletionDeps,
  kind: ProjectDataKind,
  projectId: string,
  deletionJobId: string,
  batchSize: number,
  cancelled?: AbortSignal,
): Promise<number> {
  await deps.sequelize.transaction(async (transaction) => {
    await projectData(deps)[kind].deleteBatch(projectId, deletionJobId, batchSize, transaction);
    cancelled?.throwIfAborted();
  });
  return remainingProjectData(deps, kind, projectId, deletionJobId);
}

/** The last step: the project row itself (idempotent). */
export async function deleteProjectRecord(projectId: string, deletionJobId: string): Promise<void> {
  await Project.destroy({ where: { id: projectId, deletionJobId } });
}

/** After a cancelled deletion the project, with what is left of it, is visible again. */
export async function restoreProject(projectId: string, deletionJobId: string): Promise<void> {
  await Project.update({ deletionJobId: null }, { where: { id: projectId, deletionJobId } });
}
