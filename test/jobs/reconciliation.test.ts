import { randomUUID } from 'node:crypto';
import { Op } from 'sequelize';
import { Job, JobEvent, Project } from '../../db';
import { reconcileOpenJobs, type JobsDeps } from '../../services/jobs';
import { registerTenant, type Member, type TestApp } from '../harness';
import { createProject, holdDeletionRunning, isFinished, startJobsSuite, waitForJob, type JobsSuite } from './job-helpers';

/*
 * Job rows follow their workflows even when a workflow ends behind the API's back (terminated
 * from the Web UI or the CLI) or never starts (the API died between the commit and the start):
 * the next read notices, and so does the periodic sweep for jobs nobody reads.
 */

let suite: JobsSuite | undefined;
let t: TestApp;
let admin: Member;
let deps: JobsDeps;

beforeAll(async () => {
  suite = await startJobsSuite('jobs-reconcile');
  ({ t, admin } = suite);
  deps = { sequelize: t.sequelize, temporal: t.temporal, config: t.config };
});
afterAll(() => suite?.stop());

const terminate = (workflowId: string) => t.temporal.workflow.getHandle(workflowId).terminate('operator');

const minutes = (n: number) => n * 60 * 1000;

/**
 * Moves a job's last update (and, with `created`, its creation) into the past. The sweeps here
 * only take jobs idle for half an hour: the jobs of suites running alongside are never theirs.
 */
const age = (id: string, by: { updated: number; created?: number }) =>
  t.sequelize.query('UPDATE jobs SET updated_at = updated_at - make_interval(secs => :u), created_at = created_at - make_interval(secs => :c) WHERE id = :id', {
    replacements: { id, u: by.updated / 1000, c: (by.created ?? 0) / 1000 },
  });

/** The sweep as the schedule runs it: the reconcileJobs workflow, on this suite's worker. */
const sweep = (idleSeconds: number) =>
  t.temporal.workflow.execute('reconcileJobs', { taskQueue: t.config.TEMPORAL_TASK_QUEUE, workflowId: `reconcile-${randomUUID()}`, args: [idleSeconds] }) as Promise<{ closed: number }>;

describe('a workflow terminated outside the API', () => {
  test('is reported on the next GET: the job failed, and the error says it was terminated; a retry then completes', async () => {
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      await terminate(held.job.workflowId);

      const res = await t.get(`/api/v1/jobs/${held.job.id}`, { token: admin.accessToken });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'failed', progress: null });
      expect(res.body.error.message).toMatch(/terminated/);
      expect(res.body.finishedAt).not.toBeNull();
      const last = await JobEvent.findOne({ where: { jobId: held.job.id }, order: [['seq', 'DESC']] });
      expect(last).toMatchObject({ type: 'failed', data: expect.objectContaining({ reconciled: true, workflowStatus: 'TERMINATED' }) });

      // The project stays hidden by the failed deletion until it is retried.
      expect((await t.get(`/api/v1/projects/${held.project.id}`, { token: admin.accessToken })).status).toBe(404);
      const retry = await t.post(`/api/v1/jobs/${held.job.id}/retry`, undefined, { token: admin.accessToken });
      expect(retry.status).toBe(202);
      expect(retry.body.retryOf).toBe(held.job.id);
      await held.lock.release();
      const done = await waitForJob(t, admin.accessToken, retry.body.id, isFinished);
      expect(done).toMatchObject({ status: 'completed', retryOf: held.job.id });
      expect(await Project.findByPk(held.project.id)).toBeNull();
    } finally {
      await held.lock.release();
    }
  });

  test('is closed by the periodic sweep, once idle for the sweep\'s threshold, without anyone reading it', async () => {
    const held = await holdDeletionRunning(t, admin.accessToken, admin.tenantId);
    try {
      await terminate(held.job.workflowId);
      expect((await Job.findByPk(held.job.id))?.status).toBe('running');

      // Touched a moment ago: a sweep of jobs idle for half an hour leaves it for later.
      await reconcileOpenJobs(deps, minutes(30));
      expect((await Job.findByPk(held.job.id))?.status).toBe('running');

      await age(held.job.id, { updated: minutes(60) });
      const result = await sweep(30 * 60);
      expect(result.closed).toBeGreaterThanOrEqual(1);
      const job = await Job.findByPk(held.job.id, { rejectOnEmpty: true });
      expect(job.status).toBe('failed');
      expect(job.error?.message).toMatch(/terminated/);

      // No job of the tenant is left open for a workflow that has closed.
      const open = await Job.findAll({ where: { tenantId: admin.tenantId, status: { [Op.in]: ['queued', 'running'] } } });
      for (const j of open) {
        expect((await t.temporal.workflow.getHandle(j.workflowId).describe()).status.name).toBe('RUNNING');
      }
    } finally {
      await held.lock.release();
    }
  });
});

describe('a job whose workflow never started', () => {
  // A tenant of its own: the jobs of the other tenant all have workflows, and the test above checks so.
  let owner: Member;
  beforeAll(async () => {
    owner = await registerTenant(t, 'jobs-orphans');
  });

  /** What an API that died between its commit and the workflow start leaves behind: a queued row hiding its project. */
  async function orphanedDeletion() {
    const project = await createProject(t, owner.accessToken, 'orphaned');
    const id = randomUUID();
    const job = await Job.create({ id, tenantId: owner.tenantId, projectId: project.id, kind: 'deleteProject', workflowId: `deleteProject-${id}`, title: 'Delete project', requestedBy: `user:${owner.userId}` });
    await Project.update({ deletionJobId: id }, { where: { id: project.id } });
    return { project, job };
  }

  test('is left queued for a minute\'s grace, then closed as failed by the sweep; a retry runs it', async () => {
    const { project, job } = await orphanedDeletion();

    // Created a moment ago: its workflow may still be on its way, however long the row sat idle.
    expect((await t.get(`/api/v1/jobs/${job.id}`, { token: owner.accessToken })).body.status).toBe('queued');
    await age(job.id, { updated: minutes(60) });
    await reconcileOpenJobs(deps, minutes(30));
    expect((await Job.findByPk(job.id))?.status).toBe('queued');

    await age(job.id, { updated: 0, created: minutes(2) });
    await reconcileOpenJobs(deps, minutes(30));
    const closed = await t.get(`/api/v1/jobs/${job.id}`, { token: owner.accessToken });
    expect(closed.body).toMatchObject({ status: 'failed' });
    expect(closed.body.error.message).toMatch(/never started/);

    const retry = await t.post(`/api/v1/jobs/${job.id}/retry`, undefined, { token: owner.accessToken });
    expect(retry.status).toBe(202);
    const done = await waitForJob(t, owner.accessToken, retry.body.id, isFinished);
    expect(done).toMatchObject({ status: 'completed', retryOf: job.id });
    expect(await Project.findByPk(project.id)).toBeNull();
  });
});
