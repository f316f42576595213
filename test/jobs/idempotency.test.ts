import { randomUUID } from 'node:crypto';
import { AuditLog, IdempotencyKey, Job } from '../../db';
import { purgeExpiredIdempotencyKeys } from '../../services/jobs';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';
import { createProject, waitForJob, type JobBody } from './job-helpers';

/*
 * Idempotency-Key on the routes that start jobs (scope: tenant + route, kept 24 hours): a client
 * that repeats a request, after a timeout or concurrently, gets the job the first one started.
 * No worker runs here: started jobs stay queued, so a repeated answer is identical to the first.
 */

let t: TestApp;
let admin: Member;

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'idempotency');
});
afterAll(() => t?.close());

const newKey = () => `key-${randomUUID()}`;

function deleteProject(projectId: string, key: string, token = admin.accessToken): Promise<TestResponse> {
  return t.delete(`/api/v1/projects/${projectId}`, { token, headers: { 'Idempotency-Key': key } });
}

function retryJob(jobId: string, key: string, token = admin.accessToken): Promise<TestResponse> {
  return t.post(`/api/v1/jobs/${jobId}/retry`, undefined, { token, headers: { 'Idempotency-Key': key } });
}

/** A deletion job whose workflow an operator terminated: failed, so it may be retried. */
async function failedDeletion(): Promise<JobBody> {
  const project = await createProject(t, admin.accessToken);
  const job = (await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).body as JobBody;
  await t.temporal.workflow.getHandle(job.workflowId).terminate('operator');
  return waitForJob(t, admin.accessToken, job.id, (j) => j.status === 'failed');
}

