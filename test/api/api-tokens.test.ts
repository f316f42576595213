import { randomUUID } from 'node:crypto';
import { ApiToken, AuditLog, type Role } from '../../db';
import { tokenDigest } from '../../lib/crypto';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { addMember, type TenantMember } from '../harness/members';

let t: TestApp;
let tenantId: string;
let admin: Member;
let member: TenantMember;
let otherMember: TenantMember;
let outsider: Member;

const tokenFormat = /^af_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$/;

async function createToken(as: { accessToken: string } | string, body: Record<string, unknown>) {
  const res = await t.post('/api/v1/api-tokens', body, { token: typeof as === 'string' ? as : as.accessToken });
  expect(res.status).toBe(201);
  return res.body as { id: string; token: string; prefix: string; role: Role };
}

async function listIds(as: { accessToken: string }): Promise<string[]> {
  const res = await t.get('/api/v1/api-tokens?limit=100', { token: as.accessToken });
  expect(res.status).toBe(200);
  return res.body.items.map((i: { id: string }) => i.id);
}

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'tokens');
  tenantId = admin.tenantId;
  member = await addMember(t, tenantId, 'member');
  otherMember = await addMember(t, tenantId, 'member');
  outsider = await registerTenant(t, 'outsider');
});
afterAll(() => t.close());

describe('creating an API token', () => {
  test('answers 201 with the token, shown this once; only its digest is stored', async () => {
    const res = await t.post('/api/v1/api-tokens', { name: 'CI', role: 'member' }, { token: member.accessToken });
    expect(res.status).toBe(201);
    const { token, prefix, id } = res.body;
    expect(token).toMatch(tokenFormat);
    expect(prefix).toBe(token.slice(0, 11));
    expect(res.body).toMatchObject({ name: 'CI', role: 'member', createdBy: member.userId, lastUsedAt: null, expiresAt: null, revokedAt: null });

    const stored = await ApiToken.findByPk(id, { raw: true });
    expect(stored?.tokenHash).toBe(tokenDigest(token));
    expect(JSON.stringify(stored)).not.toContain(token);

    const list = await t.get('/api/v1/api-tokens', { token: member.accessToken });
    expect(list.body.items.find((i: { id: string }) => i.id === id)).toEqual({ ...res.body, token: undefined });
    expect(list.text).not.toContain(token.slice(12));
    expect(list.text).not.toMatch(/hash|secret|"token"/i);
  });

  test('every token is different', async () => {
    const a = await createToken(member, { name: 'one', role: 'viewer' });
    const b = await createToken(member, { name: 'two', role: 'viewer' });
    expect(a.token).not.toBe(b.token);
    expect(a.prefix).not.toBe(b.prefix);
  });

  test('a role above the caller’s answers 403 and creates nothing', async () => {
    const res = await t.post('/api/v1/api-tokens', { name: 'escalate', role: 'admin' }, { token: member.accessToken });
    expect(res.status).toBe(403);
    expect(res.body.type).toBe('/problems/forbidden');
    expect(await ApiToken.count({ where: { name: 'escalate' } })).toBe(0);
    expect(await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } })).toEqual([expect.objectContaining({ outcome: 'denied' })]);
  });

  test('an API token creates tokens of at most its own role, owned by its owner', async () => {
    const ci = await createToken(member, { name: 'ci', role: 'member' });
    expect((await t.post('/api/v1/api-tokens', { name: 'too high', role: 'approver' }, { token: ci.token })).status).toBe(403);
    const child = await createToken(ci.token, { name: 'child', role: 'viewer' });
    expect(await ApiToken.findByPk(child.id)).toMatchObject({ createdBy: member.userId, role: 'viewer' });
    expect(await listIds(member)).toEqual(expect.arrayContaining([ci.id, child.id]));
  });

  test('the body is validated: name 1–120 characters, a known role, an expiry in the future', async () => {
    for (const body of [
      { name: '', role: 'member' },
      { name: 'x'.repeat(121), role: 'member' },
      { name: 'no role' },
      { name: 'bad role', role: 'root' },
      { name: 'past', role: 'member', expiresAt: new Date(Date.now() - 60_000).toISOString() },
      { name: 'not a date', role: 'member', expiresAt: 'tomorrow' },
    ]) {
      const res = await t.post('/api/v1/api-tokens', body, { token: member.accessToken });
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('/problems/validation-error');
    }
  });

  test('tenantId, createdBy, prefix and revokedAt in the body change nothing', async () => {
    const created = await createToken(member, {
      name: 'forged',
      role: 'viewer',
      tenantId: outsider.tenantId,
      createdBy: admin.userId,
      prefix: 'af_chosen',
      revokedAt: new Date().toISOString(),
    });
    expect(await ApiToken.findByPk(created.id)).toMatchObject({ tenantId, createdBy: member.userId, revokedAt: null, prefix: created.prefix });
    expect(created.prefix).not.toBe('af_chosen');
  });
});

