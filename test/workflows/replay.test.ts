import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { DefaultLogger, Runtime, Worker, type ReplayResult } from '@temporalio/worker';
import * as workflows from '../../workflows';
import { workflowBundle } from '../harness/worker';
import { historiesDir, historyFile, historyNames, readHistoryFile, recordHistories, type HistoryName } from './record-histories';

/**
 * Determinism guard. The committed histories under test/histories/ are the reference: each is
 * replayed against the workflow bundle global-setup built from the current code, so a change
 * that would break running workflows (a reordered, added or removed command without `patched()`)
 * fails here.
 *
 * Histories are never rewritten behind anyone's back: a missing one is recorded (by running the
 * real workflow) and the run fails until it is reviewed and committed; `RECORD_HISTORIES=1`
 * re-records them all, deliberately, after an intended change.
 */

const recordAll = process.env.RECORD_HISTORIES === '1';
const missingAtStart = historyNames.filter((name) => !existsSync(historyFile(name)));

describe('recorded workflow histories', () => {
  beforeAll(async () => {
    const toRecord = recordAll ? historyNames : missingAtStart;
    if (toRecord.length > 0) await recordHistories(toRecord); // its test worker installs the harness's quiet SDK runtime
    else Runtime.install({ logger: new DefaultLogger('WARN') }); // the replay worker's state changes would flood the output
  }, 120_000);

  it('include every workflow kind and outcome, all committed', () => {
    // Every exported workflow needs a history of its own: a new kind cannot go unguarded.
    const recordedTypes = new Set(historyNames.map((name) => name.split('-')[0]));
    expect(Object.keys(workflows).filter((type) => !recordedTypes.has(type))).toEqual([]);

    if (!recordAll && missingAtStart.length > 0) {
      throw new Error(
        `No committed history for ${missingAtStart.join(', ')}: recorded now into ${path.relative(process.cwd(), historiesDir)}/. ` +
          'Review and commit the new file(s); this check passes once they are there.',
      );
    }
  });

  it.each(historyNames)('%s exercises what it is named after', (name: HistoryName) => {
    const events = readHistoryFile(historyFile(name)).events ?? [];
    const [type, outcome] = name.split('-');
    const activities = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(events[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name).toBe(type);
    const last = events.at(-1);
    expect(outcome === 'completed' ? last?.workflowExecutionCompletedEventAttributes : last?.workflowExecutionCanceledEventAttributes).toBeTruthy();
    if (name === 'deleteProject-completed') {
      // More than one batch: the loop, its progress reports and the final steps are all in the reference.
      expect(activities.filter((a) => a === 'deleteProjectDataBatch').length).toBeGreaterThanOrEqual(2);
      expect(activities).toEqual(expect.arrayContaining(['markJobRunning', 'countProjectData', 'reportJobProgress', 'deleteProjectRecord', 'finishJob']));
    }
    if (name === 'checkProjectCredentials-completed') {
      // A reference of each verdict: one resolution and one progress report per reference.
      expect(activities.filter((a) => a === 'checkSecretReference')).toHaveLength(3);
      expect(activities.filter((a) => a === 'reportJobProgress')).toHaveLength(3);
      expect(activities).toEqual(expect.arrayContaining(['markJobRunning', 'listProjectSecretReferences', 'finishJob']));
    }
    if (name === 'checkLlmProviders-completed') {
      // One model call per stage on the LLM task queue; the skipped stage (builtin: no structured output) is on record.
      expect(activities.filter((a) => a === 'checkLlmStage')).toHaveLength(3);
      expect(activities).toEqual(expect.arrayContaining(['markJobRunning', 'recordStageSkipped', 'reportJobProgress', 'finishJob']));
    }
    if (name === 'reconcileJobs-completed') {
      // Recorded with every patched step (the older histories without them are kept beside it).
      expect(activities).toEqual(['reconcileOpenJobs', 'purgeExpiredIdempotencyKeys', 'purgeExpiredLlmCache']);
    }
    if (name === 'scanRepository-completed') {
      // Several batches two at a time, each with its progress report; the LLM stage skipped on record (builtin provider).
      expect(activities.filter((a) => a === 'analyzeScanBatch').length).toBeGreaterThanOrEqual(3);
      expect(activities.filter((a) => a === 'reportJobProgress').length).toBe(activities.filter((a) => a === 'analyzeScanBatch').length + 1);
      expect(activities).toEqual(expect.arrayContaining(['markJobRunning', 'prepareScan', 'planScanReview', 'recordStageSkipped', 'finalizeScan', 'finishJob']));
    }
    if (name === 'deleteProject-completed') {
      // Recorded with the patched scan-data and document kinds (the histories before them are kept beside it): issues, scans, blobs and documents deleted in batches too.
      expect(events.flatMap((e) => e.markerRecordedEventAttributes?.markerName ?? [])).toContain('core_patch');
      expect(activities.filter((a) => a === 'countProjectData')).toHaveLength(5);
      // Jobs, issues and documents two batches each, the scan and the blob one each.
      expect(activities.filter((a) => a === 'deleteProjectDataBatch')).toHaveLength(8);
    }
    if (name === 'deleteProject-cancelled') {
      // Cancelled mid-batch: the cleanup in the non-cancellable scope is in the reference.
      expect(events.some((e) => e.activityTaskCancelRequestedEventAttributes)).toBe(true);
      expect(activities.slice(-2)).toEqual(['restoreProject', 'finishJob']);
    }
    if (name === 'ingestDocuments-completed') {
      // Three documents in batches of one: every stage's step once per batch, in stage order, the model calls on the LLM task queue.
      const stages = ['fetchIngestionBatch', 'parseIngestionBatch', 'chunkIngestionBatch', 'embedIngestionBatch', 'storeIngestionBatch'];
      expect(activities.filter((a) => stages.includes(a))).toEqual(stages.flatMap((stage) => [stage, stage, stage]));
      expect(activities).toEqual(expect.arrayContaining(['markJobRunning', 'planIngestion', 'reportIngestionProgress']));
      expect(activities.at(-1)).toBe('completeIngestion');
      const workflowQueue = events[0]?.workflowExecutionStartedEventAttributes?.taskQueue?.name;
      const queuesOf = (type: string) =>
        new Set(events.flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name === type ? [e.activityTaskScheduledEventAttributes.taskQueue?.name] : [])));
      expect(queuesOf('storeIngestionBatch')).toEqual(new Set([workflowQueue]));
      const llmQueues = queuesOf('embedIngestionBatch');
      expect(llmQueues.size).toBe(1);
      expect(llmQueues.has(workflowQueue)).toBe(false);
    }
  });

  it('replay against the current workflow code without a determinism error', async () => {
    const files = readdirSync(historiesDir).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(expect.arrayContaining(historyNames.map((name) => `${name}.json`)));
    const histories = files.map((f) => ({ workflowId: path.basename(f, '.json'), history: readHistoryFile(path.join(historiesDir, f)) }));

    const results: ReplayResult[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle }, histories)) results.push(result);

    // One result per file, none with an error (an empty or short replay cannot pass).
    expect(results.map((r) => ({ history: r.workflowId, error: r.error ? `${r.error.name}: ${r.error.message}` : null }))).toEqual(
      histories.map((h) => ({ history: h.workflowId, error: null })),
    );
  });
});
