import { startTestApp, strongPassword, uniqueEmail, type TestApp } from '../harness';

// An app of its own: the models bind to one app's database pool at a time.
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ REGISTRATION_OPEN: 'false' });
});

afterAll(() => t.close());

it('refuses registration with 403 registration-closed when REGISTRATION_OPEN=false', async () => {
  const res = await t.post('/api/v1/auth/register', { email: uniqueEmail(), password: strongPassword, name: 'Late', tenantName: 'Late org' });
  expect(res.status).toBe(403);
  expect(res.body.type).toBe('/problems/registration-closed');
});
