import { randomUUID } from 'node:crypto';
import { JobEvent, Job, Project } from '../../db';
import { AuditScope } from '../../services/audit';
import { startProjectDeletion } from '../../services/project-deletion';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { backendsBlockedBy, lockJobRow, seedFinishedJobs, stopWorkerProcesses, waitUntil, workerProcesses } from './job-helpers';

/**
 * A worker process dies (SIGKILL: no drain, no goodbye to the server) while a deletion batch is
 * in flight; a new worker process picks the job up and finishes it exactly once.
 *
 * The kill lands mid-deletion by construction, not by timing: a row lock on one seeded job makes
 * the batch that reaches it wait, so the test kills the worker only once earlier batches are
 * recorded and that batch is seen waiting in Postgres.
 */
describe('a worker killed mid-deletion', () => {
  let t: TestApp;
  let admin: Member;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await registerTenant(t);
  });
  afterAll(() => t.close());

  it('leaves the job to a new worker, which completes it with every row deleted once and one terminal event', async () => {
    const seededCount = 10;
    const batchSize = 2;
    const project = (await t.post('/api/v1/projects', { name: `crash-${randomUUID()}` }, { token: admin.accessToken })).body;
    const seeded = await seedFinishedJobs(admin.tenantId, project.id, seededCount);
    // Batches of 2, oldest first: batches 1-3 go through, batch 4 (rows 6 and 7) waits for this lock.
    const lock = await lockJobRow(seeded[6] ?? '');

    const env = { TEMPORAL_TASK_QUEUE: t.config.TEMPORAL_TASK_QUEUE, TEMPORAL_LLM_TASK_QUEUE: `${t.config.TEMPORAL_TASK_QUEUE}-llm` };
    const workers = workerProcesses(env);
    try {
      const first = await workers.start();
      const deps = { sequelize: t.sequelize, temporal: t.temporal, config: t.config };
      const audit = new AuditScope({ type: 'user', id: admin.userId, tenantId: admin.tenantId });
      const { job } = await startProjectDeletion(deps, audit, {
        tenantId: admin.tenantId,
        projectId: project.id,
        requestedBy: `user:${admin.userId}`,
        params: { batchSize },
      });

      // Mid-deletion: three batches recorded, the fourth waiting on the lock inside the worker's transaction.
      await waitUntil('three batches are recorded and the fourth waits for the row lock', async () => {
        const row = await Job.findByPk(job.id, { rejectOnEmpty: true });
        return row.status === 'running' && row.counters.jobs === 6 && (await backendsBlockedBy(t.sequelize, lock.pid)) > 0;
      });
      expect(await Job.count({ where: { id: seeded } })).toBe(seededCount - 6);

      first.child.kill('SIGKILL');
      expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
      // The dead worker's transaction now gets the rows, finds its client gone and rolls back.
      await lock.release();
      const second = await workers.start();

      const done = await waitUntil('the job finishes', async () => {
        const row = await Job.findByPk(job.id, { rejectOnEmpty: true });
        return row.status !== 'queued' && row.status !== 'running' && row;
      });
      expect(done.status).toBe('completed');
      const view = await t.get(`/api/v1/jobs/${job.id}`, { token: admin.accessToken });
      expect(view.body).toMatchObject({ status: 'completed', counters: { jobs: seededCount } });
      expect(done.counters).toEqual({ jobs: seededCount });
      expect(await Job.count({ where: { id: seeded } })).toBe(0);
      expect(await Project.findByPk(project.id)).toBeNull();

      // Every report written once: one per batch, in order, then one terminal event.
      const events = await JobEvent.findAll({ where: { jobId: job.id }, order: [['seq', 'ASC']] });
      const keys = events.map((e) => e.dedupeKey);
      expect(new Set(keys.filter((k) => k !== null)).size).toBe(keys.filter((k) => k !== null).length);
      expect(keys).toEqual([null, 'running', 'progress:jobs:2', 'progress:jobs:4', 'progress:jobs:6', 'progress:jobs:8', 'progress:jobs:10', 'terminal']);
      expect(events.filter((e) => ['completed', 'failed', 'cancelled'].includes(e.type)).map((e) => e.type)).toEqual(['completed']);

      // The batch the dead worker held was retried, and the retry ran on the new worker.
      const history = await t.temporal.workflow.getHandle(job.workflowId).fetchHistory();
      const scheduled = new Map<string, string>();
      const retriedOnSecond = (history.events ?? []).filter((e) => {
        const s = e.activityTaskScheduledEventAttributes;
        if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '');
        const started = e.activityTaskStartedEventAttributes;
        return (
          started &&
          scheduled.get(String(started.scheduledEventId)) === 'deleteProjectDataBatch' &&
          (started.attempt ?? 1) > 1 &&
          started.identity?.startsWith(`${second.child.pid}@`)
        );
      });
      expect(retriedOnSecond).toHaveLength(1);
    } finally {
      await stopWorkerProcesses(t, workers.all, env.TEMPORAL_TASK_QUEUE);
      await lock.release();
    }
  }, 180_000);
});
