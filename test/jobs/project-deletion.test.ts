import { ingestInProcess } from '../../bench/harness/ingest-loop';
import { Document, DocumentChunk, Job, Project } from '../../db';
import { projectBlobPrefix } from '../../services/project-deletion';
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

  it("removes the project's documents with their chunks, vectors and uploaded blobs", async () => {
    const project = await createProject(t, admin.accessToken, 'knowledge base');
    const into = { tenantId: admin.tenantId, projectId: project.id };
    const files = ['a.md', 'b.md', 'c.md'].map((name) => ({ name, bytes: Buffer.from(`# ${name}\n\nNotes kept in ${name}, about the quarterly audit.\n`) }));
    expect(await ingestInProcess(t, into, files, 10)).toMatchObject({ documents: 3, failed: 0 });
    await t.blobs.put(`${projectBlobPrefix(project.id)}documents/upload.zip`, Buffer.from('an uploaded archive'));
    const [collection] = await Document.findAll({ where: { projectId: project.id }, attributes: ['embeddingModel', 'embeddingDimensions'], limit: 1 });
    const vectors = () => t.vectors.count({ model: collection?.embeddingModel ?? '', dimensions: collection?.embeddingDimensions ?? 0 }, into);
    expect(await vectors()).toBe(3);

    const res = await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken });
    const job = await waitForJob(t, admin.accessToken, res.body.id, isFinished);
    expect(job).toMatchObject({ status: 'completed', counters: { documents: 3, blobs: 1 } });
    expect(await Document.count({ where: { projectId: project.id } })).toBe(0);
    expect(await DocumentChunk.count({ where: { projectId: project.id } })).toBe(0);
    expect(await vectors()).toBe(0);
    expect(await t.blobs.countPrefix(projectBlobPrefix(project.id))).toBe(0);
    expect(await Project.findByPk(project.id)).toBeNull();
  });
});
