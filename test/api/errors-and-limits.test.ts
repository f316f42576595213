import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';

describe('errors, limits and headers', () => {
  let t: TestApp;
  let admin: Member;
  beforeAll(async () => {
    t = await startTestApp({ BODY_LIMIT_BYTES: '2048', CORS_ORIGINS: 'https://app.example.test' });
    admin = await registerTenant(t);
  });
  afterAll(() => t.close());

  const expectProblem = (res: { status: number; headers: Record<string, string>; body: Record<string, unknown> }, status: number, slug: string) => {
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ type: `/problems/${slug}`, status });
    expect(typeof res.body.title).toBe('string');
    expect(res.body.requestId).toBe(res.headers['x-request-id']);
    expect(JSON.stringify(res.body)).not.toMatch(/\bat .*\.(ts|js):\d+/); // never a stack trace
  };

  /** A body streamed in chunks, with no Content-Length to trust or to check up front. */
  function postChunked(path: string, body: string, token: string) {
    const { port } = t.server.address() as AddressInfo;
    return new Promise<{ status: number; headers: Record<string, string>; body: Record<string, unknown> }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: JSON.parse(text) as Record<string, unknown> }));
      });
      req.on('error', reject);
      for (let i = 0; i < body.length; i += 512) req.write(body.slice(i, i + 512));
      req.end();
    });
  }

  it('an unknown route answers 404 route-not-found', async () => {
    expectProblem(await t.get('/api/v1/no-such-thing'), 404, 'route-not-found');
    expectProblem(await t.get('/nowhere'), 404, 'route-not-found');
  });

  it('a wrong method answers 405 with Allow', async () => {
    const res = await t.raw().put('/api/v1/projects').set('Authorization', `Bearer ${admin.accessToken}`);
    expectProblem(res, 405, 'method-not-allowed');
    expect(res.headers.allow).toMatch(/GET/);
    expect(res.headers.allow).toMatch(/POST/);
  });

  it('a body over the limit answers 413, even when Content-Length is absent', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(4096) });
    expectProblem(
      await t.raw().post('/api/v1/projects').set('Authorization', `Bearer ${admin.accessToken}`).set('Content-Type', 'application/json').send(big),
      413,
      'payload-too-large',
    );
    expectProblem(await postChunked('/api/v1/projects', big, admin.accessToken), 413, 'payload-too-large');
  });

  it('a body that is not JSON answers 415', async () => {
    const res = await t.raw().post('/api/v1/projects').set('Authorization', `Bearer ${admin.accessToken}`).set('Content-Type', 'text/plain').send('name=x');
    expectProblem(res, 415, 'unsupported-media-type');
  });

  it('malformed JSON answers 400 malformed-json', async () => {
    const res = await t.raw().post('/api/v1/projects').set('Authorization', `Bearer ${admin.accessToken}`).set('Content-Type', 'application/json').send('{"name": ');
    expectProblem(res, 400, 'malformed-json');
  });

  it('invalid fields answer 400 with one error per field', async () => {
    const res = await t.post('/api/v1/projects', { name: '', settings: 'nope' }, { token: admin.accessToken });
    expectProblem(res, 400, 'validation-error');
    const paths = (res.body.errors as { path: string }[]).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['body.name', 'body.settings']));
  });

  it('an invalid path id answers 400, not 500', async () => {
    const res = await t.get('/api/v1/projects/not-a-uuid', { token: admin.accessToken });
    expectProblem(res, 400, 'validation-error');
  });

  it('a malformed Authorization header or token answers 401 with WWW-Authenticate', async () => {
    for (const header of ['Basic abc', 'Bearer', 'Bearer not.a.jwt']) {
      const res = await t.get('/api/v1/projects', { headers: { Authorization: header } });
      expectProblem(res, 401, 'unauthorized');
      expect(res.headers['www-authenticate']).toBe('Bearer');
    }
  });

  it('every response carries a request id (echoed when valid) and security headers', async () => {
    const echoed = await t.get('/api/v1/health', { headers: { 'X-Request-Id': 'ci-build-42' } });
    expect(echoed.headers['x-request-id']).toBe('ci-build-42');
    const minted = await t.get('/api/v1/health', { headers: { 'X-Request-Id': 'bad id with spaces' } });
    expect(minted.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    for (const res of [echoed, await t.get('/api/v1/nowhere')]) {
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(res.headers['x-frame-options']).toBe('DENY');
    }
  });

  it('CORS answers only configured origins and never reflects an arbitrary one', async () => {
    const allowed = await t.get('/api/v1/health', { headers: { Origin: 'https://app.example.test' } });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://app.example.test');
    const other = await t.get('/api/v1/health', { headers: { Origin: 'https://evil.example' } });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const preflight = await t
      .raw()
      .options('/api/v1/projects')
      .set('Origin', 'https://app.example.test')
      .set('Access-Control-Request-Method', 'POST');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-headers']).toMatch(/Authorization/);
  });

  it('each problem type is documented where its type points', async () => {
    const res = await t.get('/problems/payload-too-large');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ type: '/problems/payload-too-large', title: 'Payload too large' });
  });
});
