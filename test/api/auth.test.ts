import bcrypt from 'bcrypt';
import { Membership, RefreshToken, User } from '../../db';
import { hashPassword } from '../../services/passwords';
import { registerTenant, startTestApp, strongPassword, uniqueEmail, type Member, type TestApp } from '../harness';
import { auditRows, signIn, tokenFrom } from './auth-helpers';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp();
});

afterAll(() => t.close());

const me = (token: string) => t.get('/api/v1/auth/me', { token });

/** A user of `home` who is also a member of `other`'s tenant with `role`. */
async function inTwoTenants(role: Membership['role'] = 'viewer'): Promise<{ home: Member; other: Member }> {
  const [home, other] = [await registerTenant(t, 'home'), await registerTenant(t, 'other')];
  await Membership.create({ tenantId: other.tenantId, userId: home.userId, role });
  return { home, other };
}

describe('POST /auth/register', () => {
  it('creates a tenant with the caller as its admin, signed in', async () => {
    const email = uniqueEmail('founder');
    const res = await t.post('/api/v1/auth/register', { email, password: strongPassword, name: 'Founder', tenantName: 'Founders Inc' });

    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      user: { email, name: 'Founder', emailVerified: false },
      tenant: { name: 'Founders Inc' },
      role: 'admin',
      tokenType: 'Bearer',
      expiresIn: t.config.ACCESS_TOKEN_TTL_SECONDS,
    });
    const session = await me(res.body.accessToken);
    expect(session.status).toBe(200);
    expect(session.body).toMatchObject({ user: { id: res.body.user.id }, tenant: res.body.tenant, role: 'admin', tenants: [{ ...res.body.tenant, role: 'admin' }] });
  });

  it('ignores role, tenantId, passwordHash and emailVerified sent in the body', async () => {
    const other = await registerTenant(t, 'victim');
    const email = uniqueEmail('sneaky');
    const res = await t.post('/api/v1/auth/register', {
      email,
      password: strongPassword,
      name: 'Sneaky',
      tenantName: 'Sneaky org',
      role: 'viewer',
      tenantId: other.tenantId,
      passwordHash: '$2b$04$abcdefghijklmnopqrstuuJ4cMRwl6x4u3ACJ4H3E1Wg2UuOGLkCe',
      emailVerified: true,
    });

    expect(res.status).toBe(201);
    expect(res.body.role).toBe('admin');
    expect(res.body.tenant.id).not.toBe(other.tenantId);
    expect(res.body.user.emailVerified).toBe(false);
    expect(await Membership.count({ where: { userId: res.body.user.id } })).toBe(1);
    await signIn(t, email, strongPassword);
  });

  it('refuses a guessable password with feedback, counting the email and name as known words', async () => {
    const common = await t.post('/api/v1/auth/register', { email: uniqueEmail(), password: 'password123', name: 'Pat', tenantName: 'Pat org' });
    expect(common.status).toBe(422);
    expect(common.body).toMatchObject({ type: '/problems/weak-password', feedback: { suggestions: expect.any(Array) } });

    // Strong for anyone else, but made of this person's own name.
    const personal = { password: 'quizzicalmarmaduke', name: 'Marmaduke Quizzical', tenantName: 'MQ' };
    const weak = await t.post('/api/v1/auth/register', { ...personal, email: uniqueEmail() });
    expect(weak.status).toBe(422);
    expect(weak.body.type).toBe('/problems/weak-password');
    const fine = await t.post('/api/v1/auth/register', { ...personal, name: 'Pat', email: uniqueEmail() });
    expect(fine.status).toBe(201);
  });

  it('takes passwords of 8 to 256 characters', async () => {
    const register = (password: string) => t.post('/api/v1/auth/register', { email: uniqueEmail(), password, name: 'Len', tenantName: 'Len org' });
    const longest = 'Vq9!mZ2#kL7@xR4$'.repeat(16);
    expect((await register('x7#Q')).status).toBe(400);
    expect((await register(`${longest}x`)).body.type).toBe('/problems/validation-error');
    expect((await register(longest)).status).toBe(201);
  });

  it('answers 409 when the email already has an account, in any letter case', async () => {
    const taken = await registerTenant(t, 'taken');
    const res = await t.post('/api/v1/auth/register', { email: taken.email.toUpperCase(), password: strongPassword, name: 'Again', tenantName: 'Again org' });
    expect(res.status).toBe(409);
    expect(res.body.type).toBe('/problems/conflict');
  });

  it('records auth.register in the new tenant, without the password', async () => {
    const admin = await registerTenant(t, 'audited');
    const [row] = await auditRows('auth.register', { resourceId: admin.userId });
    expect(row).toMatchObject({ tenantId: admin.tenantId, actorType: 'user', actorId: admin.userId, outcome: 'success' });
    expect(JSON.stringify(row?.details)).not.toContain(strongPassword);
  });
});

