import { AuditLog, Membership, User, type Role } from '../../db';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { addMember } from '../harness/members';
import { signIn } from './auth-helpers';

let t: TestApp;

/** A fresh tenant with its first admin, so each test owns its membership list. */
async function newTenant(): Promise<{ tenantId: string; admin: Member }> {
  const admin = await registerTenant(t, 'admin');
  return { tenantId: admin.tenantId, admin };
}

async function createApiToken(as: { accessToken: string }, role: Role): Promise<string> {
  const res = await t.post('/api/v1/api-tokens', { name: `${role} token`, role }, { token: as.accessToken });
  expect(res.status).toBe(201);
  return res.body.token;
}

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

describe('listing members', () => {
  test('every member sees the members with user id, email, name, role and join time, in join order, page by page', async () => {
    const { tenantId, admin } = await newTenant();
    const others = [await addMember(t, tenantId, 'approver'), await addMember(t, tenantId, 'member'), await addMember(t, tenantId, 'viewer')];
    const viewer = others[2]!;

    const first = await t.get('/api/v1/members?limit=3', { token: viewer.accessToken });
    expect(first.status).toBe(200);
    expect(first.body.items).toHaveLength(3);
    const second = await t.get(`/api/v1/members?limit=3&cursor=${first.body.nextCursor}`, { token: viewer.accessToken });
    expect(second.body.nextCursor).toBeNull();

    const items = [...first.body.items, ...second.body.items];
    expect(items.map((m) => m.userId)).toEqual([admin, ...others].map((m) => m.userId));
    expect(items[0]).toEqual({ userId: admin.userId, email: admin.email, name: 'admin', role: 'admin', joinedAt: expect.any(String) });
    expect(first.text + second.text).not.toMatch(/password|hash|\$2b\$/i);
  });

  test("another tenant's members are not listed", async () => {
    const mine = await newTenant();
    const theirs = await newTenant();
    const res = await t.get('/api/v1/members', { token: mine.admin.accessToken });
    expect(res.body.items.map((m: { userId: string }) => m.userId)).toEqual([mine.admin.userId]);
    expect(res.text).not.toContain(theirs.admin.userId);
  });
});

describe('changing a role', () => {
  test('an admin changes a role; the answer and the audit trail show it', async () => {
    const { tenantId, admin } = await newTenant();
    const viewer = await addMember(t, tenantId, 'viewer');
    const res = await t.patch(`/api/v1/members/${viewer.userId}`, { role: 'approver' }, { token: admin.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ userId: viewer.userId, email: viewer.email, role: 'approver' });

    const audit = await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } });
    expect(audit).toEqual([
      expect.objectContaining({ action: 'member.update_role', actorId: admin.userId, resourceType: 'member', resourceId: viewer.userId, outcome: 'success' }),
    ]);
    expect(audit[0]?.details).toMatchObject({ from: 'viewer', to: 'approver' });
  });

  test("a demotion takes effect on the member's next request, with the same access token", async () => {
    const { tenantId, admin } = await newTenant();
    const writer = await addMember(t, tenantId, 'member');
    expect((await t.post('/api/v1/projects', { name: 'before demotion' }, { token: writer.accessToken })).status).toBe(201);

    expect((await t.patch(`/api/v1/members/${writer.userId}`, { role: 'viewer' }, { token: admin.accessToken })).status).toBe(200);

    const refused = await t.post('/api/v1/projects', { name: 'after demotion' }, { token: writer.accessToken });
    expect(refused.status).toBe(403);
    expect(refused.body.type).toBe('/problems/forbidden');
    expect((await t.get('/api/v1/projects', { token: writer.accessToken })).status).toBe(200);
  });

  test("a demotion revokes the member's API tokens above the new role and keeps the others", async () => {
    const { tenantId, admin } = await newTenant();
    const approver = await addMember(t, tenantId, 'approver');
    const approverToken = await createApiToken(approver, 'approver');
    const viewerToken = await createApiToken(approver, 'viewer');

    await t.patch(`/api/v1/members/${approver.userId}`, { role: 'member' }, { token: admin.accessToken });

    expect((await t.get('/api/v1/projects', { token: approverToken })).status).toBe(401);
    expect((await t.get('/api/v1/projects', { token: viewerToken })).status).toBe(200);
  });

  test('the last admin cannot be demoted (409); with a second admin, either may be', async () => {
    const { tenantId, admin } = await newTenant();
    const refused = await t.patch(`/api/v1/members/${admin.userId}`, { role: 'member' }, { token: admin.accessToken });
    expect(refused.status).toBe(409);
    expect(refused.body.type).toBe('/problems/conflict');
    expect(refused.body.detail).toMatch(/last admin/);
    expect((await Membership.findOne({ where: { tenantId, userId: admin.userId } }))?.role).toBe('admin');

    const second = await addMember(t, tenantId, 'admin');
    const demoted = await t.patch(`/api/v1/members/${admin.userId}`, { role: 'member' }, { token: admin.accessToken });
    expect(demoted.status).toBe(200);
    expect((await t.patch(`/api/v1/members/${second.userId}`, { role: 'member' }, { token: second.accessToken })).status).toBe(409);
  });

  test('two admins demoting each other at the same time leave one admin', async () => {
    const { tenantId, admin } = await newTenant();
    const second = await addMember(t, tenantId, 'admin');
    const results = await Promise.all([
      t.patch(`/api/v1/members/${second.userId}`, { role: 'member' }, { token: admin.accessToken }),
      t.patch(`/api/v1/members/${admin.userId}`, { role: 'member' }, { token: second.accessToken }),
    ]);
    // The loser is refused either as the last admin (409) or, if the winner's demotion landed
    // first, as no longer an admin (403): both leave exactly one admin.
    const statuses = results.map((r) => r.status).sort();
    expect([[200, 409], [200, 403]]).toContainEqual(statuses);
    expect(await Membership.count({ where: { tenantId, role: 'admin' } })).toBe(1);
  });

  test('only the role can change: tenantId, userId and passwordHash in the body are ignored', async () => {
    const { tenantId, admin } = await newTenant();
    const other = await newTenant();
    const viewer = await addMember(t, tenantId, 'viewer');
    const hashBefore = (await User.findByPk(viewer.userId))?.passwordHash;

    const res = await t.patch(
      `/api/v1/members/${viewer.userId}`,
      { role: 'member', tenantId: other.tenantId, userId: admin.userId, passwordHash: 'forged' },
      { token: admin.accessToken },
    );
    expect(res.status).toBe(200);
    expect(await Membership.findOne({ where: { userId: viewer.userId } })).toMatchObject({ tenantId, role: 'member' });
    expect((await User.findByPk(viewer.userId))?.passwordHash).toBe(hashBefore);
    expect(res.text).not.toMatch(/password|hash/i);
  });

  test('an unknown role answers 400', async () => {
    const { tenantId, admin } = await newTenant();
    const viewer = await addMember(t, tenantId, 'viewer');
    const res = await t.patch(`/api/v1/members/${viewer.userId}`, { role: 'owner' }, { token: admin.accessToken });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([expect.objectContaining({ path: 'body.role' })]);
  });

  test("another tenant's member answers 404 and keeps their role", async () => {
    const mine = await newTenant();
    const theirs = await newTenant();
    const res = await t.patch(`/api/v1/members/${theirs.admin.userId}`, { role: 'viewer' }, { token: mine.admin.accessToken });
    expect(res.status).toBe(404);
    expect((await Membership.findOne({ where: { userId: theirs.admin.userId } }))?.role).toBe('admin');
  });
});

