import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import { auditRetentionScheduleId, type AuditRetentionInput } from '../workflows/definitions';

/** Ensures the daily audit-retention schedule exists and carries the configured retention. */
export async function ensureAuditRetentionSchedule(client: Client, taskQueue: string, retentionDays: number): Promise<void> {
  const args: [AuditRetentionInput] = [{ retentionDays }];
  const scheduleId = auditRetentionScheduleId(taskQueue);
  const action = { type: 'startWorkflow' as const, workflowType: 'auditRetention', taskQueue, args };
  try {
    await client.schedule.create({
      scheduleId,
      spec: { intervals: [{ every: '1 day' }] },
      action,
      memo: { title: 'Archive audit-log rows past retention' },
    });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule.getHandle(scheduleId).update((previous) => ({ ...previous, action }));
  }
}