describe('email verification', () => {
  it('registration mails a link whose token verifies the address, once', async () => {
    const admin = await registerTenant(t, 'verify');
    const token = tokenFrom(await t.mailbox.next(admin.email));

    expect((await t.post('/api/v1/auth/verify-email', { token })).status).toBe(204);
    expect((await me(admin.accessToken)).body.user.emailVerified).toBe(true);
    const again = await t.post('/api/v1/auth/verify-email', { token });
    expect(again.status).toBe(400);
    expect(again.body.type).toBe('/problems/invalid-token');
    expect(await auditRows('auth.email_verified', { resourceId: admin.userId })).toHaveLength(1);
  });

  it('resend mails a new link and voids the earlier one; a verified address gets 409', async () => {
    const admin = await registerTenant(t, 'resend');
    const first = tokenFrom(await t.mailbox.next(admin.email));

    const resent = await t.post('/api/v1/auth/verify-email/resend', undefined, { token: admin.accessToken });
    expect(resent.status).toBe(202);
    const second = tokenFrom(await t.mailbox.next(admin.email));

    expect((await t.post('/api/v1/auth/verify-email', { token: first })).status).toBe(400);
    expect((await t.post('/api/v1/auth/verify-email', { token: second })).status).toBe(204);
    expect((await t.post('/api/v1/auth/verify-email/resend', undefined, { token: admin.accessToken })).status).toBe(409);
  });

  it('answers 400 invalid-token for a token it never issued', async () => {
    const res = await t.post('/api/v1/auth/verify-email', { token: 'A'.repeat(43) });
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/invalid-token');
  });
});

