import { randomUUID } from 'node:crypto';
import { Project } from '../../db';
import { registerTenant, startTestApp, type TestApp } from '../harness';
import { addMember } from '../harness/members';

let t: TestApp;
interface Caller {
  userId: string;
  tenantId: string;
  accessToken: string;
}
/** A member (may write projects) of a tenant, and the admin of another tenant. */
let member: Caller;
let outsider: Caller;

async function memberOfNewTenant(): Promise<Caller> {
  const { tenantId } = await registerTenant(t, 'projects');
  return { ...(await addMember(t, tenantId, 'member')), tenantId };
}

async function createProject(as: Caller, body: Record<string, unknown>) {
  const res = await t.post('/api/v1/projects', body, { token: as.accessToken });
  expect(res.status).toBe(201);
  return res.body;
}

beforeAll(async () => {
  t = await startTestApp();
  member = await memberOfNewTenant();
  outsider = await registerTenant(t, 'outsider');
});
afterAll(() => t.close());

describe('projects', () => {
  test('creating a project answers 201 with its Location, and it reads back', async () => {
    const res = await t.post('/api/v1/projects', { name: 'Payments', description: 'card flows', settings: { branch: 'main' } }, { token: member.accessToken });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name: 'Payments', description: 'card flows', settings: { branch: 'main' } });
    expect(res.headers.location).toBe(`/api/v1/projects/${res.body.id}`);

    const read = await t.get(res.headers.location!, { token: member.accessToken });
    expect(read.status).toBe(200);
    expect(read.body).toEqual(res.body);
  });

  test('a name is trimmed, required and at most 120 characters', async () => {
    const created = await createProject(member, { name: '  Trimmed  ' });
    expect(created).toMatchObject({ name: 'Trimmed', description: '', settings: {} });

    for (const name of ['', '   ', 'x'.repeat(121)]) {
      const res = await t.post('/api/v1/projects', { name }, { token: member.accessToken });
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('/problems/validation-error');
      expect(res.body.errors).toEqual([expect.objectContaining({ path: 'body.name' })]);
    }
  });

  test('the list walks every project once, oldest first, page by page, in the same order each time', async () => {
    const owner = await memberOfNewTenant();
    const names = ['p1', 'p2', 'p3', 'p4', 'p5'];
    const ids: string[] = [];
    for (const name of names) ids.push((await createProject(owner, { name })).id);

    const walk = async () => {
      const pages: string[][] = [];
      let cursor: string | null = null;
      do {
        const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
        const res = await t.get(`/api/v1/projects${query}`, { token: owner.accessToken });
        expect(res.status).toBe(200);
        pages.push(res.body.items.map((p: { id: string }) => p.id));
        cursor = res.body.nextCursor;
      } while (cursor);
      return pages;
    };
    const pages = await walk();
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(pages.flat()).toEqual(ids);
    expect(await walk()).toEqual(pages);
  });

  test('a cursor the API did not return answers 400', async () => {
    const res = await t.get('/api/v1/projects?cursor=not-a-cursor', { token: member.accessToken });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([expect.objectContaining({ path: 'cursor' })]);
  });

  test('an update changes name, description and settings, and leaves the rest', async () => {
    const created = await createProject(member, { name: 'Before', description: 'old' });
    const res = await t.patch(`/api/v1/projects/${created.id}`, { name: 'After', settings: { depth: 2 } }, { token: member.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: created.id, name: 'After', description: 'old', settings: { depth: 2 }, createdAt: created.createdAt });
  });

  test('a duplicate name, in any letter case, answers 409 on create and on rename', async () => {
    await createProject(member, { name: 'Unique Name' });
    const duplicate = await t.post('/api/v1/projects', { name: 'unique name' }, { token: member.accessToken });
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.type).toBe('/problems/conflict');

    const other = await createProject(member, { name: 'Another Name' });
    const rename = await t.patch(`/api/v1/projects/${other.id}`, { name: 'UNIQUE NAME' }, { token: member.accessToken });
    expect(rename.status).toBe(409);
    expect((await Project.findByPk(other.id))?.name).toBe('Another Name');
  });

  test('the same name may exist in two tenants', async () => {
    await createProject(member, { name: 'Shared Name' });
    await createProject(outsider, { name: 'Shared Name' });
  });

  test("another tenant's project answers 404 to get and to patch, and stays unchanged", async () => {
    const theirs = await createProject(outsider, { name: 'Not Yours' });
    const read = await t.get(`/api/v1/projects/${theirs.id}`, { token: member.accessToken });
    expect(read.status).toBe(404);
    expect(read.body.type).toBe('/problems/not-found');

    const patch = await t.patch(`/api/v1/projects/${theirs.id}`, { name: 'Taken Over' }, { token: member.accessToken });
    expect(patch.status).toBe(404);
    expect((await Project.findByPk(theirs.id))?.name).toBe('Not Yours');

    const list = await t.get('/api/v1/projects?limit=100', { token: member.accessToken });
    expect(list.body.items.map((p: { id: string }) => p.id)).not.toContain(theirs.id);
  });

  test('tenantId, id and createdBy in a body change nothing', async () => {
    const forged = { id: randomUUID(), tenantId: outsider.tenantId, createdBy: outsider.userId };
    const created = await createProject(member, { name: 'Forged Fields', ...forged });
    expect(created.id).not.toBe(forged.id);

    const res = await t.patch(`/api/v1/projects/${created.id}`, { description: 'edited', ...forged }, { token: member.accessToken });
    expect(res.status).toBe(200);
    const stored = await Project.findByPk(created.id);
    expect(stored).toMatchObject({ tenantId: member.tenantId, createdBy: member.userId, description: 'edited' });
    expect(await Project.findByPk(forged.id)).toBeNull();
  });
});
