import { Invitation, Membership, User } from '../../db';
import { registerTenant, startTestApp, strongPassword, uniqueEmail, type Member, type TestApp } from '../harness';
import { addMember } from '../harness/members';
import { auditRows, mailedToken, signIn, tokenFrom } from './auth-helpers';

let t: TestApp;
let admin: Member;

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'inviter');
});

afterAll(() => t.close());

const me = (token: string) => t.get('/api/v1/auth/me', { token });

/** Invites `email` into the admin's tenant and returns the token mailed to it. */
async function invite(email: string, role = 'member', by: Member = admin): Promise<string> {
  const res = await t.post('/api/v1/invitations', { email, role }, { token: by.accessToken });
  expect(res.status).toBe(201);
  return mailedToken(t, email, '/invitations/accept');
}

const accept = (token: string, body: object) => t.post(`/api/v1/invitations/${token}/accept`, body);

describe('POST /invitations', () => {
  it('lets an admin invite an email with a role, mailing a link to it', async () => {
    const email = uniqueEmail('invitee');
    const res = await t.post('/api/v1/invitations', { email, role: 'approver' }, { token: admin.accessToken });

    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ email, role: 'approver', invitedBy: admin.userId });
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan((t.config.INVITATION_TTL_HOURS - 1) * 3_600_000);
    const mail = await t.mailbox.next(email);
    expect(mail.text).toContain(`${t.config.PUBLIC_URL}/invitations/accept?token=${tokenFrom(mail)}`);
    expect(await auditRows('invitation.create', { resourceId: res.body.id })).toEqual([
      expect.objectContaining({ tenantId: admin.tenantId, actorId: admin.userId, details: { email, role: 'approver' } }),
    ]);
  });

  it('is for admins only', async () => {
    const member = await addMember(t, admin.tenantId, 'member');
    const res = await t.post('/api/v1/invitations', { email: uniqueEmail(), role: 'viewer' }, { token: member.accessToken });
    expect(res.status).toBe(403);
  });

  it('answers 409 for someone already in the tenant', async () => {
    const res = await t.post('/api/v1/invitations', { email: admin.email, role: 'viewer' }, { token: admin.accessToken });
    expect(res.status).toBe(409);
  });

  it('replaces a pending invitation of the same email: only the newest link works', async () => {
    const email = uniqueEmail('twice');
    const first = await invite(email);
    const second = await invite(email, 'viewer');

    expect((await accept(first, { password: strongPassword })).status).toBe(400);
    expect((await accept(second, { password: strongPassword })).status).toBe(200);
  });
});

describe('GET /invitations', () => {
  it('lists pending invitations, without their tokens, to admins', async () => {
    const tenant = await registerTenant(t, 'lister');
    const [pendingEmail, acceptedEmail] = [uniqueEmail('pending'), uniqueEmail('accepted')];
    await invite(pendingEmail, 'viewer', tenant);
    await accept(await invite(acceptedEmail, 'viewer', tenant), { password: strongPassword });

    const res = await t.get('/api/v1/invitations?limit=10', { token: tenant.accessToken });
    expect(res.status).toBe(200);
    expect(res.body.items.map((i: { email: string }) => i.email)).toEqual([pendingEmail]);
    expect(res.text).not.toMatch(/token|hash/i);

    const viewer = await addMember(t, tenant.tenantId, 'viewer');
    expect((await t.get('/api/v1/invitations', { token: viewer.accessToken })).status).toBe(403);
  });
});

describe('POST /invitations/:token/accept', () => {
  it('creates the account with the password, verified, and signs it in to the tenant with the role', async () => {
    const email = uniqueEmail('newcomer');
    const res = await accept(await invite(email, 'approver'), { password: strongPassword, name: 'New Comer' });

    expect(res.status).toBe(200);
    expect(res.body.tokenType).toBe('Bearer');
    expect((await me(res.body.accessToken)).body).toMatchObject({
      user: { email, name: 'New Comer', emailVerified: true },
      tenant: { id: admin.tenantId },
      role: 'approver',
    });
    await signIn(t, email, strongPassword);
    const user = await User.findOne({ where: { email } });
    expect(await auditRows('invitation.accept', { actorId: user?.id })).toEqual([
      expect.objectContaining({ tenantId: admin.tenantId, outcome: 'success', details: { role: 'approver', newAccount: true } }),
    ]);
  });

  it('refuses a weak password for a new account, leaving the invitation usable', async () => {
    const email = uniqueEmail('weakling');
    const token = await invite(email);
    const weak = await accept(token, { password: 'password1' });
    expect(weak.status).toBe(422);
    expect(weak.body.type).toBe('/problems/weak-password');
    expect((await accept(token, { password: strongPassword })).status).toBe(200);
  });

  it('adds an existing account when its own password is given, and refuses a wrong one', async () => {
    const elsewhere = await registerTenant(t, 'existing');
    const token = await invite(elsewhere.email, 'viewer');

    const wrong = await accept(token, { password: 'not my password at all' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.type).toBe('/problems/invalid-credentials');

    const res = await accept(token, { password: elsewhere.password });
    expect(res.status).toBe(200);
    const session = await me(res.body.accessToken);
    expect(session.body).toMatchObject({ user: { id: elsewhere.userId }, tenant: { id: admin.tenantId }, role: 'viewer' });
    expect(session.body.tenants).toHaveLength(2);
  });

  it('answers 409 when the account has become a member meanwhile, leaving the invitation pending', async () => {
    const joined = await registerTenant(t, 'joined');
    const token = await invite(joined.email, 'viewer');
    await Membership.create({ tenantId: admin.tenantId, userId: joined.userId, role: 'member' });

    const res = await accept(token, { password: joined.password });
    expect(res.status).toBe(409);
    expect(await Invitation.findOne({ where: { email: joined.email, tenantId: admin.tenantId } })).toMatchObject({ acceptedAt: null });
  });

  it('answers 400 invalid-token for a used, expired or unknown token', async () => {
    const used = await invite(uniqueEmail('used'));
    expect((await accept(used, { password: strongPassword })).status).toBe(200);

    const expiringEmail = uniqueEmail('late');
    const expired = await invite(expiringEmail);
    await Invitation.update({ expiresAt: new Date(Date.now() - 1000) }, { where: { email: expiringEmail } });

    for (const token of [used, expired, 'A'.repeat(43)]) {
      const res = await accept(token, { password: strongPassword });
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('/problems/invalid-token');
    }
  });

  it('lets one of two simultaneous acceptances of a link win', async () => {
    const token = await invite(uniqueEmail('racer'));
    const results = await Promise.all([1, 2].map(() => accept(token, { password: strongPassword })));
    expect(results.map((r) => r.status).sort()).toEqual([200, 400]);
  });
});
