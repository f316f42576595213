import { continueAsNew, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities, LlmActivities } from '../activities';
import { progressQuery, type JobInput, type ScanCounters, type ScanParams, type ScanPlanSummary, type ScanProgress } from './definitions';
import { finishAfterFailure } from './failures';
import { runLlmStage } from './llm-stage';

/** Failures no retry can mend: a refused source or archive, a repository that is not there or not ours to read. */
const nonRetryableErrorTypes = ['UnsafeSourceError', 'ArchiveRejectedError', 'ScanSourceUnavailable', 'NotFoundError', 'SecretReferenceError'];

const { markJobRunning, reportJobProgress, recordStageSkipped, finishJob, planScanReview, abandonScan } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumInterval: '30 seconds' },
});

/** How long a scan step may go without a heartbeat before it is retried elsewhere (its worker presumed dead). */
const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 60;

/** The long steps of a scan: they heartbeat, so a dead worker's step is retried within the scan's heartbeat timeout. */
function scanStepActivities(heartbeatTimeoutSeconds: number) {
  const heartbeatTimeout = heartbeatTimeoutSeconds * 1000;
  const { prepareScan } = proxyActivities<Activities>({
    startToCloseTimeout: '1 hour',
    heartbeatTimeout,
    retry: { maximumInterval: '1 minute', maximumAttempts: 5, nonRetryableErrorTypes },
  });
  const { analyzeScanBatch, finalizeScan } = proxyActivities<Activities>({
    startToCloseTimeout: '30 minutes',
    heartbeatTimeout,
    retry: { maximumInterval: '1 minute', nonRetryableErrorTypes },
  });
  return { prepareScan, analyzeScanBatch, finalizeScan };
}

const PROGRESS_REPORTS_PER_SCAN = 50;

export interface ScanResult {
  counters: ScanCounters;
  summary: Record<string, unknown>;
}

/**
 * A repository scan: fetch the tree, select the files, analyze them in batches with the rules
 * (a few batches at once), let a real model review them when the tenant has one, persist the
 * findings as issues, and finalize (vanished issues fixed, summary written, tree removed).
 * Long scans continue as new every `batchesPerRun` batches, so no run's history grows unbounded.
 */
export async function scanRepository(input: JobInput<ScanParams>): Promise<ScanResult> {
  const { jobId, tenantId, params } = input;
  const { scanId } = params;
  const { prepareScan, analyzeScanBatch, finalizeScan } = scanStepActivities(params.heartbeatTimeoutSeconds ?? DEFAULT_HEARTBEAT_TIMEOUT_SECONDS);
  const counters: ScanCounters = params.resume?.counters ?? { filesTotal: 0, filesAnalyzed: 0, filesFailed: 0, issuesFound: 0 };
  const progress: ScanProgress = { stage: 'starting', filesTotal: counters.filesTotal, filesAnalyzed: counters.filesAnalyzed, issuesFound: counters.issuesFound, counters: { ...counters } };
  setHandler(progressQuery, () => progress);
  const refreshProgress = () =>
    Object.assign(progress, { filesTotal: counters.filesTotal, filesAnalyzed: counters.filesAnalyzed, issuesFound: counters.issuesFound, counters: { ...counters } });
  const report = async (step: string) => {
    refreshProgress();
    await reportJobProgress(jobId, step, { stage: progress.stage, counters: { ...counters } });
  };

  try {
    let plan: ScanPlanSummary;
    let nextBatch: number;
    if (params.resume) {
      ({ plan, nextBatch } = params.resume);
    } else {
      await markJobRunning(jobId);
      progress.stage = 'fetching';
      plan = await prepareScan(jobId, scanId, params.batchSize);
      counters.filesTotal = plan.filesTotal;
      nextBatch = 0;
      await report('prepared');
    }

    progress.stage = 'analyzing';
    const runEnd = Math.min(plan.batches, nextBatch + params.batchesPerRun);
    let next = nextBatch;
    // Progress lands on the job every `reportEvery` batches: about fifty reports a scan, however large.
    const reportEvery = Math.max(1, Math.ceil(plan.batches / PROGRESS_REPORTS_PER_SCAN));
    const lane = async () => {
      while (next < runEnd) {
        const batch = next++;
        const result = await analyzeScanBatch(jobId, scanId, batch);
        counters.filesAnalyzed += result.filesAnalyzed;
        counters.filesFailed += result.filesFailed;
        counters.issuesFound += result.issuesFound;
        if (batch % reportEvery === 0 || batch === plan.batches - 1) await report(`batch:${batch}`);
        else refreshProgress();
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, params.parallelism) }, lane));
    if (runEnd < plan.batches) {
      await continueAsNew<typeof scanRepository>({ ...input, params: { ...params, resume: { plan, nextBatch: runEnd, counters } } });
    }

    progress.stage = 'reviewing';
    const { reviewScanBatchWithLlm } = proxyActivities<LlmActivities>({
      taskQueue: params.llmTaskQueue,
      startToCloseTimeout: '10 minutes',
      retry: { maximumAttempts: 5, maximumInterval: '1 minute', nonRetryableErrorTypes },
    });
    const review = await runLlmStage(async () => {
      const reviewPlan = await planScanReview(scanId);
      if ('skipped' in reviewPlan) return reviewPlan;
      let issuesFound = 0;
      for (let batch = 0; batch < reviewPlan.batches; batch++) issuesFound += (await reviewScanBatchWithLlm(jobId, tenantId, scanId, batch)).issuesFound;
      return { files: reviewPlan.files, issuesFound };
    });
    const skipped = review.status === 'skipped' ? review.reason : 'skipped' in review.value ? review.value.skipped : null;
    if (skipped !== null) await recordStageSkipped(jobId, 'llm-review', skipped);
    const llm = skipped === null && review.status === 'done' ? { status: 'ran', ...review.value } : { status: 'skipped', reason: skipped };

    progress.stage = 'finalizing';
    const summary = await finalizeScan(jobId, scanId, { llm, llmRan: skipped === null });
    progress.stage = 'completed';
    await finishJob(jobId, { status: 'completed', counters: { ...counters, llmCalls: summary.llmCalls, llmCostUsd: summary.llmCostUsd }, data: { scanId, summary } });
    return { counters, summary: { ...summary } };
  } catch (err) {
    return finishAfterFailure(err, { jobId, counters: () => ({ ...counters }), finishJob, beforeFinish: (status, message) => abandonScan(scanId, status, message) });
  }
}
