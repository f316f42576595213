import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, TypedSearchAttributes } from '@temporalio/common';
import { Job } from '../../db';
import { recordJobEvent } from '../../services/jobs';
import { searchAttributes } from '../../workflows/definitions';
import { registerTenant, startTestApp, type TestApp } from '../harness';
import { captureLogs, expectNoSecretLeaks, findSecretIn, findSecretLeaks, scanForSecret, type LeakFinding } from '../harness/leak-detector';

/**
 * Self-test of the leak detector (issue 4, criterion 4): each test plants a value somewhere real
 * (a workflow history on the test Temporal server, the app's own log output, job rows in Postgres)
 * and shows the detector reports the place and the form, without ever repeating the value.
 * The workflows are started on a task queue no worker polls: what they were started, signalled
 * or terminated with is in their history all the same, and nothing runs.
 */

/** A value shaped like a token (and valid as an X-Request-Id, so the app logs it as is). */
const newSecret = () => `sk_live_${randomUUID().replaceAll('-', '')}`;
const base64 = (s: string) => Buffer.from(s).toString('base64');
const hex = (s: string) => Buffer.from(s).toString('hex');

/** Findings must name places only: never the value, nor an encoding of it. */
function expectSafe(findings: readonly LeakFinding[], secret: string) {
  const text = JSON.stringify(findings);
  for (const form of [secret, base64(secret), Buffer.from(secret).toString('base64url'), hex(secret), hex(secret).toUpperCase()]) expect(text).not.toContain(form);
}

