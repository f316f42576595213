import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { GitFetchError } from '../lib/git-fetch';
import {
  abandonScan,
  analyzeScanBatch,
  finalizeScan,
  planLlmReview,
  prepareScan,
  reviewScanBatchWithLlm,
  type LlmReviewDeps,
  type ScanDeps,
  type ScanPlan,
} from '../services/scans';
import type { StepContext } from '../services/scans/pipeline';
import { asLlmActivity } from './llm-failures';

/** The context of the running activity: its job, its name (for the vault's access log), heartbeats and cancellation. */
export function stepContext(jobId: string): StepContext {
  const { info, cancellationSignal } = Context.current();
  return { jobId, activity: info.activityType, heartbeat: (detail) => Context.current().heartbeat(detail), signal: cancellationSignal };
}

/**
 * A repository that is not there, or not readable with the project's token, stays so on retry;
 * a timeout or a dropped connection may not.
 */
async function fetching<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof GitFetchError && ['not-found', 'auth-failed', 'too-large', 'invalid-ref'].includes(err.code)) {
      throw ApplicationFailure.create({ type: 'ScanSourceUnavailable', message: err.message, nonRetryable: true });
    }
    throw err;
  }
}

/**
 * Heartbeats all the while `step` runs, a few times per heartbeat timeout: fetching, extracting
 * and walking a large tree report nothing of their own for minutes, yet the worker is alive (one
 * that dies stops heartbeating, and the step is retried elsewhere). The answers to heartbeats
 * also carry a cancellation to the step's signal (which stops git).
 */
export async function keepingAlive<T>(step: () => Promise<T>): Promise<T> {
  const context = Context.current();
  const timeoutMs = context.info.heartbeatTimeoutMs ?? 0;
  if (timeoutMs <= 0) return step();
  const timer = setInterval(() => context.heartbeat(), Math.max(1000, Math.floor(timeoutMs / 3)));
  try {
    return await step();
  } finally {
    clearInterval(timer);
  }
}

/** Activities of a repository scan on the `auditflow` queue (the rules; the model review runs on the LLM queue). */
export function createScanActivities(deps: ScanDeps & LlmReviewDeps) {
  return {
    async prepareScan(jobId: string, scanId: string, batchSize: number): Promise<ScanPlan> {
      return keepingAlive(() => fetching(() => prepareScan(deps, scanId, batchSize, stepContext(jobId))));
    },
    async analyzeScanBatch(jobId: string, scanId: string, batch: number) {
      return keepingAlive(() => fetching(() => analyzeScanBatch(deps, scanId, batch, stepContext(jobId))));
    },
    async planScanReview(scanId: string) {
      return planLlmReview(deps, scanId);
    },
    async finalizeScan(jobId: string, scanId: string, outcome: { llm: Record<string, unknown>; llmRan: boolean }) {
      return finalizeScan(deps, scanId, outcome);
    },
    async abandonScan(scanId: string, status: 'failed' | 'cancelled', error: string | null): Promise<void> {
      await abandonScan(deps, scanId, status, error);
    },
  };
}

/** The model review of a scan, on the LLM queue. */
export function createScanReviewActivities(deps: LlmReviewDeps) {
  return {
    async reviewScanBatchWithLlm(jobId: string, tenantId: string, scanId: string, batch: number) {
      const context = stepContext(jobId);
      return asLlmActivity(() => fetching(() => reviewScanBatchWithLlm(deps, scanId, batch, { tenantId, jobId, activity: context.activity, mode: 'job', signal: context.signal }, context)));
    },
  };
}
