import { Op, UniqueConstraintError, type Sequelize, type Transaction } from 'sequelize';
import { Project } from '../db';
import { ConflictError, NotFoundError } from '../lib/errors';
import type { AuditScope } from './audit';
import { pageInCreationOrder, type Page, type PageRequest } from './pagination';

export interface ProjectInput {
  name: string;
  description?: string;
  settings?: Record<string, unknown>;
}

/** The project's fields a client may set; anything else in a request is ignored by construction. */
function writable(input: Partial<ProjectInput>): Partial<ProjectInput> {
  const out: Partial<ProjectInput> = {};
  if (input.name !== undefined) out.name = input.name;
  if (input.description !== undefined) out.description = input.description;
  if (input.settings !== undefined) out.settings = input.settings;
  return out;
}

async function uniqueName<T>(work: () => Promise<T>, name: string | undefined): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof UniqueConstraintError) throw new ConflictError(`A project named "${name}" already exists.`);
    throw err;
  }
}

export async function createProject(sequelize: Sequelize, audit: AuditScope, tenantId: string, createdBy: string | null, input: ProjectInput): Promise<Project> {
  return uniqueName(
    () =>
      sequelize.transaction(async (transaction) => {
        const project = await Project.create({ ...writable(input), name: input.name, tenantId, createdBy }, { transaction });
        await audit.record({ action: 'project.create', resourceType: 'project', resourceId: project.id, details: { name: project.name } }, transaction);
        return project;
      }),
    input.name,
  );
}

/** A project of the tenant that is not being deleted (from the moment deletion starts, it is gone for clients). */
export async function getProject(tenantId: string, id: string): Promise<Project> {
  const project = await Project.findOne({ where: { id, tenantId, deletionJobId: null } });
  if (!project) throw new NotFoundError('Project');
  return project;
}

export async function updateProject(sequelize: Sequelize, audit: AuditScope, tenantId: string, id: string, input: Partial<ProjectInput>): Promise<Project> {
  const changes = writable(input);
  return uniqueName(
    () =>
      sequelize.transaction(async (transaction) => {
        const project = await Project.findOne({ where: { id, tenantId, deletionJobId: null }, transaction, lock: transaction.LOCK.UPDATE });
        if (!project) throw new NotFoundError('Project');
        await project.update(changes, { transaction });
        await audit.record({ action: 'project.update', resourceType: 'project', resourceId: id, details: { fields: Object.keys(changes) } }, transaction);
        return project;
      }),
    changes.name,
  );
}

/** A tenant's projects, oldest first. */
export async function listProjects(tenantId: string, request: PageRequest): Promise<Page<Project>> {
  return pageInCreationOrder(request, ({ after, order, limit }) => Project.findAll({ where: { [Op.and]: [{ tenantId, deletionJobId: null }, after] }, order, limit }));
}

/**
 * A project of the tenant that is not being deleted, share-locked until the transaction of a job
 * started on it commits: against deletion's update lock, either the deletion sees the job and
 * refuses (409, jobs still running), or the job sees the project hidden (404).
 */
export async function projectForNewJob(tenantId: string, projectId: string, transaction: Transaction): Promise<Project> {
  const project = await Project.findOne({ where: { id: projectId, tenantId, deletionJobId: null }, transaction, lock: transaction.LOCK.SHARE });
  if (!project) throw new NotFoundError('Project');
  return project;
}