describe('POST /auth/login', () => {
  it('signs in to the oldest membership, or to the tenant asked for', async () => {
    const { home, other } = await inTwoTenants('approver');

    const byDefault = await signIn(t, home.email, home.password);
    expect((await me(byDefault.accessToken)).body).toMatchObject({ tenant: { id: home.tenantId }, role: 'admin' });
    const chosen = await signIn(t, home.email, home.password, { tenantId: other.tenantId });
    expect((await me(chosen.accessToken)).body).toMatchObject({ tenant: { id: other.tenantId }, role: 'approver' });
  });

  it('answers 404 for a tenant the user is not a member of', async () => {
    const [admin, stranger] = [await registerTenant(t, 'one'), await registerTenant(t, 'stranger')];
    const res = await t.post('/api/v1/auth/login', { email: admin.email, password: admin.password, tenantId: stranger.tenantId });
    expect(res.status).toBe(404);
  });

  it('answers an unknown email exactly like a wrong password', async () => {
    const admin = await registerTenant(t, 'alike');
    const wrongPassword = await t.post('/api/v1/auth/login', { email: admin.email, password: 'not the password at all' });
    const unknownEmail = await t.post('/api/v1/auth/login', { email: uniqueEmail('nobody'), password: 'not the password at all' });

    const comparable = (r: typeof wrongPassword) => ({ status: r.status, type: r.headers['content-type'], body: { ...r.body, requestId: undefined } });
    expect(wrongPassword.status).toBe(401);
    expect(wrongPassword.body.type).toBe('/problems/invalid-credentials');
    expect(comparable(unknownEmail)).toEqual(comparable(wrongPassword));
  });

  it('records failed sign-ins with their reason, never the password', async () => {
    const admin = await registerTenant(t, 'failing');
    await t.post('/api/v1/auth/login', { email: admin.email, password: 'Wrong-Password-1' });

    const [row] = await auditRows('auth.login', { resourceId: admin.userId });
    expect(row).toMatchObject({ outcome: 'failure', details: { reason: 'wrong_password', email: admin.email } });
    expect(JSON.stringify(row)).not.toContain('Wrong-Password-1');
  });

  it('records a successful sign-in in the tenant signed into', async () => {
    const admin = await registerTenant(t, 'success');
    await signIn(t, admin.email, admin.password);
    expect(await auditRows('auth.login', { resourceId: admin.userId })).toEqual([
      expect.objectContaining({ outcome: 'success', tenantId: admin.tenantId, actorId: admin.userId }),
    ]);
  });

  it('tells apart long passwords that share their first 80 characters (no 72-byte truncation)', async () => {
    const prefix = 'correct horse battery staple '.repeat(3).slice(0, 80);
    const [mine, lookalike] = [`${prefix}Zq8#vL2mPw9!rT4kYb7s`, `${prefix}Hn3$cX6jQe1&wU5gAf8d`];
    expect(mine).toHaveLength(100);
    const email = uniqueEmail('long');
    expect((await t.post('/api/v1/auth/register', { email, password: mine, name: 'Long', tenantName: 'Long org' })).status).toBe(201);

    expect((await t.post('/api/v1/auth/login', { email, password: lookalike })).status).toBe(401);
    await signIn(t, email, mine);
  });
});

describe('password hashes', () => {
  it('are re-made at the configured cost on the next sign-in', async () => {
    const admin = await registerTenant(t, 'rehash');
    await User.update({ passwordHash: await hashPassword(admin.password, 5) }, { where: { id: admin.userId } });

    await signIn(t, admin.email, admin.password);
    const stored = (await User.findByPk(admin.userId))?.passwordHash ?? '';
    expect(bcrypt.getRounds(stored)).toBe(t.config.BCRYPT_COST);
    await signIn(t, admin.email, admin.password);
  });
});

describe('POST /auth/refresh', () => {
  it('rotates: the new pair works and the spent refresh token does not', async () => {
    const admin = await registerTenant(t, 'rotate');
    const res = await t.post('/api/v1/auth/refresh', { refreshToken: admin.refreshToken });

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ tokenType: 'Bearer', accessToken: expect.any(String) });
    expect(res.body.refreshToken).not.toBe(admin.refreshToken);
    expect((await me(res.body.accessToken)).status).toBe(200);
    expect(await auditRows('auth.refresh', { resourceId: admin.userId })).toEqual([expect.objectContaining({ outcome: 'success' })]);
  });

  it('revokes the whole family when a spent token is presented again, and no other session', async () => {
    const admin = await registerTenant(t, 'reuse');
    const otherDevice = await signIn(t, admin.email, admin.password);
    const rotated = await t.post('/api/v1/auth/refresh', { refreshToken: admin.refreshToken });

    const replay = await t.post('/api/v1/auth/refresh', { refreshToken: admin.refreshToken });
    expect(replay.status).toBe(401);
    expect(replay.body.type).toBe('/problems/unauthorized');
    expect((await t.post('/api/v1/auth/refresh', { refreshToken: rotated.body.refreshToken })).status).toBe(401);
    expect((await t.post('/api/v1/auth/refresh', { refreshToken: otherDevice.refreshToken })).status).toBe(200);
    expect(await auditRows('auth.refresh', { resourceId: admin.userId })).toContainEqual(
      expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ reason: 'reuse' }) }),
    );
  });

  it('lets at most one of two concurrent refreshes with one token succeed', async () => {
    const admin = await registerTenant(t, 'race');
    const results = await Promise.all([1, 2].map(() => t.post('/api/v1/auth/refresh', { refreshToken: admin.refreshToken })));
    expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(1);
    expect(results.map((r) => r.status)).toContain(401);
  });

  it('refuses an expired refresh token', async () => {
    const admin = await registerTenant(t, 'stale');
    await RefreshToken.update({ expiresAt: new Date(Date.now() - 1000) }, { where: { userId: admin.userId } });
    expect((await t.post('/api/v1/auth/refresh', { refreshToken: admin.refreshToken })).status).toBe(401);
  });
});

