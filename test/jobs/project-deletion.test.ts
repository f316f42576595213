import { randomUUID } from 'node:crypto';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { Job, Project } from '../../db';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { createTestWorker } from '../harness/worker';

/** Finished jobs of a project, as its data for deletion to remove. */
async function seedFinishedJobs(tenantId: string, projectId: string, count: number): Promise<void> {
  await Job.bulkCreate(
    Array.from({ length: count }, () => {
      const id = randomUUID();
      return { id, tenantId, projectId, kind: 'deleteProject', workflowId: `seed-${id}`, title: 'seeded', requestedBy: 'system', status: 'completed' as const };
    }),
  );
}

async function waitForJob(t: TestApp, token: string, id: string, done: (job: { status: string }) => boolean) {
  for (let i = 0; i < 300; i++) {
    const res = await t.get(`/api/v1/jobs/${id}`, { token });
    if (done(res.body)) return res.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not finish`);
}

describe('project deletion', () => {
  let t: TestApp;
  let admin: Member;
  let worker: Worker;
  let connection: NativeConnection;
  let running: Promise<void>;
  beforeAll(async () => {
    t = await startTestApp();
    ({ worker, connection } = await createTestWorker(t));
    admin = await registerTenant(t);
    running = worker.run();
  });
  afterAll(async () => {
    worker.shutdown();
    await running;
    await connection.close();
    await t.close();
  });

  it('answers 202 with a job, hides the project at once, deletes its data in batches and then the project', async () => {
    const project = (await t.post('/api/v1/projects', { name: `doomed-${randomUUID()}` }, { token: admin.accessToken })).body;
    await seedFinishedJobs(admin.tenantId, project.id, 7);

    const res = await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken });
    expect(res.status).toBe(202);
    expect(res.headers.location).toBe(`/api/v1/jobs/${res.body.id}`);
    expect(res.body).toMatchObject({ kind: 'deleteProject', projectId: project.id });
    expect((await t.get(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(404);

    const job = await waitForJob(t, admin.accessToken, res.body.id, (j) => j.status !== 'queued' && j.status !== 'running');
    expect(job).toMatchObject({ status: 'completed', counters: { jobs: 7 } });
    expect(await Project.findByPk(project.id)).toBeNull();
    expect(await Job.count({ where: { projectId: project.id } })).toBe(1); // the deletion job itself remains
  });
});
