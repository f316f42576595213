import type { Client } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';

/**
 * Where a workflow's time went, from its history (every run, continue-as-new included), for
 * benchmarks (not a benchmark itself: .ci/run runs only bench/*.ts): per activity type and for
 * workflow tasks, how many, their run and queue time summed, and when the first was scheduled
 * and the last completed.
 */

export interface StepStats {
  count: number;
  /** Started → completed, summed. */
  runMs: number;
  /** Scheduled → started, summed: waiting for a worker slot (or a worker). */
  queueMs: number;
  /** First scheduled, last completed. */
  from: number;
  to: number;
}

export async function workflowTimeline(client: Client, workflowId: string): Promise<{ runs: number; steps: Map<string, StepStats>; from: number; to: number }> {
  const histories = [];
  for (let runId: string | undefined; ; ) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    histories.unshift(history);
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) break;
  }
  const steps = new Map<string, StepStats>();
  const scheduled = new Map<string, { name: string; at: number }>();
  const started = new Map<string, number>();
  let from = Infinity;
  let to = 0;
  const add = (name: string, fields: { runMs?: number; queueMs?: number; from: number; to: number }) => {
    const s = steps.get(name) ?? { count: 0, runMs: 0, queueMs: 0, from: Infinity, to: 0 };
    steps.set(name, { count: s.count + 1, runMs: s.runMs + (fields.runMs ?? 0), queueMs: s.queueMs + (fields.queueMs ?? 0), from: Math.min(s.from, fields.from), to: Math.max(s.to, fields.to) });
  };
  for (const history of histories) {
    for (const e of history.events ?? []) {
      const at = tsToMs(e.eventTime);
      const id = String(e.eventId);
      from = Math.min(from, at);
      to = Math.max(to, at);
      if (e.activityTaskScheduledEventAttributes) scheduled.set(id, { name: e.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at });
      if (e.workflowTaskScheduledEventAttributes) scheduled.set(id, { name: 'workflow task', at });
      if (e.activityTaskStartedEventAttributes || e.workflowTaskStartedEventAttributes) started.set(id, at);
      const done = e.activityTaskCompletedEventAttributes ?? e.workflowTaskCompletedEventAttributes;
      if (done) {
        const s = scheduled.get(String(done.scheduledEventId));
        const begun = started.get(String(done.startedEventId)) ?? at;
        if (s) add(s.name, { runMs: at - begun, queueMs: begun - s.at, from: s.at, to: at });
      }
    }
  }
  return { runs: histories.length, steps, from, to };
}
