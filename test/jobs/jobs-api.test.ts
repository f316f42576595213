import { randomUUID } from 'node:crypto';
import { AuditLog, Job, Project } from '../../db';
import { searchAttributes } from '../../workflows/definitions';
import { registerTenant, type Member, type TestApp } from '../harness';
import {
  blockedOn,
  createProject,
  eventTypes,
  isFinished,
  lockJobRow,
  seedFinishedJobs,
  startJobsSuite,
  waitForJob,
  type JobBody,
  type JobsSuite,
} from './job-helpers';

/*
 * Jobs as clients see them: starting one (a project deletion), where its workflow can be found,
 * and reading jobs back — one at a time with live progress, or as a filtered, paginated list.
 */

let suite: JobsSuite | undefined;
let t: TestApp;
let admin: Member;

beforeAll(async () => {
  suite = await startJobsSuite('jobs-api');
  ({ t, admin } = suite);
});
afterAll(() => suite?.stop());

describe('starting a job: DELETE /api/v1/projects/:id', () => {
  test('answers 202 with the job and its Location; the job goes queued → running → completed, with an event for each step', async () => {
    const project = await createProject(t, admin.accessToken);
    await seedFinishedJobs(admin.tenantId, project.id, 2);

    const res = await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken });
    expect(res.status).toBe(202);
    const started = res.body as JobBody;
    expect(res.headers.location).toBe(`/api/v1/jobs/${started.id}`);
    expect(started).toMatchObject({
      kind: 'deleteProject',
      title: `Delete project “${project.name}”`,
      projectId: project.id,
      workflowId: `deleteProject-${started.id}`,
      requestedBy: `user:${admin.userId}`,
      retryOf: null,
      error: null,
    });

    const read = await t.get(res.headers.location!, { token: admin.accessToken });
    expect(read.status).toBe(200);
    expect(read.body.id).toBe(started.id);

    const done = await waitForJob(t, admin.accessToken, started.id, isFinished);
    expect(done).toMatchObject({ status: 'completed', counters: { jobs: 2 }, error: null, progress: null });
    expect(done.startedAt).not.toBeNull();
    expect(done.finishedAt).not.toBeNull();
    expect(await eventTypes(started.id)).toEqual(['queued', 'running', 'progress', 'completed']);
    expect(await AuditLog.count({ where: { action: 'job.start', resourceId: started.id, tenantId: admin.tenantId } })).toBe(1);
  });

  test('its workflow carries the TenantId, ProjectId, JobKind and RequestedBy search attributes and a memo title', async () => {
    const project = await createProject(t, admin.accessToken);
    const token = (await t.post('/api/v1/api-tokens', { name: 'ci', role: 'admin' }, { token: admin.accessToken })).body;

    const res = await t.delete(`/api/v1/projects/${project.id}`, { token: token.token });
    expect(res.status).toBe(202);
    const job = res.body as JobBody;

    const description = await t.temporal.workflow.getHandle(job.workflowId).describe();
    expect(description.type).toBe('deleteProject');
    expect(description.taskQueue).toBe(t.config.TEMPORAL_TASK_QUEUE);
    expect(description.typedSearchAttributes.get(searchAttributes.tenantId)).toBe(admin.tenantId);
    expect(description.typedSearchAttributes.get(searchAttributes.projectId)).toBe(project.id);
    expect(description.typedSearchAttributes.get(searchAttributes.jobKind)).toBe('deleteProject');
    expect(description.typedSearchAttributes.get(searchAttributes.requestedBy)).toBe(`api_token:${token.id}`);
    expect(job.requestedBy).toBe(`api_token:${token.id}`);
    expect(description.memo).toEqual({ title: `Delete project “${project.name}”` });

    await waitForJob(t, admin.accessToken, job.id, isFinished);
  });
});

describe('reading a job: GET /api/v1/jobs/:id', () => {
  test('while the deletion runs, shows status running and the workflow\'s live progress; once done, the final counts', async () => {
    // 501 finished jobs: the first batch (500) goes, the second waits for the newest, locked row.
    const project = await createProject(t, admin.accessToken);
    const seeded = await seedFinishedJobs(admin.tenantId, project.id, 501);
    const lock = await lockJobRow(seeded.at(-1)!);
    try {
      const res = await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken });
      expect(res.status).toBe(202);

      // The live answer runs ahead of the row: the workflow counts a batch before reporting it.
      const running = await waitForJob(t, admin.accessToken, res.body.id, (j) => j.counters.jobs === 500 && j.progress?.counters.jobs === 500, 'progress after the first batch');
      await blockedOn(t, lock);
      expect(running).toMatchObject({
        status: 'running',
        stage: 'deleting jobs',
        counters: { jobs: 500 },
        progress: { stage: 'deleting jobs', counters: { jobs: 500 } },
        finishedAt: null,
      });
      expect(running.startedAt).not.toBeNull();
      // Still held: reading it again changes nothing.
      expect((await t.get(`/api/v1/jobs/${res.body.id}`, { token: admin.accessToken })).body.status).toBe('running');

      await lock.release();
      const done = await waitForJob(t, admin.accessToken, res.body.id, isFinished);
      expect(done).toMatchObject({ status: 'completed', counters: { jobs: 501 }, progress: null });
      expect(await Project.findByPk(project.id)).toBeNull();
    } finally {
      await lock.release();
    }
  });

  test('another tenant\'s job, or one that does not exist, is not found', async () => {
    const project = await createProject(t, admin.accessToken);
    const job = (await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken })).body as JobBody;
    const outsider = await registerTenant(t, 'jobs-outsider');

    for (const id of [job.id, randomUUID()]) {
      const res = await t.get(`/api/v1/jobs/${id}`, { token: outsider.accessToken });
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body.type).toBe('/problems/not-found');
    }
    expect((await t.get('/api/v1/jobs/not-a-uuid', { token: admin.accessToken })).status).toBe(400);
    await waitForJob(t, admin.accessToken, job.id, isFinished);
  });
});

