import { heartbeat } from '@temporalio/activity';
import { deleteProjectDataBatch, deleteProjectRecord, remainingProjectData, restoreProject } from '../services/project-deletion';
import type { JobsDeps } from '../services/jobs';
import type { ProjectDataKind } from '../workflows/definitions';

export function createProjectDeletionActivities(deps: JobsDeps) {
  return {
    async countProjectData(kind: ProjectDataKind, projectId: string, deletionJobId: string): Promise<number> {
      return remainingProjectData(kind, projectId, deletionJobId);
    },
    /** One batch; returns what remains. Heartbeats, so a cancellation or a dead worker is noticed. */
    async deleteProjectDataBatch(kind: ProjectDataKind, projectId: string, deletionJobId: string, batchSize: number): Promise<number> {
      heartbeat();
      return deleteProjectDataBatch(deps, kind, projectId, deletionJobId, batchSize);
    },
    async deleteProjectRecord(projectId: string, deletionJobId: string): Promise<void> {
      await deleteProjectRecord(projectId, deletionJobId);
    },
    async restoreProject(projectId: string, deletionJobId: string): Promise<void> {
      await restoreProject(projectId, deletionJobId);
    },
  };
}
