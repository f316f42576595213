import { randomUUID } from 'node:crypto';
import { AuditLog, Job } from '../../db';
import { registerTenant, type Member, type TestApp } from '../harness';
import { addMember, type TenantMember } from '../harness/members';
import {
  backendsBlockedBy,
  createProject,
  eventTypes,
  holdDeletionRunning,
  isFinished,
  startJobsSuite,
  waitForJob,
  waitUntil,
  type HeldDeletion,
  type JobBody,
  type JobsSuite,
  type RunningWorker,
} from './job-helpers';

/*
 * Controlling jobs: POST /jobs/:id/cancel stops a running deletion (its cleanup puts the project
 * back), POST /jobs/:id/retry starts a failed or cancelled job again as a new, linked job. A
 * deletion is held running by a row lock on the project's data, so every step is deterministic.
 */

let suite: JobsSuite | undefined;
let t: TestApp;
let worker: RunningWorker;
let admin: Member;
let viewer: TenantMember;
let member: TenantMember;

beforeAll(async () => {
  suite = await startJobsSuite('jobs-control');
  ({ t, worker, admin } = suite);
  viewer = await addMember(t, admin.tenantId, 'viewer');
  member = await addMember(t, admin.tenantId, 'member');
});
afterAll(() => suite?.stop());

/** Whether the workflow's history shows the server asking a running activity to stop. */
async function activityCancelRequested(workflowId: string): Promise<boolean> {
  const history = await t.temporal.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).some((e) => e.activityTaskCancelRequestedEventAttributes != null);
}

/** A deletion held in its first batch, cancelled through the API; resolves once it ended cancelled. */
async function cancelledDeletion(): Promise<HeldDeletion & { cancelled: JobBody }> {
  const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
  try {
    const res = await t.post(`/api/v1/jobs/${held.job.id}/cancel`, undefined, { token: member.accessToken });
    expect(res.status).toBe(202);
    const cancelled = await waitForJob(t, admin.accessToken, held.job.id, isFinished);
    return { ...held, cancelled };
  } finally {
    await held.lock.release();
  }
}

describe('cancelling: POST /api/v1/jobs/:id/cancel', () => {
  test('a running deletion answers 202; cleanup shows the project again, the job ends cancelled, and the waiting batch learns of it and rolls back', async () => {
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      expect((await t.get(`/api/v1/projects/${held.project.id}`, { token: admin.accessToken })).status).toBe(404);

      const res = await t.post(`/api/v1/jobs/${held.job.id}/cancel`, undefined, { token: member.accessToken });
      expect(res.status).toBe(202);
      // Requested, not done yet: the workflow hears of it after the answer's row was read.
      expect(res.body).toMatchObject({ id: held.job.id, kind: 'deleteProject', status: 'running' });

      // The batch is still blocked in Postgres: cleanup does not wait for it.
      const done = await waitForJob(t, admin.accessToken, held.job.id, isFinished);
      expect(done).toMatchObject({ status: 'cancelled', error: null, progress: null });
      expect(done.finishedAt).not.toBeNull();
      expect(await backendsBlockedBy(t.sequelize, held.lock.pid)).toBeGreaterThan(0);
      expect(await activityCancelRequested(held.job.workflowId)).toBe(true);
      // The row is closed by the workflow's last activity, just before the workflow itself closes.
      await waitUntil('the workflow closed as cancelled', async () => (await t.temporal.workflow.getHandle(held.job.workflowId).describe()).status.name === 'CANCELLED');

      const project = await t.get(`/api/v1/projects/${held.project.id}`, { token: admin.accessToken });
      expect(project.status).toBe(200);
      expect(project.body.name).toBe(held.project.name);

      expect(await eventTypes(held.job.id)).toEqual(['queued', 'running', 'cancel_requested', 'cancelled']);
      expect(await AuditLog.count({ where: { action: 'job.cancel', resourceId: held.job.id, actorId: member.userId } })).toBe(1);

      // The waiting batch heartbeats: the cancellation reaches it there, and it rolls back once free.
      const batch = await waitUntil('the cancellation reached the batch activity', () =>
        Promise.resolve(worker.activityRuns.find((r) => r.workflowId === held.job.workflowId && r.type === 'deleteProjectDataBatch' && r.cancelled)),
      );
      await held.lock.release();
      await waitUntil('the cancelled batch ended', () => Promise.resolve(batch.outcome));
      expect(batch.outcome).toBe('failed');
      const data = await t.get(`/api/v1/jobs?projectId=${held.project.id}&status=completed`, { token: admin.accessToken });
      expect(data.body.items).toHaveLength(3); // every seeded job is still there
    } finally {
      await held.lock.release();
    }
  });

  test('a finished job cannot be cancelled: 409', async () => {
    const { cancelled } = await cancelledDeletion();
    const again = await t.post(`/api/v1/jobs/${cancelled.id}/cancel`, undefined, { token: admin.accessToken });
    expect(again.status).toBe(409);
    expect(again.body.type).toBe('/problems/conflict');
  });
});

