import { Op, type Transaction } from 'sequelize';
import { Job, Project, terminalJobStatuses } from '../db';
import { ConflictError, NotFoundError } from '../lib/errors';
import type { DeleteProjectParams, ProjectDataKind } from '../workflows/definitions';
import type { AuditScope } from './audit';
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

/** For each kind of project data: how much is left, and how to delete one batch of it. */
const projectData: Record<ProjectDataKind, { remaining: Counter; deleteBatch: BatchDeleter }> = {
  // The project's finished jobs (and, by cascade, their events), never the deletion itself nor the attempts it retries.
  jobs: {
    remaining: async (projectId, deletionJobId) => Job.count({ where: await finishedJobsOf(projectId, deletionJobId) }),
    async deleteBatch(projectId, deletionJobId, batchSize, transaction) {
      const batch = await Job.findAll({ attributes: ['id'], where: await finishedJobsOf(projectId, deletionJobId, transaction), order: [['createdAt', 'ASC']], limit: batchSize, transaction });
      return Job.destroy({ where: { id: batch.map((j) => j.id) }, transaction });
    },
  },
};

export function remainingProjectData(kind: ProjectDataKind, projectId: string, deletionJobId: string): Promise<number> {
  return projectData[kind].remaining(projectId, deletionJobId);
}

/**
 * Deletes one batch; idempotent (a retry deletes what is left). Returns how much remains. When
 * `cancelled` fires before the batch commits, the batch is rolled back.
 */
export async function deleteProjectDataBatch(
  deps: Pick<JobsDeps, 'sequelize'>,
  kind: ProjectDataKind,
  projectId: string,
  deletionJobId: string,
  batchSize: number,
  cancelled?: AbortSignal,
): Promise<number> {
  await deps.sequelize.transaction(async (transaction) => {
    await projectData[kind].deleteBatch(projectId, deletionJobId, batchSize, transaction);
    cancelled?.throwIfAborted();
  });
  return remainingProjectData(kind, projectId, deletionJobId);
}

/** The last step: the project row itself (idempotent). */
export async function deleteProjectRecord(projectId: string, deletionJobId: string): Promise<void> {
  await Project.destroy({ where: { id: projectId, deletionJobId } });
}

/** After a cancelled deletion the project, with what is left of it, is visible again. */
export async function restoreProject(projectId: string, deletionJobId: string): Promise<void> {
  await Project.update({ deletionJobId: null }, { where: { id: projectId, deletionJobId } });
}