describe('listing jobs: GET /api/v1/jobs', () => {
  // A tenant of its own, with jobs of two kinds, three outcomes and two projects over five hours.
  let owner: Member;
  let projectA: string;
  let projectB: string;
  const t0 = Date.parse('2024-03-01T10:00:00.000Z');
  const hour = 60 * 60 * 1000;
  let ids: Record<string, string>;

  const list = async (query: string, token = owner.accessToken) => {
    const res = await t.get(`/api/v1/jobs${query}`, { token });
    expect(res.status).toBe(200);
    return res.body as { items: JobBody[]; nextCursor: string | null };
  };
  const idsOf = async (query: string) => (await list(query)).items.map((j) => j.id);
  const named = (...names: string[]) => names.map((n) => ids[n]);

  beforeAll(async () => {
    owner = await registerTenant(t, 'jobs-list');
    projectA = (await createProject(t, owner.accessToken, 'A')).id;
    projectB = (await createProject(t, owner.accessToken, 'B')).id;
    const rows = [
      { name: 'j1', kind: 'deleteProject', status: 'completed', projectId: projectA, at: t0 },
      { name: 'j2', kind: 'scan', status: 'failed', projectId: projectA, at: t0 + hour },
      { name: 'j3', kind: 'scan', status: 'completed', projectId: projectB, at: t0 + 2 * hour },
      { name: 'j4', kind: 'deleteProject', status: 'cancelled', projectId: projectB, at: t0 + 3 * hour },
      // Two jobs created in the same instant: the order between them is by id, and stable.
      { name: 'j5', kind: 'scan', status: 'completed', projectId: projectA, at: t0 + 4 * hour },
      { name: 'j6', kind: 'scan', status: 'failed', projectId: projectB, at: t0 + 4 * hour },
    ] as const;
    ids = {};
    await Job.bulkCreate(
      rows.map((r) => {
        const id = randomUUID();
        ids[r.name] = id;
        return { id, tenantId: owner.tenantId, projectId: r.projectId, kind: r.kind, workflowId: `${r.kind}-${id}`, title: r.name, requestedBy: 'system', status: r.status, createdAt: new Date(r.at) };
      }),
    );
  });

  /** Newest first; of the two created at once, the greater id first. */
  const newestFirst = () => {
    const [a, b] = [ids.j5!, ids.j6!].sort().reverse();
    return [a, b, ids.j4, ids.j3, ids.j2, ids.j1];
  };

  test('lists the tenant\'s jobs newest first, and only the tenant\'s', async () => {
    expect(await idsOf('?limit=100')).toEqual(newestFirst());
    const mine = await list('?limit=100', admin.accessToken);
    expect(mine.items.map((j) => j.id)).not.toContain(ids.j1);
  });

  test('filters by kind, status, project and creation time, alone or together', async () => {
    expect(await idsOf('?kind=deleteProject')).toEqual(named('j4', 'j1'));
    expect(await idsOf('?status=failed')).toEqual(newestFirst().filter((id) => id === ids.j6 || id === ids.j2));
    expect(await idsOf(`?projectId=${projectA}`)).toEqual(named('j5', 'j2', 'j1'));
    // `from` is inclusive, `to` exclusive.
    const from = new Date(t0 + hour).toISOString();
    const to = new Date(t0 + 3 * hour).toISOString();
    expect(await idsOf(`?from=${from}&to=${to}`)).toEqual(named('j3', 'j2'));
    expect(await idsOf(`?kind=scan&projectId=${projectB}&status=completed`)).toEqual(named('j3'));
    expect(await idsOf('?kind=ingest')).toEqual([]);
  });

  test('pages with a cursor, newest first, each job once, until nextCursor is null', async () => {
    const walk = async (query: string, limit: number) => {
      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const page = await list(`?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`);
        pages.push(page.items.map((j) => j.id));
        cursor = page.nextCursor;
      } while (cursor);
      return pages;
    };
    const pages = await walk('', 2);
    expect(pages.map((p) => p.length)).toEqual([2, 2, 2]);
    expect(pages.flat()).toEqual(newestFirst());
    // The pair created in the same instant is split across pages and still comes out once each.
    expect((await walk('', 1)).flat()).toEqual(newestFirst());
    // Filters hold on every page.
    expect((await walk('&kind=scan', 3)).flat()).toEqual(newestFirst().filter((id) => ![ids.j1, ids.j4].includes(id)));
  });

  test('a bad filter or cursor is a 400 validation problem', async () => {
    for (const query of ['?status=paused', '?projectId=nope', '?from=yesterday', '?limit=0', '?cursor=not-a-cursor']) {
      const res = await t.get(`/api/v1/jobs${query}`, { token: owner.accessToken });
      expect({ query, status: res.status, type: res.body.type }).toEqual({ query, status: 400, type: '/problems/validation-error' });
    }
  });
});