describe('removing a member', () => {
  test('ends every session of the member in the tenant at once: access, refresh and API tokens; other tenants keep theirs', async () => {
    const { tenantId, admin } = await newTenant();
    const leaver = await registerTenant(t, 'leaver'); // signed in to a tenant of their own
    await Membership.create({ tenantId, userId: leaver.userId, role: 'member' });
    const session = await signIn(t, leaver.email, leaver.password, { tenantId });
    const apiToken = await createApiToken(session, 'member');

    const res = await t.delete(`/api/v1/members/${leaver.userId}`, { token: admin.accessToken });
    expect(res.status).toBe(204);

    for (const token of [session.accessToken, apiToken]) {
      const after = await t.get('/api/v1/projects', { token });
      expect(after.status).toBe(401);
      expect(after.body.type).toBe('/problems/unauthorized');
    }
    expect((await t.post('/api/v1/auth/refresh', { refreshToken: session.refreshToken })).status).toBe(401);
    const list = await t.get('/api/v1/members', { token: admin.accessToken });
    expect(list.body.items.map((m: { userId: string }) => m.userId)).toEqual([admin.userId]);

    expect((await t.get('/api/v1/projects', { token: leaver.accessToken })).status).toBe(200);
    expect((await t.post('/api/v1/auth/refresh', { refreshToken: leaver.refreshToken })).status).toBe(200);
  });

  test('is audited with the removed member as the resource', async () => {
    const { tenantId, admin } = await newTenant();
    const leaver = await addMember(t, tenantId, 'viewer');
    const res = await t.delete(`/api/v1/members/${leaver.userId}`, { token: admin.accessToken });
    expect(await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } })).toEqual([
      expect.objectContaining({ action: 'member.remove', resourceType: 'member', resourceId: leaver.userId, outcome: 'success', tenantId }),
    ]);
  });

  test('the last admin cannot leave (409); with a second admin, an admin can remove themselves', async () => {
    const { tenantId, admin } = await newTenant();
    const refused = await t.delete(`/api/v1/members/${admin.userId}`, { token: admin.accessToken });
    expect(refused.status).toBe(409);
    expect(refused.body.type).toBe('/problems/conflict');

    await addMember(t, tenantId, 'admin');
    expect((await t.delete(`/api/v1/members/${admin.userId}`, { token: admin.accessToken })).status).toBe(204);
    expect((await t.get('/api/v1/members', { token: admin.accessToken })).status).toBe(401);
  });

  test("another tenant's member answers 404 and stays", async () => {
    const mine = await newTenant();
    const theirs = await newTenant();
    const theirMember = await addMember(t, theirs.tenantId, 'member');
    expect((await t.delete(`/api/v1/members/${theirMember.userId}`, { token: mine.admin.accessToken })).status).toBe(404);
    expect((await t.get('/api/v1/projects', { token: theirMember.accessToken })).status).toBe(200);
  });
});
