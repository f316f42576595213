import { continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities, LlmActivities } from '../activities';
import { progressQuery, type JobInput, type ReindexCounters, type ReindexCursor, type ReindexParams, type ReindexProgress } from './definitions';
import { finishAfterFailure } from './failures';

/** Failures no retry can mend: a vault reference gone, a vector the store refuses. */
const nonRetryableErrorTypes = ['NotFoundError', 'SecretReferenceError', 'VectorStoreInputError', 'VectorDimensionError'];

const { markJobRunning, reportJobProgress, finishJob, countReindexWork } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumInterval: '30 seconds' },
});

/** How long a batch may go without a heartbeat before it is retried elsewhere (its worker presumed dead). */
const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 60;

/** The model calls of a reindex, on the LLM queue: a batch embeds, writes vectors and switches documents in one activity, so no vector passes through the history. */
function reindexActivities(params: ReindexParams) {
  return proxyActivities<LlmActivities>({
    taskQueue: params.llmTaskQueue,
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout: (params.heartbeatTimeoutSeconds ?? DEFAULT_HEARTBEAT_TIMEOUT_SECONDS) * 1000,
    retry: { maximumAttempts: 5, maximumInterval: '1 minute', nonRetryableErrorTypes },
  });
}

const PROGRESS_REPORTS_PER_JOB = 50;

/**
 * Moves a tenant's document vectors into its new embedding model's collection: resolves the
 * collection (the model's dimensions), then batch after batch of whole documents in (project,
 * document) order; a pass that moved anything is followed by another from the start, for
 * documents an ingestion stored with the old model behind the cursor. A newer model change
 * supersedes the job (the reindex it started takes over). Continues as new every
 * `batchesPerRun` batches, so no run's history grows unbounded.
 */
export async function reindexDocuments(input: JobInput<ReindexParams>): Promise<ReindexCounters> {
  const { jobId, tenantId, params } = input;
  const { resolveReindexTarget, reindexBatch } = reindexActivities(params);
  const counters: ReindexCounters = params.resume?.counters ?? { documentsTotal: 0, chunksTotal: 0, documentsReindexed: 0, chunksReindexed: 0, batches: 0 };
  const progress: ReindexProgress = { stage: 'starting', documentsTotal: 0, documentsReindexed: 0, chunksReindexed: 0, counters: {} };
  const refreshProgress = () =>
    Object.assign(progress, { documentsTotal: counters.documentsTotal, documentsReindexed: counters.documentsReindexed, chunksReindexed: counters.chunksReindexed, counters: { ...counters } });
  refreshProgress();
  setHandler(progressQuery, () => progress);
  const report = async (step: string) => {
    refreshProgress();
    await reportJobProgress(jobId, step, { stage: progress.stage, counters: { ...counters } });
  };
  const finishSuperseded = async (reason: string) => {
    progress.stage = 'superseded';
    await finishJob(jobId, { status: 'completed', counters: { ...counters }, data: { superseded: reason } });
    return counters;
  };

  try {
    let collection: { model: string; dimensions: number };
    let cursor: ReindexCursor | null;
    let movedThisPass: number;
    if (params.resume) {
      ({ collection, cursor, movedThisPass } = params.resume);
    } else {
      await markJobRunning(jobId);
      progress.stage = 'resolving';
      const resolved = await resolveReindexTarget(jobId, tenantId, params.target);
      if ('superseded' in resolved) return await finishSuperseded(resolved.superseded);
      collection = resolved.collection;
      const work = await countReindexWork(tenantId, collection);
      counters.documentsTotal = work.documents;
      counters.chunksTotal = work.chunks;
      cursor = null;
      movedThisPass = 0;
      await report('resolved');
    }

    progress.stage = 'reindexing';
    // Progress lands on the job about fifty times a job, however large.
    const reportEvery = Math.max(1, Math.ceil(counters.chunksTotal / params.batchSize / PROGRESS_REPORTS_PER_JOB));
    for (let batchesThisRun = 0; ; batchesThisRun++) {
      if (batchesThisRun >= params.batchesPerRun || workflowInfo().continueAsNewSuggested) {
        await continueAsNew<typeof reindexDocuments>({ ...input, params: { ...params, resume: { collection, cursor, movedThisPass, counters } } });
      }
      const result = await reindexBatch(jobId, tenantId, collection, cursor, params.batchSize);
      if (result.superseded !== undefined) return await finishSuperseded(result.superseded);
      counters.documentsReindexed += result.documentsReindexed;
      counters.chunksReindexed += result.chunksReindexed;
      movedThisPass += result.documentsReindexed;
      if (result.next !== null) {
        counters.batches += 1;
        cursor = result.next;
        if (counters.batches % reportEvery === 0) await report(`batch:${counters.batches}`);
        else refreshProgress();
      } else if (movedThisPass > 0) {
        cursor = null;
        movedThisPass = 0;
      } else {
        break;
      }
    }

    progress.stage = 'completed';
    await finishJob(jobId, { status: 'completed', counters: { ...counters }, data: { collection } });
    return counters;
  } catch (err) {
    return finishAfterFailure(err, { jobId, counters: () => ({ ...counters }), finishJob });
  }
}
