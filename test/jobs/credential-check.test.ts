import { randomBytes } from 'node:crypto';
import { Job, JobEvent, SecretVersion } from '../../db';
import type { CredentialCheckResult, SecretReferenceVerdict } from '../../workflows/definitions';
import { registerTenant, type Member, type TestApp } from '../harness';
import { addMember } from '../harness/members';
import {
  blockedOn,
  createProject,
  createSecrets,
  eventTypes,
  holdDeletionRunning,
  isFinished,
  lockSecretRow,
  runCredentialCheck,
  startJobsSuite,
  waitForJob,
  type JobBody,
  type JobsSuite,
  type RunningWorker,
} from './job-helpers';

/*
 * POST /projects/:id/credential-checks: a job that resolves every secret reference of a
 * project's settings inside an activity and reports a verdict per reference (never a value).
 * A check is held running by a row lock on one of its secrets (the resolution's access-log
 * insert waits for it), so cancellation is deterministic.
 */

let suite: JobsSuite | undefined;
let t: TestApp;
let worker: RunningWorker;
let admin: Member;

beforeAll(async () => {
  suite = await startJobsSuite('credential-check');
  ({ t, worker, admin } = suite);
});
afterAll(() => suite?.stop());

const checkPath = (projectId: string) => `/api/v1/projects/${projectId}/credential-checks`;

/** The verdicts on the job's `completed` event. */
async function verdictsOf(jobId: string): Promise<SecretReferenceVerdict[]> {
  const completed = await JobEvent.findOne({ where: { jobId, type: 'completed' }, rejectOnEmpty: true });
  return (completed.data as { verdicts: SecretReferenceVerdict[] }).verdicts;
}

/** Starts a check as the admin; expects 202. */
async function startCheck(projectId: string): Promise<JobBody> {
  const res = await t.post(checkPath(projectId), undefined, { token: admin.accessToken });
  expect(res.status).toBe(202);
  return res.body as JobBody;
}

describe('a credential check', () => {
  test('resolves each reference inside its activity, completes with counters and verdicts, and logs every resolution with the job and activity', async () => {
    const { job, project, secrets, missingReference, secretValues, workflowId } = await runCredentialCheck(t, admin);
    const [ciToken, llmKey] = secrets;
    if (!ciToken || !llmKey) throw new Error('unreachable');

    expect(job).toMatchObject({
      kind: 'checkProjectCredentials',
      title: `Check credentials of “${project.name}”`,
      projectId: project.id,
      status: 'completed',
      counters: { references: 3, ok: 2, missing: 1, malformed: 0 },
      error: null,
      requestedBy: `user:${admin.userId}`,
    });
    expect(workflowId).toBe(`checkProjectCredentials-${job.id}`);

    // Sorted by reference; new secrets are at version 1 and less than a day old.
    const expected = ([
      { reference: ciToken.reference, status: 'ok', version: 1, ageDays: 0 },
      { reference: llmKey.reference, status: 'ok', version: 1, ageDays: 0 },
      { reference: missingReference, status: 'missing' },
    ] satisfies SecretReferenceVerdict[]).sort((a, b) => (a.reference < b.reference ? -1 : 1));
    expect(await verdictsOf(job.id)).toEqual(expected);
    const result = (await t.temporal.workflow.getHandle(workflowId).result()) as CredentialCheckResult;
    expect(result).toEqual({ counters: job.counters, verdicts: expected });
    expect(await eventTypes(job.id)).toEqual(['queued', 'running', 'progress', 'progress', 'progress', 'completed']);

    for (const secret of secrets) {
      const log = await t.get(`/api/v1/secrets/${secret.id}/access-log`, { token: admin.accessToken });
      expect(log.status).toBe(200);
      expect(log.body.items).toEqual([expect.objectContaining({ version: 1, jobId: job.id, activity: 'checkSecretReference', actor: null })]);
    }

    // The thorough search (history, logs, encodings) is the leak detector's; the job's own record holds no value.
    const events = JSON.stringify(await JobEvent.findAll({ where: { jobId: job.id } }));
    for (const value of secretValues) expect(events).not.toContain(value);
  });

  test('reports the current version after a rotation, and a malformed reference without resolving anything', async () => {
    const [secret] = await createSecrets(t, admin, ['rotated']);
    if (!secret) throw new Error('unreachable');
    expect((await t.post(`/api/v1/secrets/${secret.id}/rotate`, { value: `${secret.value}-2` }, { token: admin.accessToken })).status).toBe(200);
    const project = await createProject(t, admin.accessToken, 'mixed', { list: [secret.reference, 'secret://Not A Name'], note: `see ${secret.reference}` });

    const done = await waitForJob(t, admin.accessToken, (await startCheck(project.id)).id, isFinished);
    expect(done).toMatchObject({ status: 'completed', counters: { references: 2, ok: 1, missing: 0, malformed: 1 } });
    // A reference inside a longer string is prose, not a reference: only the list's two count.
    expect(await verdictsOf(done.id)).toEqual([
      { reference: 'secret://Not A Name', status: 'malformed' },
      { reference: secret.reference, status: 'ok', version: 2, ageDays: 0 },
    ]);
  });

  test('a project without references completes with zero counters', async () => {
    const project = await createProject(t, admin.accessToken, 'plain', { branch: 'main' });
    const done = await waitForJob(t, admin.accessToken, (await startCheck(project.id)).id, isFinished);
    expect(done).toMatchObject({ status: 'completed', counters: { references: 0, ok: 0, missing: 0, malformed: 0 } });
    expect(await verdictsOf(done.id)).toEqual([]);
  });

  test('an Idempotency-Key returns the same job', async () => {
    const project = await createProject(t, admin.accessToken, 'idempotent');
    const first = await t.post(checkPath(project.id), undefined, { token: admin.accessToken, headers: { 'Idempotency-Key': `check-${project.id}` } });
    const again = await t.post(checkPath(project.id), undefined, { token: admin.accessToken, headers: { 'Idempotency-Key': `check-${project.id}` } });
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.body.id).toBe(first.body.id);
    expect(await Job.count({ where: { projectId: project.id } })).toBe(1);
    await waitForJob(t, admin.accessToken, first.body.id, isFinished);
  });
});

