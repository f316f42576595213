import { Context } from '@temporalio/activity';
import { deleteProjectDataBatch, deleteProjectRecord, remainingProjectData, restoreProject, type ProjectDeletionDeps } from '../services/project-deletion';
import type { ProjectDataKind } from '../workflows/definitions';

export function createProjectDeletionActivities(deps: ProjectDeletionDeps) {
  return {
    async countProjectData(kind: ProjectDataKind, projectId: string, deletionJobId: string): Promise<number> {
      return remainingProjectData(deps, kind, projectId, deletionJobId);
    },
    /**
     * One batch; returns what remains. It heartbeats all the while (a batch waiting on a lock is
     * alive, a dead worker's batch is retried elsewhere), and a cancellation that arrives
     * meanwhile rolls the batch back instead of deleting behind the cleanup's back.
     */
    async deleteProjectDataBatch(kind: ProjectDataKind, projectId: string, deletionJobId: string, batchSize: number): Promise<number> {
      const activity = Context.current();
      activity.heartbeat();
      const beat = setInterval(() => activity.heartbeat(), 1000);
      try {
        return await deleteProjectDataBatch(deps, kind, projectId, deletionJobId, batchSize, activity.cancellationSignal);
      } finally {
        clearInterval(beat);
      }
    },
    async deleteProjectRecord(projectId: string, deletionJobId: string): Promise<void> {
      await deleteProjectRecord(projectId, deletionJobId);
    },
    async restoreProject(projectId: string, deletionJobId: string): Promise<void> {
      await restoreProject(projectId, deletionJobId);
    },
  };
}
