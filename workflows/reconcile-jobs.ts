import { patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { reconcileOpenJobs, purgeExpiredIdempotencyKeys } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 3 },
});

/** The periodic sweep: job rows whose workflows ended without telling us are closed, and spent idempotency keys go. */
export async function reconcileJobs(idleSeconds: number): Promise<{ closed: number; keysPurged: number }> {
  const closed = await reconcileOpenJobs(idleSeconds);
  // Added after histories without it were recorded: replaying those must not expect this activity.
  const keysPurged = patched('purge-idempotency-keys') ? await purgeExpiredIdempotencyKeys() : 0;
  return { closed, keysPurged };
}
