import { Job, Project } from '../../db';
import type { Member, TestApp } from '../harness';
import { createProject, isFinished, seedFinishedJobs, startJobsSuite, waitForJob, type JobsSuite } from './job-helpers';

describe('project deletion', () => {
  let suite: JobsSuite | undefined;
  let t: TestApp;
  let admin: Member;
  beforeAll(async () => {
    suite = await startJobsSuite();
    ({ t, admin } = suite);
  });
  afterAll(() => suite?.stop());

  it('answers 202 with a job, hides the project at once, deletes its data in batches and then the project', async () => {
    const project = await createProject(t, admin.accessToken, 'doomed');
    await seedFinishedJobs(admin.tenantId, project.id, 7);

    const res = await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken });
    expect(res.status).toBe(202);
    expect(res.headers.location).toBe(`/api/v1/jobs/${res.body.id}`);
    expect(res.body).toMatchObject({ kind: 'deleteProject', projectId: project.id });
    expect((await t.get(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).status).toBe(404);

    const job = await waitForJob(t, admin.accessToken, res.body.id, isFinished);
    expect(job).toMatchObject({ status: 'completed', counters: { jobs: 7 } });
    expect(await Project.findByPk(project.id)).toBeNull();
    expect(await Job.count({ where: { projectId: project.id } })).toBe(1); // the deletion job itself remains
  });
});
