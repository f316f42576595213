import { ApplicationFailure, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { progressQuery, type CredentialCheckResult, type JobInput, type JobProgress, type SecretReferenceVerdict } from './definitions';
import { finishAfterFailure } from './failures';

const { markJobRunning, reportJobProgress, finishJob, listProjectSecretReferences, checkSecretReference } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: {
    maximumInterval: '30 seconds',
    // Retrying cannot bring back a project that is gone, nor make tampered ciphertext authenticate.
    nonRetryableErrorTypes: ['NotFoundError', 'TamperedCiphertextError'],
  },
});

/**
 * Checks every secret reference in a project's settings: each is resolved inside an activity,
 * which answers with a verdict (ok with version and age, missing or malformed), never the value.
 * Missing references are a finding, not a failure: the job completes, the verdicts on its
 * `completed` event.
 */
export async function checkProjectCredentials(input: JobInput): Promise<CredentialCheckResult> {
  const { jobId, tenantId, projectId } = input;
  const counters: CredentialCheckResult['counters'] = { references: 0, ok: 0, missing: 0, malformed: 0 };
  const progress: JobProgress = { stage: 'starting', counters };
  setHandler(progressQuery, () => progress);
  if (!projectId) throw ApplicationFailure.nonRetryable('checkProjectCredentials needs a project id.');

  try {
    await markJobRunning(jobId);
    progress.stage = 'listing references';
    const references = await listProjectSecretReferences(projectId);
    counters.references = references.length;
    const verdicts: SecretReferenceVerdict[] = [];
    for (const [i, reference] of references.entries()) {
      progress.stage = `checking ${reference}`;
      const verdict = await checkSecretReference(jobId, tenantId, reference);
      verdicts.push(verdict);
      counters[verdict.status]++;
      await reportJobProgress(jobId, `reference:${i}`, { stage: `checked ${reference}: ${verdict.status}`, counters });
    }
    progress.stage = 'completed';
    await finishJob(jobId, { status: 'completed', counters, data: { verdicts } });
    return { counters, verdicts };
  } catch (err) {
    return finishAfterFailure(err, { jobId, counters: () => counters, finishJob });
  }
}
