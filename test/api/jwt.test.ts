import { createHmac, generateKeyPairSync, randomUUID, sign as rsaSign } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { Membership } from '../../db';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';

let t: TestApp;
let member: Member;

beforeAll(async () => {
  t = await startTestApp();
  member = await registerTenant(t, 'jwt');
});

afterAll(() => t.close());

const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT assembled by hand, so the header can claim any algorithm. */
function forge(header: object, payload: object, signature: (signingInput: string) => string): string {
  const signingInput = `${b64url(header)}.${b64url(payload)}`;
  return `${signingInput}.${signature(signingInput)}`;
}

/** The claims of a genuine access token of `m`, with overrides. */
function claims(m: Member, overrides: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return {
    sub: m.userId,
    tid: m.tenantId,
    ep: 0,
    typ: 'access',
    iss: t.config.JWT_ISSUER,
    aud: t.config.JWT_AUDIENCE,
    iat: now,
    exp: now + 600,
    jti: randomUUID(),
    ...overrides,
  };
}

const hs256 = (secret: string | Buffer) => (input: string) => createHmac('sha256', secret).update(input).digest('base64url');
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

async function expectRefused(token: string): Promise<void> {
  const res = await t.get('/api/v1/auth/me', { token });
  expect(res.status).toBe(401);
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body.type).toBe('/problems/unauthorized');
}

it('accepts a token signed like ours (so each refusal below is for its stated reason)', async () => {
  const res = await t.get('/api/v1/auth/me', { token: forge({ alg: 'HS256', typ: 'JWT' }, claims(member), hs256(t.config.JWT_SECRET)) });
  expect(res.status).toBe(200);
});

describe('GET /auth/me refuses with 401 problem+json', () => {
  it('alg: none', async () => {
    await expectRefused(forge({ alg: 'none', typ: 'JWT' }, claims(member), () => ''));
  });

  it('a token signed with RS256', async () => {
    await expectRefused(forge({ alg: 'RS256', typ: 'JWT' }, claims(member), (input) => rsaSign('sha256', Buffer.from(input), privateKey).toString('base64url')));
  });

  it('a token HS256-signed with a public key as the secret (HS/RS confusion)', async () => {
    const pem = publicKey.export({ type: 'spki', format: 'pem' });
    await expectRefused(forge({ alg: 'HS256', typ: 'JWT' }, claims(member), hs256(pem)));
  });

  it('a wrong signature', async () => {
    await expectRefused(forge({ alg: 'HS256', typ: 'JWT' }, claims(member), hs256('another secret of at least thirty-two bytes')));
  });

  it('a genuine token whose payload was altered', async () => {
    const [header, , signature] = member.accessToken.split('.');
    const other = await registerTenant(t, 'victim');
    await expectRefused(`${header}.${b64url(claims(member, { tid: other.tenantId }))}.${signature}`);
  });

  it('an expired token', async () => {
    const past = Math.floor(Date.now() / 1000) - 3600;
    await expectRefused(forge({ alg: 'HS256', typ: 'JWT' }, claims(member, { iat: past - 600, exp: past }), hs256(t.config.JWT_SECRET)));
  });

  it('a wrong audience', async () => {
    await expectRefused(forge({ alg: 'HS256', typ: 'JWT' }, claims(member, { aud: 'someone-else' }), hs256(t.config.JWT_SECRET)));
  });

  it('a wrong issuer', async () => {
    await expectRefused(jwt.sign(claims(member, { iss: 'evil-issuer' }), t.config.JWT_SECRET, { algorithm: 'HS256' }));
  });

  it('a refresh token used as an access token', async () => {
    await expectRefused(member.refreshToken);
  });

  it('the token of a user removed from the tenant', async () => {
    const removed = await registerTenant(t, 'removed');
    await Membership.destroy({ where: { userId: removed.userId, tenantId: removed.tenantId } });
    await expectRefused(removed.accessToken);
  });

  it('a token issued before logout', async () => {
    const leaving = await registerTenant(t, 'leaving');
    expect((await t.post('/api/v1/auth/logout', undefined, { token: leaving.accessToken })).status).toBe(204);
    await expectRefused(leaving.accessToken);
  });
});
