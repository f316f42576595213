import { CancellationScope, ContinueAsNew, isCancellation } from '@temporalio/workflow';
import type { Activities } from '../activities';

/** The innermost cause says what went wrong (an activity failure wraps the error the activity threw). */
export function failureMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

export interface UnfinishedJob {
  jobId: string;
  /** The job's counters, read when it is finished (after `beforeFinish`). */
  counters: () => Record<string, number>;
  /** The workflow's own proxy of the activity (with its timeouts and retry policy). */
  finishJob: Activities['finishJob'];
  /**
   * The workflow's own cleanup before the job is finished (an abandoned scan, a project put
   * back): the outcome, and the failure's message (null when cancelled).
   */
  beforeFinish?: (status: 'cancelled' | 'failed', message: string | null) => Promise<void>;
}

/**
 * The end of every job workflow's `catch`: lets a continue-as-new through untouched; otherwise
 * runs `beforeFinish`, then finishes the job cancelled or failed, and rethrows `err`.
 */
export async function finishAfterFailure(err: unknown, job: UnfinishedJob): Promise<never> {
  if (err instanceof ContinueAsNew) throw err;
  // Cleanup must run even though the workflow itself is being cancelled.
  await CancellationScope.nonCancellable(async () => {
    if (isCancellation(err)) {
      await job.beforeFinish?.('cancelled', null);
      await job.finishJob(job.jobId, { status: 'cancelled', counters: job.counters() });
    } else {
      const message = failureMessage(err);
      await job.beforeFinish?.('failed', message);
      await job.finishJob(job.jobId, { status: 'failed', counters: job.counters(), error: { message } });
    }
  });
  throw err;
}
