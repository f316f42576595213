import { randomInt } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { registerTenant, startTestApp, strongPassword, uniqueEmail, type TestApp } from '../harness';
import { responseValidator } from '../harness/openapi-validator';
import { auditRows, from, mailedToken, uniqueIp } from './auth-helpers';

const limits = { LOGIN_MAX_FAILURES_PER_ACCOUNT: '3', LOGIN_MAX_FAILURES_PER_IP: '5', LOGIN_LOCKOUT_SECONDS: '600' };
const wrong = 'not the password, sorry';

function expectThrottled(res: { status: number; body: { type: string; retryAfter: number }; headers: Record<string, string> }): void {
  expect(res.status).toBe(429);
  expect(res.body.type).toBe('/problems/too-many-requests');
  const retryAfter = Number(res.headers['retry-after']);
  expect(retryAfter).toBeGreaterThan(0);
  expect(retryAfter).toBeLessThanOrEqual(600);
  expect(res.body.retryAfter).toBe(retryAfter);
}

// Each describe starts and closes its own app: the models bind to one app's pool at a time.
describe('behind a trusted proxy (TRUST_PROXY=true)', () => {
  let t: TestApp;
  const login = (email: string, password: string, ip = uniqueIp()) => t.post('/api/v1/auth/login', { email, password }, from(ip));

  beforeAll(async () => {
    t = await startTestApp({ ...limits, TRUST_PROXY: 'true' });
  });

  afterAll(() => t.close());

  it('locks an account after its failures from any addresses, even against the right password', async () => {
    const victim = await registerTenant(t, 'victim');
    for (let i = 0; i < 3; i++) expect((await login(victim.email, wrong)).status).toBe(401);

    expectThrottled(await login(victim.email, victim.password));
    expect(await auditRows('auth.login', { resourceId: victim.userId })).toEqual([
      ...Array.from({ length: 3 }, () => expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ reason: 'wrong_password' }) })),
      expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ reason: 'account_locked' }) }),
    ]);
  });

  it('resets the account count on a successful sign-in', async () => {
    const member = await registerTenant(t, 'typo');
    for (const password of [wrong, wrong, member.password, wrong, wrong]) await login(member.email, password);
    expect((await login(member.email, member.password)).status).toBe(200);
  });

  it('locks an unknown email alike, so a lockout does not reveal an account', async () => {
    const nobody = uniqueEmail('nobody');
    for (let i = 0; i < 3; i++) expect((await login(nobody, wrong)).status).toBe(401);
    expectThrottled(await login(nobody, wrong));
  });

  it('limits failures per client address taken from X-Forwarded-For', async () => {
    const member = await registerTenant(t, 'office');
    const attacker = uniqueIp();
    for (let i = 0; i < 5; i++) expect((await login(uniqueEmail('spray'), wrong, attacker)).status).toBe(401);

    expectThrottled(await login(member.email, member.password, attacker));
    expect((await login(member.email, member.password, uniqueIp())).status).toBe(200);
    expect(await auditRows('auth.login', { resourceId: member.userId })).toContainEqual(
      expect.objectContaining({ outcome: 'failure', ip: attacker, details: expect.objectContaining({ reason: 'ip_throttled' }) }),
    );
  });

  it('believes only the entry the trusted proxy appended, not one the client wrote before it', async () => {
    const member = await registerTenant(t, 'spoofer');
    const real = uniqueIp();
    expect((await t.post('/api/v1/auth/login', { email: member.email, password: wrong }, from(`${uniqueIp()}, ${real}`))).status).toBe(401);
    expect(await auditRows('auth.login', { resourceId: member.userId })).toEqual([expect.objectContaining({ outcome: 'failure', ip: real })]);
  });

  it('counts guesses sent in parallel before any of them is answered', async () => {
    const victim = await registerTenant(t, 'parallel');
    const results = await Promise.all(Array.from({ length: 10 }, () => login(victim.email, wrong)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(7);
  });

  it('applies the same limits to the password of an existing account accepting an invitation', async () => {
    const inviter = await registerTenant(t, 'inviter');
    const invitee = await registerTenant(t, 'invitee');
    await t.post('/api/v1/invitations', { email: invitee.email, role: 'viewer' }, { token: inviter.accessToken });
    const token = await mailedToken(t, invitee.email, '/invitations/accept');
    const accept = (password: string) => t.post(`/api/v1/invitations/${token}/accept`, { password }, from(uniqueIp()));

    for (let i = 0; i < 3; i++) expect((await accept(`${wrong} ${i}`)).status).toBe(401);
    expectThrottled(await accept(strongPassword));
    expect(await auditRows('invitation.accept', { resourceId: invitee.userId })).toHaveLength(4);
  });
});

describe('without a trusted proxy (TRUST_PROXY=false)', () => {
  let t: TestApp;
  let validate: ReturnType<typeof responseValidator>;

  beforeAll(async () => {
    t = await startTestApp({ ...limits, TRUST_PROXY: 'false' });
    validate = responseValidator(t.openapi);
  });

  afterAll(() => t.close());

  /** A loopback address of its own (the whole 127/8 reaches the server), so no other suite shares its count. */
  const loopbackAddress = () => `127.${randomInt(1, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;

  /** Signs in from `localAddress`, claiming another client in X-Forwarded-For. */
  function loginFrom(localAddress: string, email: string, password: string) {
    const { port } = t.server.address() as AddressInfo;
    const body = JSON.stringify({ email, password });
    return new Promise<{ status: number; headers: Record<string, string>; body: { type: string; retryAfter: number } }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          localAddress,
          method: 'POST',
          path: '/api/v1/auth/login',
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), 'X-Forwarded-For': uniqueIp() },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            const parsed = JSON.parse(text);
            validate('post', '/api/v1/auth/login', res.statusCode ?? 0, String(res.headers['content-type']), parsed);
            resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: parsed });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  it('ignores X-Forwarded-For and counts failures per socket address', async () => {
    const member = await registerTenant(t, 'direct');
    const attacker = loopbackAddress();
    for (let i = 0; i < 5; i++) expect((await loginFrom(attacker, uniqueEmail('spray'), wrong)).status).toBe(401);

    expectThrottled(await loginFrom(attacker, member.email, member.password));
    expect((await loginFrom(loopbackAddress(), member.email, member.password)).status).toBe(200);
    expect(await auditRows('auth.login', { resourceId: member.userId })).toContainEqual(
      expect.objectContaining({ ip: attacker, details: expect.objectContaining({ reason: 'ip_throttled' }) }),
    );
  });
});
