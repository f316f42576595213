import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import type { Duration } from '@temporalio/common';
import { auditRetentionScheduleId, jobReconciliationScheduleId, type AuditRetentionInput } from '../workflows/definitions';

interface PeriodicWorkflow {
  scheduleId: string;
  every: Duration;
  workflowType: string;
  args: unknown[];
  title: string;
}

/** Creates the schedule, or brings an existing one in line with this configuration. */
async function ensureSchedule(client: Client, taskQueue: string, s: PeriodicWorkflow): Promise<void> {
  const action = { type: 'startWorkflow' as const, workflowType: s.workflowType, taskQueue, args: s.args };
  try {
    await client.schedule.create({ scheduleId: s.scheduleId, spec: { intervals: [{ every: s.every }] }, action, memo: { title: s.title } });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(s.scheduleId).update((previous) => ({ ...previous, spec: { intervals: [{ every: s.every }] }, action }));
  }
}

/** The deployment's periodic housekeeping, visible (and pausable) in the Temporal Web UI. */
export async function ensureSchedules(client: Client, taskQueue: string, config: { AUDIT_RETENTION_DAYS: number }): Promise<void> {
  const retention: [AuditRetentionInput] = [{ retentionDays: config.AUDIT_RETENTION_DAYS }];
  await ensureSchedule(client, taskQueue, {
    scheduleId: auditRetentionScheduleId(taskQueue),
    every: '1 day',
    workflowType: 'auditRetention',
    args: retention,
    title: 'Archive audit-log rows past retention',
  });
  await ensureSchedule(client, taskQueue, {
    scheduleId: jobReconciliationScheduleId(taskQueue),
    every: '1 minute',
    workflowType: 'reconcileJobs',
    // Jobs untouched for two minutes are checked against their workflows.
    args: [120],
    title: 'Reconcile open jobs with their workflows',
  });
}