describe('using an API token', () => {
  test('acts within its tenant with its role, and is audited as itself', async () => {
    const writer = await createToken(admin, { name: 'writer', role: 'member' });
    const res = await t.post('/api/v1/projects', { name: `made by token ${randomUUID()}` }, { token: writer.token });
    expect(res.status).toBe(201);
    expect(await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } })).toEqual([
      expect.objectContaining({ action: 'project.create', actorType: 'api_token', actorId: writer.id, tenantId, resourceId: res.body.id }),
    ]);

    const reader = await createToken(admin, { name: 'reader', role: 'viewer' });
    expect((await t.get('/api/v1/projects', { token: reader.token })).status).toBe(200);
    expect((await t.post('/api/v1/projects', { name: 'by a viewer token' }, { token: reader.token })).status).toBe(403);
  });

  test("never reaches another tenant's resources", async () => {
    const theirs = await t.post('/api/v1/projects', { name: `theirs ${randomUUID()}` }, { token: outsider.accessToken });
    const mine = await createToken(admin, { name: 'mine', role: 'admin' });
    expect((await t.get(`/api/v1/projects/${theirs.body.id}`, { token: mine.token })).status).toBe(404);
  });

  test('records when it was last used', async () => {
    const created = await createToken(member, { name: 'used', role: 'viewer' });
    await t.get('/api/v1/projects', { token: created.token });
    const list = await t.get('/api/v1/api-tokens?limit=100', { token: member.accessToken });
    expect(list.body.items.find((i: { id: string }) => i.id === created.id).lastUsedAt).toEqual(expect.any(String));
  });

  test('an expired token answers 401', async () => {
    const created = await createToken(member, { name: 'short-lived', role: 'viewer', expiresAt: new Date(Date.now() + 3_600_000).toISOString() });
    expect((await t.get('/api/v1/projects', { token: created.token })).status).toBe(200);
    // Time passes: the expiry moves into the past.
    await ApiToken.update({ expiresAt: new Date(Date.now() - 1000) }, { where: { id: created.id } });
    const res = await t.get('/api/v1/projects', { token: created.token });
    expect(res.status).toBe(401);
    expect(res.body.type).toBe('/problems/unauthorized');
  });

  test('a made-up or altered token answers 401', async () => {
    const created = await createToken(member, { name: 'genuine', role: 'viewer' });
    for (const token of [`${created.token.slice(0, -1)}${created.token.endsWith('A') ? 'B' : 'A'}`, `af_AAAAAAAA_${'x'.repeat(43)}`]) {
      expect((await t.get('/api/v1/projects', { token })).status).toBe(401);
    }
  });
});

describe('listing and revoking API tokens', () => {
  test('members list and revoke only their own tokens; admins list and revoke every token of the tenant', async () => {
    const mine = await createToken(member, { name: 'mine', role: 'viewer' });
    const theirs = await createToken(otherMember, { name: 'theirs', role: 'viewer' });

    expect(await listIds(member)).toContain(mine.id);
    expect(await listIds(member)).not.toContain(theirs.id);
    expect(await listIds(admin)).toEqual(expect.arrayContaining([mine.id, theirs.id]));

    expect((await t.delete(`/api/v1/api-tokens/${theirs.id}`, { token: member.accessToken })).status).toBe(404);
    expect((await t.get('/api/v1/projects', { token: theirs.token })).status).toBe(200);
    expect((await t.delete(`/api/v1/api-tokens/${theirs.id}`, { token: admin.accessToken })).status).toBe(204);
    expect((await t.get('/api/v1/projects', { token: theirs.token })).status).toBe(401);
  });

  test('a revoked token answers 401 from the next request and stays listed with its revocation time', async () => {
    const created = await createToken(member, { name: 'to revoke', role: 'viewer' });
    const res = await t.delete(`/api/v1/api-tokens/${created.id}`, { token: member.accessToken });
    expect(res.status).toBe(204);
    expect(await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } })).toEqual([
      expect.objectContaining({ action: 'api_token.revoke', resourceType: 'api_token', resourceId: created.id, outcome: 'success' }),
    ]);

    expect((await t.get('/api/v1/projects', { token: created.token })).status).toBe(401);
    const list = await t.get('/api/v1/api-tokens?limit=100', { token: member.accessToken });
    const revokedAt = list.body.items.find((i: { id: string }) => i.id === created.id).revokedAt;
    expect(revokedAt).toEqual(expect.any(String));

    // Revoking again changes nothing, not even the time.
    expect((await t.delete(`/api/v1/api-tokens/${created.id}`, { token: member.accessToken })).status).toBe(204);
    expect((await ApiToken.findByPk(created.id))?.revokedAt?.toISOString()).toBe(revokedAt);
  });

  test("another tenant's token answers 404, even to an admin", async () => {
    const theirs = await createToken(outsider, { name: 'elsewhere', role: 'viewer' });
    expect((await t.delete(`/api/v1/api-tokens/${theirs.id}`, { token: admin.accessToken })).status).toBe(404);
    expect(await listIds(admin)).not.toContain(theirs.id);
    expect((await t.get('/api/v1/projects', { token: theirs.token })).status).toBe(200);
  });

  test('the list is paginated in creation order', async () => {
    const owner = await addMember(t, tenantId, 'member');
    const ids: string[] = [];
    for (const name of ['a', 'b', 'c']) ids.push((await createToken(owner, { name, role: 'viewer' })).id);
    const first = await t.get('/api/v1/api-tokens?limit=2', { token: owner.accessToken });
    const second = await t.get(`/api/v1/api-tokens?limit=2&cursor=${first.body.nextCursor}`, { token: owner.accessToken });
    expect([...first.body.items, ...second.body.items].map((i) => i.id)).toEqual(ids);
    expect(second.body.nextCursor).toBeNull();
  });
});