describe('who and what may be checked', () => {
  test('a viewer gets 403, a member may check', async () => {
    const project = await createProject(t, admin.accessToken, 'roles');
    const viewer = await addMember(t, admin.tenantId, 'viewer');
    const member = await addMember(t, admin.tenantId, 'member');
    const denied = await t.post(checkPath(project.id), undefined, { token: viewer.accessToken });
    expect(denied.status).toBe(403);
    expect(denied.body.type).toBe('/problems/forbidden');
    expect(await Job.count({ where: { projectId: project.id } })).toBe(0);

    const allowed = await t.post(checkPath(project.id), undefined, { token: member.accessToken });
    expect(allowed.status).toBe(202);
    expect((await waitForJob(t, admin.accessToken, allowed.body.id, isFinished)).status).toBe('completed');
  });

  test("another tenant's project, an unknown one and one being deleted are not found (404), and no job starts", async () => {
    const outsider = await registerTenant(t, 'credential-check-outsider');
    const theirs = await createProject(t, outsider.accessToken, 'theirs');
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      for (const projectId of [theirs.id, '00000000-0000-4000-8000-000000000000', held.project.id]) {
        const res = await t.post(checkPath(projectId), undefined, { token: admin.accessToken });
        expect(res.status).toBe(404);
        expect(res.body.type).toBe('/problems/not-found');
      }
      expect(await Job.count({ where: { projectId: theirs.id } })).toBe(0);
      expect(await Job.count({ where: { projectId: held.project.id, kind: 'checkProjectCredentials' } })).toBe(0);
    } finally {
      await held.lock.release();
    }
    await waitForJob(t, admin.accessToken, held.job.id, isFinished);
  });
});

describe('control', () => {
  test('a running check is cancelled through the API; its retry (the generic one) runs to completion', async () => {
    const [secret] = await createSecrets(t, admin, ['held']);
    if (!secret) throw new Error('unreachable');
    const project = await createProject(t, admin.accessToken, 'cancelled', { token: secret.reference });
    const lock = await lockSecretRow(secret.id);
    let started: JobBody;
    try {
      started = await startCheck(project.id);
      await blockedOn(t, lock);
      await waitForJob(t, admin.accessToken, started.id, (j) => j.status === 'running', 'the check to run');
      // A project with a running check cannot be deleted (the rule for every job of a project).
      expect((await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(409);

      expect((await t.post(`/api/v1/jobs/${started.id}/cancel`, undefined, { token: admin.accessToken })).status).toBe(202);
      const cancelled = await waitForJob(t, admin.accessToken, started.id, isFinished);
      expect(cancelled).toMatchObject({ status: 'cancelled', counters: { references: 1, ok: 0 } });
      expect(await eventTypes(started.id)).toEqual(['queued', 'running', 'cancel_requested', 'cancelled']);
    } finally {
      await lock.release();
    }

    const res = await t.post(`/api/v1/jobs/${started.id}/retry`, undefined, { token: admin.accessToken });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ kind: 'checkProjectCredentials', projectId: project.id, retryOf: started.id, title: `Check credentials of “${project.name}”` });
    const retried = await waitForJob(t, admin.accessToken, res.body.id, isFinished);
    expect(retried).toMatchObject({ status: 'completed', counters: { references: 1, ok: 1, missing: 0, malformed: 0 } });
  });

  test('tampered ciphertext fails the check at once (not retried), naming no value; once repaired, a retry completes', async () => {
    const [secret] = await createSecrets(t, admin, ['tampered']);
    if (!secret) throw new Error('unreachable');
    const project = await createProject(t, admin.accessToken, 'tampered', { token: secret.reference });
    const stored = await SecretVersion.findOne({ where: { secretId: secret.id, version: 1 }, rejectOnEmpty: true });
    const authTag = stored.authTag;
    await SecretVersion.update({ authTag: randomBytes(authTag.length) }, { where: { secretId: secret.id, version: 1 } });

    const started = await startCheck(project.id);
    const failed = await waitForJob(t, admin.accessToken, started.id, isFinished);
    expect(failed).toMatchObject({ status: 'failed', error: { message: expect.stringMatching(/failed authentication/) } });
    expect(failed.error?.message).not.toContain(secret.value);
    const attempts = worker.activityRuns.filter((r) => r.workflowId === started.workflowId && r.type === 'checkSecretReference');
    expect(attempts.map((r) => r.outcome)).toEqual(['failed']);

    await SecretVersion.update({ authTag }, { where: { secretId: secret.id, version: 1 } });
    const res = await t.post(`/api/v1/jobs/${started.id}/retry`, undefined, { token: admin.accessToken });
    expect(res.status).toBe(202);
    expect(await waitForJob(t, admin.accessToken, res.body.id, isFinished)).toMatchObject({ status: 'completed', retryOf: started.id, counters: { ok: 1 } });
  });
});
