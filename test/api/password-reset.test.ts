import { PasswordReset, User } from '../../db';
import { registerTenant, startTestApp, uniqueEmail, type Member, type TestApp } from '../harness';
import { auditRows, from, mailedToken, signIn, uniqueIp } from './auth-helpers';

let t: TestApp;

beforeAll(async () => {
  // Behind a trusted proxy, so the lockout test can fail sign-ins from an address of its own.
  t = await startTestApp({ TRUST_PROXY: 'true' });
});

afterAll(() => t.close());

const newPassword = 'violet umbrella harbour 1987 quest';
const requestReset = (email: string) => t.post('/api/v1/auth/password-reset', { email });
const confirm = (token: string, password: string) => t.post('/api/v1/auth/password-reset/confirm', { token, password });

async function resetToken(m: Member): Promise<string> {
  expect((await requestReset(m.email)).status).toBe(202);
  return mailedToken(t, m.email, '/reset-password');
}

describe('POST /auth/password-reset', () => {
  it('answers 202 alike whether or not the account exists, and mails only a real account', async () => {
    const member = await registerTenant(t, 'forgetful');
    const nobody = uniqueEmail('nobody');

    const unknown = await requestReset(nobody);
    const known = await requestReset(member.email);
    expect(unknown.status).toBe(202);
    expect(known.body).toEqual(unknown.body);

    expect(await mailedToken(t, member.email, '/reset-password')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(t.mailbox.messages.filter((m) => m.to.includes(nobody))).toEqual([]);
    expect(await auditRows('auth.password_reset_requested', { resourceId: member.userId })).toHaveLength(1);
  });

  it('issues a token valid for 30 minutes', async () => {
    const member = await registerTenant(t, 'timed');
    await resetToken(member);
    const [reset] = await PasswordReset.findAll({ where: { userId: member.userId } });
    const minutes = ((reset?.expiresAt.getTime() ?? 0) - (reset?.createdAt.getTime() ?? 0)) / 60_000;
    expect(Math.round(minutes)).toBe(30);
  });
});

describe('POST /auth/password-reset/confirm', () => {
  it('sets the new password and ends every session', async () => {
    const member = await registerTenant(t, 'resetter');
    const laptop = await signIn(t, member.email, member.password);
    const token = await resetToken(member);

    expect((await confirm(token, newPassword)).status).toBe(204);

    expect((await t.post('/api/v1/auth/login', { email: member.email, password: member.password })).status).toBe(401);
    await signIn(t, member.email, newPassword);
    for (const session of [member, laptop]) {
      expect((await t.get('/api/v1/auth/me', { token: session.accessToken })).status).toBe(401);
      expect((await t.post('/api/v1/auth/refresh', { refreshToken: session.refreshToken })).status).toBe(401);
    }
    const [row] = await auditRows('auth.password_reset', { resourceId: member.userId });
    expect(JSON.stringify(row)).not.toContain(newPassword);
  });

  it('works once: the token, and every other reset link of the account, is spent', async () => {
    const member = await registerTenant(t, 'once');
    const [first, second] = [await resetToken(member), await resetToken(member)];
    expect((await confirm(second, newPassword)).status).toBe(204);

    for (const token of [second, first]) {
      const res = await confirm(token, `${newPassword} again`);
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('/problems/invalid-token');
    }
  });

  it('refuses an expired or unknown token', async () => {
    const member = await registerTenant(t, 'expired');
    const token = await resetToken(member);
    await PasswordReset.update({ expiresAt: new Date(Date.now() - 1000) }, { where: { userId: member.userId } });

    for (const candidate of [token, 'B'.repeat(43)]) expect((await confirm(candidate, newPassword)).body.type).toBe('/problems/invalid-token');
  });

  it('refuses a weak password and leaves the token usable', async () => {
    const member = await registerTenant(t, 'weakreset');
    const token = await resetToken(member);
    const weak = await confirm(token, 'weakreset123');
    expect(weak.status).toBe(422);
    expect(weak.body).toMatchObject({ type: '/problems/weak-password', feedback: expect.any(Object) });
    expect((await confirm(token, newPassword)).status).toBe(204);
  });

  it('lifts a lockout: the owner proved control of the mailbox', async () => {
    const member = await registerTenant(t, 'locked');
    const ip = uniqueIp();
    for (let i = 0; i < t.config.LOGIN_MAX_FAILURES_PER_ACCOUNT; i++) {
      await t.post('/api/v1/auth/login', { email: member.email, password: 'guess guess guess' }, from(ip));
    }
    expect((await t.post('/api/v1/auth/login', { email: member.email, password: member.password }, from(ip))).status).toBe(429);

    expect((await confirm(await resetToken(member), newPassword)).status).toBe(204);
    await signIn(t, member.email, newPassword, { ip });
    expect(await User.findByPk(member.userId)).toMatchObject({ failedLoginCount: 0, lockedUntil: null });
  });
});