describe('Idempotency-Key on DELETE /api/v1/projects/:id', () => {
  test('repeating a request with its key answers the same 202 and job: one job, one workflow', async () => {
    const project = await createProject(t, admin.accessToken);
    const key = newKey();

    const first = await deleteProject(project.id, key);
    expect(first.status).toBe(202);
    const again = await deleteProject(project.id, key);
    expect(again.status).toBe(202);
    expect(again.headers.location).toBe(first.headers.location);
    expect(again.body).toEqual(first.body);

    expect(await Job.count({ where: { projectId: project.id } })).toBe(1);
    expect(await AuditLog.count({ where: { action: 'job.start', tenantId: admin.tenantId, resourceId: first.body.id } })).toBe(1);
    const described = await t.temporal.workflow.getHandle(first.body.workflowId).describe();
    expect(described.status.name).toBe('RUNNING');
  });

  test('without a key, repeating the request is refused: the project is already being deleted', async () => {
    const project = await createProject(t, admin.accessToken);
    expect((await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(202);
    expect((await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(404);
  });

  test('the same key for a different request is refused with 422 idempotency-key-reused, and starts nothing', async () => {
    const [first, second] = [await createProject(t, admin.accessToken), await createProject(t, admin.accessToken)];
    const key = newKey();
    expect((await deleteProject(first.id, key)).status).toBe(202);

    const reused = await deleteProject(second.id, key);
    expect(reused.status).toBe(422);
    expect(reused.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(reused.body).toMatchObject({ type: '/problems/idempotency-key-reused', status: 422 });
    expect(await Job.count({ where: { projectId: second.id } })).toBe(0);
    expect((await t.get(`/api/v1/projects/${second.id}`, { token: admin.accessToken })).status).toBe(200);
  });

  test('concurrent requests with one key start one job, and all get it', async () => {
    const project = await createProject(t, admin.accessToken);
    const key = newKey();

    const answers = await Promise.all(Array.from({ length: 4 }, () => deleteProject(project.id, key)));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202]);
    expect(new Set(answers.map((a) => a.body.id)).size).toBe(1);
    expect(await Job.count({ where: { projectId: project.id } })).toBe(1);
  });

  test('a key belongs to its tenant: another tenant may use the same key', async () => {
    const other = await registerTenant(t, 'idempotency-other');
    const key = newKey();
    const mine = await deleteProject((await createProject(t, admin.accessToken)).id, key);
    const theirs = await deleteProject((await createProject(t, other.accessToken)).id, key, other.accessToken);

    expect([mine.status, theirs.status]).toEqual([202, 202]);
    expect(theirs.body.id).not.toBe(mine.body.id);
    expect((await t.get(`/api/v1/jobs/${theirs.body.id}`, { token: admin.accessToken })).status).toBe(404);
  });

  test('a key is kept 24 hours: a day later it may be used for another request', async () => {
    const [first, second, third] = [await createProject(t, admin.accessToken), await createProject(t, admin.accessToken), await createProject(t, admin.accessToken)];
    const key = newKey();
    const started = await deleteProject(first.id, key);
    const backdate = (hours: number) =>
      IdempotencyKey.update({ createdAt: new Date(Date.now() - hours * 60 * 60 * 1000) }, { where: { tenantId: admin.tenantId, key } });

    await backdate(23);
    expect((await deleteProject(first.id, key)).body.id).toBe(started.body.id);
    expect((await deleteProject(second.id, key)).status).toBe(422);

    await backdate(25);
    const reused = await deleteProject(third.id, key);
    expect(reused.status).toBe(202);
    expect(reused.body.id).not.toBe(started.body.id);
    expect(reused.body.projectId).toBe(third.id);
  });

  test('keys past their 24 hours are purged by the reconciliation sweep; younger ones stay', async () => {
    const [young, old] = [await createProject(t, admin.accessToken), await createProject(t, admin.accessToken)];
    const [youngKey, oldKey] = [newKey(), newKey()];
    await deleteProject(young.id, youngKey);
    await deleteProject(old.id, oldKey);
    await IdempotencyKey.update({ createdAt: new Date(Date.now() - 25 * 60 * 60 * 1000) }, { where: { tenantId: admin.tenantId, key: oldKey } });

    expect(await purgeExpiredIdempotencyKeys()).toBeGreaterThanOrEqual(1);
    const left = await IdempotencyKey.findAll({ where: { tenantId: admin.tenantId, key: [youngKey, oldKey] } });
    expect(left.map((k) => k.key)).toEqual([youngKey]);
  });

  test('an invalid key is a 400 validation problem, and nothing starts', async () => {
    const project = await createProject(t, admin.accessToken);
    for (const key of ['has a space', 'x'.repeat(256), '']) {
      const res = await deleteProject(project.id, key);
      expect({ key, status: res.status, type: res.body.type }).toEqual({ key, status: 400, type: '/problems/validation-error' });
      expect(res.body.errors).toEqual([expect.objectContaining({ path: 'header.Idempotency-Key' })]);
    }
    expect(await Job.count({ where: { projectId: project.id } })).toBe(0);
    expect((await t.get(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(200);
    // 255 printable characters is the longest valid key.
    expect((await deleteProject(project.id, '~'.repeat(255))).status).toBe(202);
  });
});

describe('Idempotency-Key on POST /api/v1/jobs/:id/retry', () => {
  test('a repeated retry answers the retry it started; the key is scoped to the route, so a deletion\'s key is free here', async () => {
    const failed = await failedDeletion();
    // The key that started some deletion does not collide with a retry on another route.
    const key = newKey();
    expect((await deleteProject((await createProject(t, admin.accessToken)).id, key)).status).toBe(202);

    const first = await retryJob(failed.id, key);
    expect(first.status).toBe(202);
    expect(first.body.retryOf).toBe(failed.id);
    const again = await retryJob(failed.id, key);
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(await Job.count({ where: { retryOf: failed.id } })).toBe(1);

    const other = await failedDeletion();
    const reused = await retryJob(other.id, key);
    expect(reused.status).toBe(422);
    expect(reused.body.type).toBe('/problems/idempotency-key-reused');
    expect(await Job.count({ where: { retryOf: other.id } })).toBe(0);
  });
});
