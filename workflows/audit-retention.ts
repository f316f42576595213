import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AuditRetentionInput, AuditRetentionResult } from './definitions';

const { archiveExpiredAuditLogs } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  retry: { maximumAttempts: 5 },
});

/** Archives audit rows older than the retention period; nothing is deleted outright. */
export async function auditRetention(input: AuditRetentionInput): Promise<AuditRetentionResult> {
  const archived = await archiveExpiredAuditLogs(input.retentionDays);
  return { archived };
}
