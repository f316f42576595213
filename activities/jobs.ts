import type { JobError, JobStatus } from '../db';
import { purgeExpiredLlmCache } from '../services/llm';
import { purgeExpiredIdempotencyKeys, reconcileOpenJobs, recordJobEvent, type JobsDeps } from '../services/jobs';

/** How every job workflow reports to its row: started, progress, finished. Each write is idempotent. */
export function createJobActivities(deps: JobsDeps) {
  return {
    async markJobRunning(jobId: string): Promise<void> {
      await recordJobEvent(deps.sequelize, jobId, { type: 'running', status: 'running', dedupeKey: 'running' });
    },
    /** `step` names this report uniquely within the job, so a retried activity writes it once. */
    async reportJobProgress(jobId: string, step: string, progress: { stage: string; counters: Record<string, number> }): Promise<void> {
      await recordJobEvent(deps.sequelize, jobId, { type: 'progress', ...progress, dedupeKey: `progress:${step}` });
    },
    /** A stage the job did not run (e.g. an LLM stage once the budget is spent), and why: on record, never silent. */
    async recordStageSkipped(jobId: string, stage: string, reason: string): Promise<void> {
      await recordJobEvent(deps.sequelize, jobId, { type: 'stage_skipped', data: { stage, reason }, dedupeKey: `skipped:${stage}` });
    },
    /** `data` goes on the final event: what a job found, for whoever reads it after the fact. */
    async finishJob(
      jobId: string,
      outcome: { status: Extract<JobStatus, 'completed' | 'failed' | 'cancelled'>; counters?: Record<string, number>; error?: JobError; data?: Record<string, unknown> },
    ): Promise<void> {
      await recordJobEvent(deps.sequelize, jobId, { type: outcome.status, ...outcome, dedupeKey: 'terminal' });
    },
    /** The periodic sweep: closes rows whose workflows ended without telling us. */
    async reconcileOpenJobs(idleSeconds: number): Promise<number> {
      return reconcileOpenJobs(deps, idleSeconds * 1000);
    },
    async purgeExpiredIdempotencyKeys(): Promise<number> {
      return purgeExpiredIdempotencyKeys();
    },
    async purgeExpiredLlmCache(): Promise<number> {
      return purgeExpiredLlmCache(deps.sequelize);
    },
  };
}