describe('retrying: POST /api/v1/jobs/:id/retry', () => {
  test('a cancelled deletion starts again as a new job linked to it (retryOf), which completes', async () => {
    const { cancelled, project } = await cancelledDeletion();

    const res = await t.post(`/api/v1/jobs/${cancelled.id}/retry`, undefined, { token: member.accessToken });
    expect(res.status).toBe(202);
    const retry = res.body as JobBody;
    expect(res.headers.location).toBe(`/api/v1/jobs/${retry.id}`);
    expect(retry).toMatchObject({ kind: 'deleteProject', projectId: project.id, retryOf: cancelled.id, requestedBy: `user:${member.userId}` });
    expect(retry.id).not.toBe(cancelled.id);
    expect(retry.workflowId).not.toBe(cancelled.workflowId);
    // The retry hides the project again at once.
    expect((await t.get(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(404);

    const done = await waitForJob(t, admin.accessToken, retry.id, isFinished);
    expect(done).toMatchObject({ status: 'completed', retryOf: cancelled.id });
    expect((await t.get(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(404);
    // The project's data is gone; both attempts are kept, unchanged: the chain stays readable.
    const left = await Job.findAll({ where: { projectId: project.id }, order: [['createdAt', 'ASC']] });
    expect(left.map((j) => [j.id, j.status])).toEqual([
      [cancelled.id, 'cancelled'],
      [retry.id, 'completed'],
    ]);
    const old = await t.get(`/api/v1/jobs/${cancelled.id}`, { token: admin.accessToken });
    expect(old.status).toBe(200);
    expect(old.body.status).toBe('cancelled');
  });

  test('a completed or a running job cannot be retried: 409', async () => {
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      const running = await t.post(`/api/v1/jobs/${held.job.id}/retry`, undefined, { token: admin.accessToken });
      expect(running.status).toBe(409);
      expect(running.body.type).toBe('/problems/conflict');
      expect(running.body.detail).toMatch(/running/);
    } finally {
      await held.lock.release();
    }
    const completed = await waitForJob(t, admin.accessToken, held.job.id, isFinished);
    expect(completed.status).toBe('completed');
    const res = await t.post(`/api/v1/jobs/${held.job.id}/retry`, undefined, { token: admin.accessToken });
    expect(res.status).toBe(409);
    expect(res.body.detail).toMatch(/completed/);
    expect(await Job.count({ where: { retryOf: held.job.id } })).toBe(0);
  });
});

describe('who may control jobs', () => {
  test('a viewer may read jobs but not cancel, retry or delete (403); nothing changes', async () => {
    const { cancelled } = await cancelledDeletion();
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      expect((await t.get(`/api/v1/jobs/${held.job.id}`, { token: viewer.accessToken })).status).toBe(200);
      expect((await t.get('/api/v1/jobs', { token: viewer.accessToken })).status).toBe(200);

      const cancel = await t.post(`/api/v1/jobs/${held.job.id}/cancel`, undefined, { token: viewer.accessToken });
      const retry = await t.post(`/api/v1/jobs/${cancelled.id}/retry`, undefined, { token: viewer.accessToken });
      const project = await createProject(t, admin.accessToken);
      const del = await t.delete(`/api/v1/projects/${project.id}`, { token: viewer.accessToken });
      for (const res of [cancel, retry, del]) {
        expect(res.status).toBe(403);
        expect(res.body.type).toBe('/problems/forbidden');
      }

      expect((await t.get(`/api/v1/jobs/${held.job.id}`, { token: admin.accessToken })).body.status).toBe('running');
      expect(await Job.count({ where: { retryOf: cancelled.id } })).toBe(0);
      expect((await t.get(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(200);
    } finally {
      await held.lock.release();
    }
    await waitForJob(t, admin.accessToken, held.job.id, isFinished);
  });

  test('another tenant\'s job is not found: get, its events, cancel and retry answer 404 and leave it alone', async () => {
    const outsider = await registerTenant(t, 'jobs-control-outsider');
    const { cancelled } = await cancelledDeletion();
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      const answers = [
        await t.get(`/api/v1/jobs/${held.job.id}`, { token: outsider.accessToken }),
        await t.get(`/api/v1/jobs/${held.job.id}/events`, { token: outsider.accessToken }),
        await t.post(`/api/v1/jobs/${held.job.id}/cancel`, undefined, { token: outsider.accessToken }),
        await t.post(`/api/v1/jobs/${cancelled.id}/retry`, undefined, { token: outsider.accessToken }),
        await t.post(`/api/v1/jobs/${randomUUID()}/cancel`, undefined, { token: admin.accessToken }),
      ];
      for (const res of answers) {
        expect(res.status).toBe(404);
        expect(res.body.type).toBe('/problems/not-found');
      }
      expect((await t.get(`/api/v1/jobs/${held.job.id}`, { token: admin.accessToken })).body.status).toBe('running');
      expect(await eventTypes(held.job.id)).not.toContain('cancel_requested');
      expect(await Job.count({ where: { retryOf: cancelled.id } })).toBe(0);
    } finally {
      await held.lock.release();
    }
    await waitForJob(t, admin.accessToken, held.job.id, isFinished);
  });
});