describe('POST /auth/logout', () => {
  it('ends every session of the account at once, access tokens included', async () => {
    const admin = await registerTenant(t, 'logout');
    const laptop = await signIn(t, admin.email, admin.password);

    expect((await t.post('/api/v1/auth/logout', undefined, { token: admin.accessToken })).status).toBe(204);

    for (const token of [admin.accessToken, laptop.accessToken]) expect((await me(token)).status).toBe(401);
    for (const refreshToken of [admin.refreshToken, laptop.refreshToken]) {
      expect((await t.post('/api/v1/auth/refresh', { refreshToken })).status).toBe(401);
    }
    expect((await me((await signIn(t, admin.email, admin.password)).accessToken)).status).toBe(200);
    expect(await auditRows('auth.logout', { resourceId: admin.userId })).toHaveLength(1);
  });

  it('needs a session', async () => {
    expect((await t.post('/api/v1/auth/logout')).status).toBe(401);
  });
});

describe('GET /auth/me', () => {
  it('shows the user, the current tenant and role, and every tenant with its role', async () => {
    const { home, other } = await inTwoTenants('member');
    const res = await me(home.accessToken);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      user: { id: home.userId, email: home.email, name: 'home', emailVerified: false },
      tenant: { id: home.tenantId, name: 'home org' },
      role: 'admin',
      tenants: [
        { id: home.tenantId, name: 'home org', role: 'admin' },
        { id: other.tenantId, name: 'other org', role: 'member' },
      ],
    });
  });
});

describe('POST /auth/switch-tenant', () => {
  it('gives a user in several tenants a session in another one', async () => {
    const { home, other } = await inTwoTenants('viewer');
    const res = await t.post('/api/v1/auth/switch-tenant', { tenantId: other.tenantId }, { token: home.accessToken });

    expect(res.status).toBe(200);
    expect((await me(res.body.accessToken)).body).toMatchObject({ tenant: { id: other.tenantId }, role: 'viewer' });
    expect((await me(home.accessToken)).body.tenant.id).toBe(home.tenantId);
    expect(await auditRows('auth.switch_tenant', { tenantId: other.tenantId })).toEqual([
      expect.objectContaining({ actorId: home.userId, details: { fromTenantId: home.tenantId } }),
    ]);
  });

  it('answers 404 for a tenant the user is not a member of', async () => {
    const [admin, stranger] = [await registerTenant(t, 'switcher'), await registerTenant(t, 'elsewhere')];
    const res = await t.post('/api/v1/auth/switch-tenant', { tenantId: stranger.tenantId }, { token: admin.accessToken });
    expect(res.status).toBe(404);
  });
});

it('never answers with a password hash or a stored token digest', async () => {
  const admin = await registerTenant(t, 'secrets');
  const user = await User.findByPk(admin.userId);
  const digests = (await RefreshToken.findAll({ where: { userId: admin.userId } })).map((r) => r.tokenHash);
  const responses = [
    await t.post('/api/v1/auth/login', { email: admin.email, password: admin.password }),
    await t.post('/api/v1/auth/refresh', { refreshToken: admin.refreshToken }),
    await me(admin.accessToken),
  ];
  for (const res of responses) {
    expect(res.text).not.toMatch(/hash/i);
    for (const secret of [user?.passwordHash ?? '$2', ...digests]) expect(res.text).not.toContain(secret);
  }
});
