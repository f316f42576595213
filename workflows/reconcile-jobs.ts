import { patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { reconcileOpenJobs, purgeExpiredIdempotencyKeys, purgeExpiredLlmCache } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 3 },
});

/** The periodic sweep: job rows whose workflows ended without telling us are closed, spent idempotency keys and expired LLM cache entries go. */
export async function reconcileJobs(idleSeconds: number): Promise<{ closed: number; keysPurged: number; cacheEntriesPurged: number }> {
  const closed = await reconcileOpenJobs(idleSeconds);
  // Added after histories without them were recorded: replaying those must not expect these activities.
  const keysPurged = patched('purge-idempotency-keys') ? await purgeExpiredIdempotencyKeys() : 0;
  const cacheEntriesPurged = patched('purge-llm-cache') ? await purgeExpiredLlmCache() : 0;
  return { closed, keysPurged, cacheEntriesPurged };
}
