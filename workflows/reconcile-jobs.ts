import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { reconcileOpenJobs } = proxyActivities<Activities>({ startToCloseTimeout: '5 minutes', retry: { maximumAttempts: 3 } });

/** The periodic sweep: job rows whose workflows ended without telling us are closed. */
export async function reconcileJobs(idleSeconds: number): Promise<{ closed: number }> {
  return { closed: await reconcileOpenJobs(idleSeconds) };
}
