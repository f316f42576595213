import { captureLogs, expectNoSecretLeaks, scanForSecret } from '../harness/leak-detector';
import { runCredentialCheck, startJobsSuite, type JobsSuite } from '../jobs/job-helpers';

/*
 * The vault's promise, checked on the first workflow that uses secrets: a credential check
 * resolves every referenced secret inside its activities, and no value reaches Temporal's history
 * (inputs, results, memo, search attributes, failures), the job's row and events, or the logs.
 */

let suite: JobsSuite;
const logs = captureLogs();

beforeAll(async () => {
  // Trace level: the most the app ever logs.
  suite = await startJobsSuite('leaks', { env: { LOG_LEVEL: 'trace' }, logTo: logs.stream });
});
afterAll(() => suite?.stop());

test('a workflow that resolves secrets inside its activities leaks none of them, in any form', async () => {
  const run = await runCredentialCheck(suite.t, suite.admin);
  expect(run.job.status).toBe('completed');
  expect(run.secretValues.length).toBeGreaterThanOrEqual(2);

  for (const secret of run.secretValues) {
    const scan = { secret, temporal: suite.t.temporal, workflows: [run.workflowId], jobIds: [run.job.id], logs: logs.lines() };
    await expectNoSecretLeaks(scan);
    // Nothing leaked because everything was read, not because nothing was.
    const { scanned } = await scanForSecret(scan);
    expect(scanned.historyEvents).toBeGreaterThan(10);
    expect(scanned.payloads).toBeGreaterThan(0);
    expect(scanned.logLines).toBeGreaterThan(0);
    expect(scanned.jobEvents).toBeGreaterThan(3);
  }
});
