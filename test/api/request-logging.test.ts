import { PassThrough } from 'node:stream';
import { startTestApp, strongPassword, uniqueEmail, type TestApp } from '../harness';

describe('request logging', () => {
  let t: TestApp;
  const lines: Record<string, unknown>[] = [];
  beforeAll(async () => {
    const sink = new PassThrough();
    sink.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    // Mail to a closed port fails after the answer, so a service logs an error deep inside the request.
    t = await startTestApp({ LOG_LEVEL: 'info', SMTP_URL: 'smtp://127.0.0.1:9' }, { logTo: sink });
  });
  afterAll(() => t.close());

  const waitForLine = async (predicate: (l: Record<string, unknown>) => boolean) => {
    for (let i = 0; i < 200 && !lines.some(predicate); i++) await new Promise((r) => setTimeout(r, 25));
    return lines.filter(predicate);
  };

  it('carries the request id on every line the request causes, including from services', async () => {
    const email = uniqueEmail('logged');
    const res = await t.post('/api/v1/auth/register', { email, password: strongPassword, name: 'Logged', tenantName: 'Logged org' }, { headers: { 'X-Request-Id': 'trace-me-1' } });
    expect(res.status).toBe(201);

    const traced = await waitForLine((l) => l.requestId === 'trace-me-1' && l.msg === 'mail not sent');
    expect(traced).toHaveLength(1);
    expect(await waitForLine((l) => l.requestId === 'trace-me-1' && l.msg === 'request')).toEqual([
      expect.objectContaining({ method: 'POST', route: '/api/v1/auth/register', status: 201 }),
    ]);
  });

  it('never logs tokens or passwords', async () => {
    const email = uniqueEmail('secretive');
    const res = await t.post('/api/v1/auth/register', { email, password: strongPassword, name: 'S', tenantName: 'S org' });
    await waitForLine((l) => l.requestId === res.headers['x-request-id'] && l.msg === 'mail not sent');
    const all = JSON.stringify(lines);
    expect(all).not.toContain(strongPassword);
    expect(all).not.toContain(res.body.accessToken as string);
    expect(all).not.toContain(res.body.refreshToken as string);
  });
});
