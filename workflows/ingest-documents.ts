import { continueAsNew, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities, LlmActivities } from '../activities';
import { ingestStages, progressQuery, type IngestCounters, type IngestParams, type IngestProgress, type IngestStage, type JobInput } from './definitions';
import { finishAfterFailure } from './failures';
import { runLlmStage } from './llm-stage';

const { markJobRunning, reportIngestionProgress, recordStageSkipped, failUnstoredDocuments, removeAbsentDocuments, completeIngestion, finishJob } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumInterval: '30 seconds' },
});

/** How long a step may go without a heartbeat before it is retried elsewhere (its worker presumed dead). */
const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 60;
/** Progress reports per stage, however many batches. */
const PROGRESS_REPORTS_PER_STAGE = 10;

/** The long steps: they heartbeat, so a dead worker's step is retried within the job's heartbeat timeout. */
function stepActivities(params: IngestParams) {
  const heartbeatTimeout = (params.heartbeatTimeoutSeconds ?? DEFAULT_HEARTBEAT_TIMEOUT_SECONDS) * 1000;
  // Named one by one: the proxy answers any name, but has no properties to spread.
  const { planIngestion, fetchIngestionBatch, parseIngestionBatch, chunkIngestionBatch, storeIngestionBatch } = proxyActivities<Activities>({
    startToCloseTimeout: '1 hour',
    heartbeatTimeout,
    retry: { maximumInterval: '1 minute' },
  });
  // Model calls go to the LLM task queue; a spent budget (or a rejected call) is not retried.
  const { embedIngestionBatch } = proxyActivities<LlmActivities>({
    taskQueue: params.llmTaskQueue,
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout,
    retry: { maximumAttempts: 5, maximumInterval: '1 minute' },
  });
  return { planIngestion, fetchIngestionBatch, parseIngestionBatch, chunkIngestionBatch, storeIngestionBatch, embedIngestionBatch };
}

const emptyCounters = (): IngestCounters => ({
  documentsTotal: 0,
  documentsStored: 0,
  documentsUnchanged: 0,
  documentsFailed: 0,
  documentsRemoved: 0,
  chunksCreated: 0,
  embeddingsGenerated: 0,
});

export type IngestResult = IngestCounters & { durationMs: number };

/**
 * A document ingestion: plan (expand archives, number the documents into batches), then each
 * stage — fetching, parsing, chunking, embedding (on the LLM task queue), storing — over every
 * batch, a few batches at once, before the next stage; then, for a sync, remove the documents
 * the request no longer names. Documents that fail do so alone, and the job completes listing
 * them. Long jobs continue as new every `batchesPerRun` batch steps; cancelled or failed, the
 * documents not yet stored fail and what they staged is removed.
 */
export async function ingestDocuments(input: JobInput<IngestParams>): Promise<IngestResult> {
  const { jobId, tenantId, params } = input;
  const step = stepActivities(params);
  const counters: IngestCounters = params.resume?.counters ?? emptyCounters();
  const progress: IngestProgress = { stage: 'starting', batches: params.resume?.batches ?? 0, batchesDone: 0, counters: { ...counters } };
  setHandler(progressQuery, () => progress);
  // A stage's reports run beside its batches: the counters of the last one asked for win, whatever order they answer in.
  let reportsAsked = 0;
  let reportShown = 0;
  const report = async (name: string, stage: IngestStage | 'removing') => {
    const asked = ++reportsAsked;
    const fresh = await reportIngestionProgress(jobId, name, stage);
    if (asked < reportShown) return;
    reportShown = asked;
    Object.assign(counters, fresh);
    progress.counters = { ...counters };
  };
  const batchStep: Record<IngestStage, (batch: number) => Promise<void>> = {
    fetching: (batch) => step.fetchIngestionBatch(jobId, params.blobPrefix, batch),
    parsing: (batch) => step.parseIngestionBatch(jobId, batch),
    chunking: (batch) => step.chunkIngestionBatch(jobId, batch),
    embedding: (batch) => step.embedIngestionBatch(jobId, tenantId, batch),
    storing: (batch) => step.storeIngestionBatch(jobId, batch),
  };

  try {
    let batches: number;
    let stageIndex = 0;
    let next = 0;
    if (params.resume) {
      ({ batches, nextBatch: next } = params.resume);
      stageIndex = ingestStages.indexOf(params.resume.stage);
    } else {
      await markJobRunning(jobId);
      progress.stage = 'fetching';
      ({ batches } = await step.planIngestion(jobId, params.blobPrefix, params.batchSize));
      progress.batches = batches;
      await report('planned', 'fetching');
    }

    let stepsThisRun = 0;
    const reportEvery = Math.max(1, Math.ceil(batches / PROGRESS_REPORTS_PER_STAGE));
    /** Runs the stage's remaining batches, `parallelism` at a time, until the run's share of steps is used. */
    const runStage = async (stage: IngestStage) => {
      const reports: Array<Promise<void>> = [];
      const lane = async () => {
        while (next < batches && stepsThisRun < params.batchesPerRun) {
          const batch = next++;
          stepsThisRun++;
          await batchStep[stage](batch);
          progress.batchesDone = Math.max(progress.batchesDone, batch + 1);
          if (batch % reportEvery === 0 || batch === batches - 1) reports.push(report(`${stage}:${batch}`, stage));
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, params.parallelism) }, lane));
      await Promise.all(reports);
    };

    for (; stageIndex < ingestStages.length; stageIndex++, next = 0) {
      const stage = ingestStages[stageIndex] as IngestStage;
      progress.stage = stage;
      progress.batchesDone = next;
      if (stage === 'embedding') {
        const embedded = await runLlmStage(() => runStage(stage));
        if (embedded.status === 'skipped') {
          // Without vectors nothing can be stored: the documents waiting for them fail, with the reason.
          await recordStageSkipped(jobId, 'embedding', embedded.reason);
          await failUnstoredDocuments(jobId, `Not embedded: ${embedded.reason}`);
          next = batches;
        }
      } else {
        await runStage(stage);
      }
      if (next < batches) {
        await continueAsNew<typeof ingestDocuments>({ ...input, params: { ...params, resume: { batches, stage, nextBatch: next, counters } } });
      }
    }

    if (params.mode === 'sync') {
      progress.stage = 'removing';
      await removeAbsentDocuments(jobId);
      await report('removed', 'removing');
    }
    const summary = await completeIngestion(jobId, params.blobPrefix);
    progress.stage = 'completed';
    Object.assign(counters, summary);
    progress.counters = { ...summary };
    return summary;
  } catch (err) {
    return finishAfterFailure(err, {
      jobId,
      counters: () => ({ ...counters }),
      finishJob,
      beforeFinish: (status, message) =>
        failUnstoredDocuments(jobId, status === 'cancelled' ? 'The ingestion was cancelled before this document was stored.' : `The ingestion failed before this document was stored: ${message ?? ''}`),
    });
  }
}
