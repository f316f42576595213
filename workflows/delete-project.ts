import { ApplicationFailure, continueAsNew, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { progressQuery, projectDataKinds, type DeleteProjectParams, type JobInput, type JobProgress, type ProjectDataKind } from './definitions';
import { finishAfterFailure } from './failures';

const { markJobRunning, reportJobProgress, finishJob, countProjectData, deleteProjectRecord, restoreProject } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumInterval: '30 seconds' },
});
// Batches heartbeat: a dead worker's batch is retried elsewhere within seconds, and cancellation reaches it.
const { deleteProjectDataBatch } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '5 seconds',
  retry: { maximumInterval: '30 seconds' },
});

const DEFAULT_BATCH_SIZE = 500;

/**
 * The kinds this run deletes. Histories were recorded before some kinds existed (jobs alone; then
 * up to blobs, before documents): replaying those must not expect the kinds added since.
 */
function kindsToDelete(): readonly ProjectDataKind[] {
  if (!patched('delete-scan-data')) return projectDataKinds.slice(0, 1);
  if (!patched('delete-documents')) return projectDataKinds.filter((kind) => kind !== 'documents');
  return projectDataKinds;
}

/**
 * Deletes a project: its data kind by kind, in batches, then the project row. Cancelled, it puts
 * the project back in view with whatever is left; a long deletion continues as new to keep its
 * history short.
 */
export async function deleteProject(input: JobInput<DeleteProjectParams>): Promise<Record<string, number>> {
  const { jobId, projectId, params } = input;
  const progress: JobProgress = { stage: 'starting', counters: { ...params.deletedSoFar } };
  setHandler(progressQuery, () => progress);
  if (!projectId) throw ApplicationFailure.nonRetryable('deleteProject needs a project id.');
  const batchSize = params.batchSize ?? DEFAULT_BATCH_SIZE;

  try {
    await markJobRunning(jobId);
    const kinds = kindsToDelete();
    for (const kind of kinds) {
      progress.stage = `deleting ${kind}`;
      const deletedBefore = progress.counters[kind] ?? 0;
      const total = await countProjectData(kind, projectId, jobId);
      let remaining = total;
      while (remaining > 0) {
        if (workflowInfo().continueAsNewSuggested) {
          await continueAsNew<typeof deleteProject>({ ...input, params: { ...params, deletedSoFar: progress.counters } });
        }
        remaining = await deleteProjectDataBatch(kind, projectId, jobId, batchSize);
        progress.counters[kind] = deletedBefore + total - remaining;
        await reportJobProgress(jobId, `${kind}:${progress.counters[kind]}`, progress);
      }
    }
    progress.stage = 'deleting project';
    await deleteProjectRecord(projectId, jobId);
    progress.stage = 'completed';
    await finishJob(jobId, { status: 'completed', counters: progress.counters });
    return progress.counters;
  } catch (err) {
    return finishAfterFailure(err, {
      jobId,
      counters: () => progress.counters,
      finishJob,
      // Cancelled, the project comes back in view with whatever is left.
      beforeFinish: async (status) => {
        if (status === 'cancelled') await restoreProject(projectId, jobId);
      },
    });
  }
}