describe('leak detector', () => {
  let t: TestApp;
  let tenantId: string;
  const logs = captureLogs();
  const idleQueue = `leak-detector-idle-${randomUUID()}`;
  const open: WorkflowHandle[] = [];

  beforeAll(async () => {
    t = await startTestApp({ LOG_LEVEL: 'info' }, { logTo: logs.stream });
    tenantId = (await registerTenant(t, 'leaks')).tenantId;
  });
  afterAll(async () => {
    await Promise.allSettled(open.map((h) => h.terminate('leak detector test done')));
    await t.close();
  });

  /** `auditRetention` started where nothing runs it; its history holds what it was given. */
  async function startIdle(input: Record<string, unknown>, options: { memo?: Record<string, unknown>; typedSearchAttributes?: TypedSearchAttributes } = {}) {
    const handle = await t.temporal.workflow.start('auditRetention', {
      taskQueue: idleQueue,
      workflowId: `leak-detector-${randomUUID()}`,
      args: [{ retentionDays: 1, ...input }],
      ...options,
    });
    open.push(handle);
    return handle;
  }

  it('finds a secret in a workflow input (the started event)', async () => {
    const secret = newSecret();
    const handle = await startIdle({ note: secret });

    const findings = await findSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId] });
    expect(findings).toContainEqual({
      where: 'history',
      workflowId: handle.workflowId,
      runId: handle.firstExecutionRunId,
      eventId: 1,
      path: 'workflowExecutionStartedEventAttributes.input.payloads[0].<decoded>.note',
      form: 'plain',
    });
    // The payload's raw bytes are scanned too.
    expect(findings).toContainEqual(expect.objectContaining({ path: 'workflowExecutionStartedEventAttributes.input.payloads[0].data', form: 'plain' }));
    expectSafe(findings, secret);
  });

  it('finds a secret in the memo and in a search attribute', async () => {
    const secret = newSecret();
    const other = newSecret();
    const handle = await startIdle(
      {},
      { memo: { title: secret }, typedSearchAttributes: new TypedSearchAttributes([{ key: searchAttributes.requestedBy, value: other }]) },
    );

    const findings = await findSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId] });
    expect(findings).toContainEqual(expect.objectContaining({ where: 'memo', workflowId: handle.workflowId, path: 'memo.fields.title.<decoded>', form: 'plain' }));
    expect(findings).toContainEqual(expect.objectContaining({ where: 'history', eventId: 1, path: 'workflowExecutionStartedEventAttributes.memo.fields.title.<decoded>' }));
    expect(findings.some((f) => f.where === 'searchAttributes')).toBe(false);

    const inAttribute = await findSecretLeaks({ secret: other, temporal: t.temporal, workflows: [handle.workflowId] });
    expect(inAttribute).toContainEqual(
      expect.objectContaining({ where: 'searchAttributes', path: 'searchAttributes.indexedFields.RequestedBy.<decoded>', form: 'plain' }),
    );
    expectSafe([...findings, ...inAttribute], secret);
    expectSafe(inAttribute, other);
  });

  it('finds a secret in a termination reason (a failure message of the history)', async () => {
    const secret = newSecret();
    const handle = await startIdle({});
    await handle.terminate(`credential check failed for token ${secret}`);
    open.splice(open.indexOf(handle), 1);

    const findings = await findSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId] });
    const history = await handle.fetchHistory();
    const terminated = history.events?.find((e) => e.workflowExecutionTerminatedEventAttributes);
    expect(findings).toEqual([
      expect.objectContaining({ where: 'history', eventId: Number(terminated?.eventId), path: 'workflowExecutionTerminatedEventAttributes.reason', form: 'plain' }),
    ]);
    expectSafe(findings, secret);
  });

  it('finds a secret held only in base64 (any alignment, either alphabet) or hex form', async () => {
    const secret = newSecret();
    const handle = await startIdle(
      {},
      {
        memo: {
          aligned: base64(secret),
          // One byte before the value: its encoding shares no substring with base64(secret).
          shifted: Buffer.concat([Buffer.from('\xff', 'latin1'), Buffer.from(secret)]).toString('base64url'),
          // Glued to text of the base64 alphabet: the run's 4-character groups start mid-word.
          glued: `auth_${Buffer.from(secret).toString('base64url')}`,
        },
      },
    );
    await handle.signal('rotateCredentials', { token: hex(secret).toUpperCase() });

    const findings = await findSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId] });
    expect(findings.filter((f) => f.form === 'plain')).toEqual([]);
    expect(findings).toContainEqual(expect.objectContaining({ where: 'memo', path: 'memo.fields.aligned.<decoded>', form: 'base64' }));
    expect(findings).toContainEqual(expect.objectContaining({ where: 'memo', path: 'memo.fields.shifted.<decoded>', form: 'base64' }));
    expect(findings).toContainEqual(expect.objectContaining({ where: 'memo', path: 'memo.fields.glued.<decoded>', form: 'base64' }));
    expect(findings).toContainEqual(
      expect.objectContaining({ where: 'history', path: 'workflowExecutionSignaledEventAttributes.input.payloads[0].<decoded>.token', form: 'hex' }),
    );
    expectSafe(findings, secret);
  });

  it('finds a secret in an earlier run of the chain (a run that timed out and was retried)', async () => {
    const secret = newSecret();
    const handle = await t.temporal.workflow.start('auditRetention', {
      taskQueue: idleQueue,
      workflowId: `leak-detector-${randomUUID()}`,
      args: [{ retentionDays: 1 }],
      workflowRunTimeout: '1 second',
      retry: { initialInterval: '1 millisecond', maximumAttempts: 2 },
    });
    open.push(handle);
    await handle.signal('rotateCredentials', { token: secret });
    let latest = handle.firstExecutionRunId;
    for (let i = 0; i < 200 && latest === handle.firstExecutionRunId; i++) {
      await new Promise((r) => setTimeout(r, 50));
      latest = (await handle.describe()).runId;
    }
    expect(latest).not.toBe(handle.firstExecutionRunId);

    // Only the first run was signalled; the scan starts from the latest and walks back.
    const findings = await findSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId] });
    expect(findings).toEqual([
      expect.objectContaining({ runId: handle.firstExecutionRunId, path: 'workflowExecutionSignaledEventAttributes.input.payloads[0].<decoded>.token', form: 'plain' }),
      expect.objectContaining({ runId: handle.firstExecutionRunId, path: 'workflowExecutionSignaledEventAttributes.input.payloads[0].data', form: 'plain' }),
    ]);
    expect(await findSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId], allRuns: false })).toEqual([]);
  });

  it('finds a secret in failure messages, stack traces, encoded attributes and failure details', () => {
    const secret = newSecret();
    // The shape of a failure in a history when failure attributes are encoded, with application details.
    const failure = {
      message: 'Encoded failure',
      encodedAttributes: defaultPayloadConverter.toPayload({ message: 'could not connect', stack_trace: `Error: bad token ${secret}\n    at resolve` }),
      applicationFailureInfo: { type: 'CredentialError', details: { payloads: [defaultPayloadConverter.toPayload({ header: `Bearer ${base64(secret)}` })] } },
      cause: { message: `inner ${hex(secret)}`, stackTrace: '' },
    };
    const findings = findSecretIn(secret, { failure });
    expect(findings).toEqual(
      expect.arrayContaining([
        { path: 'failure.encodedAttributes.<decoded>.stack_trace', form: 'plain' },
        { path: 'failure.applicationFailureInfo.details.payloads[0].<decoded>.header', form: 'base64' },
        { path: 'failure.cause.message', form: 'hex' },
      ]),
    );
    // A key holding the value is reported without being shown.
    expect(findSecretIn(secret, { [secret]: 1 })).toEqual([{ path: '[key]', form: 'plain' }]);
  });

  it("finds a secret in the app's captured log output", async () => {
    const secret = newSecret();
    const res = await t.get('/api/v1/health', { headers: { 'X-Request-Id': secret } });
    expect(res.headers['x-request-id']).toBe(secret);
    for (let i = 0; i < 200 && !logs.text().includes(secret); i++) await new Promise((r) => setTimeout(r, 25));

    const findings = await findSecretLeaks({ secret, logs: logs.lines() });
    expect(findings.length).toBeGreaterThan(0);
    expect(findings).toContainEqual(expect.objectContaining({ where: 'logs', path: expect.stringMatching(/^line \d+\.requestId$/), form: 'plain' }));
    // Plain text output is scanned line by line.
    expect(await findSecretLeaks({ secret, logs: `starting\nconnecting with ${base64(secret)}\n` })).toEqual([{ where: 'logs', path: 'line 2', form: 'base64' }]);
    expectSafe(findings, secret);
  });

  it('finds a secret in job events and job rows', async () => {
    const secret = newSecret();
    const id = randomUUID();
    await Job.create({ id, tenantId, projectId: null, kind: 'deleteProject', workflowId: `leak-detector-job-${id}`, title: 'leak check', requestedBy: 'system', params: { ref: 'secret://git-token' } });
    await recordJobEvent(t.sequelize, id, { type: 'progress', stage: 'checking', data: { detail: `resolved ${secret}` } });
    await recordJobEvent(t.sequelize, id, { type: 'failed', status: 'failed', error: { message: `rejected token ${hex(secret)}` } });

    // The job's workflow never started: it is skipped, not an error.
    const report = await scanForSecret({ secret, temporal: t.temporal, jobIds: [id] });
    expect(report.scanned).toEqual(expect.objectContaining({ jobs: 1, jobEvents: 2, runs: 0 }));
    expect(report.findings).toEqual(
      expect.arrayContaining([
        { where: 'jobEvents', jobId: id, seq: 1, path: 'data.detail', form: 'plain' },
        { where: 'jobEvents', jobId: id, seq: 2, path: 'data.error.message', form: 'hex' },
        { where: 'jobs', jobId: id, path: 'error.message', form: 'hex' },
      ]),
    );
    expectSafe(report.findings, secret);
  });

  it('finds nothing for a secret that is not there, in places that hold another value', async () => {
    const secret = newSecret();
    const other = newSecret();
    const handle = await startIdle({ note: other }, { memo: { title: other, b64: base64(other) } });
    await handle.signal('rotateCredentials', { token: hex(other) });
    await handle.terminate(`done with ${other}`);
    open.splice(open.indexOf(handle), 1);
    const id = randomUUID();
    await Job.create({ id, tenantId, projectId: null, kind: 'deleteProject', workflowId: handle.workflowId, title: other, requestedBy: 'system', params: { other } });
    await recordJobEvent(t.sequelize, id, { type: 'progress', data: { detail: other } });
    const lines = [...logs.lines(), `{"msg":"resolved","detail":"${other}"}`];

    const report = await scanForSecret({ secret, temporal: t.temporal, workflows: [handle.workflowId], logs: lines, jobIds: [id] });
    expect(report.findings).toEqual([]);
    // Everything was read: the job's workflow is the same one, scanned once.
    expect(report.scanned).toEqual(expect.objectContaining({ runs: 1, jobs: 1, jobEvents: 1, logLines: lines.length }));
    expect(report.scanned.historyEvents).toBeGreaterThanOrEqual(3);
    await expect(expectNoSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId], logs: lines, jobIds: [id] })).resolves.toBeDefined();

    // The control is not vacuous: the value that is there is found in every place.
    const found = await findSecretLeaks({ secret: other, temporal: t.temporal, workflows: [handle.workflowId], logs: lines, jobIds: [id] });
    expect([...new Set(found.map((f) => f.where))]).toEqual(expect.arrayContaining(['history', 'memo', 'logs', 'jobs', 'jobEvents']));
  });

  it('expectNoSecretLeaks fails listing the places, never the value', async () => {
    const secret = newSecret();
    const handle = await startIdle({ note: secret });
    const error = await expectNoSecretLeaks({ secret, temporal: t.temporal, workflows: [handle.workflowId], logs: [`token=${hex(secret)}`] }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(error?.message).toMatch(/^secret leaked in \d+ place\(s\):/);
    expect(error?.message).toContain(`history (workflow ${handle.workflowId}, run ${handle.firstExecutionRunId}, event 1): workflowExecutionStartedEventAttributes.input`);
    expect(error?.message).toContain('logs: line 1 [hex]');
    for (const form of [secret, base64(secret), hex(secret)]) expect(error?.message).not.toContain(form);
  });

  it('refuses values too short to look for and unknown workflows', async () => {
    await expect(findSecretLeaks({ secret: 'abc' })).rejects.toThrow('at least 8 bytes');
    await expect(findSecretLeaks({ secret: newSecret(), temporal: t.temporal, workflows: [`leak-detector-missing-${randomUUID()}`] })).rejects.toThrow();
  });
});
