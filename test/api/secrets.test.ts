import { randomBytes, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { AuditLog, SecretAccessLog, SecretVersion } from '../../db';
import { TamperedCiphertextError } from '../../lib/envelope';
import { resolveSecret, SecretReferenceError } from '../../services/vault';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';

/*
 * The vault through its API and `resolveSecret`, on the real database. The app keeps two disabled
 * versions per secret, and its log output is captured: no response, log line or audit row may
 * ever contain a value written to the vault.
 */

let t: TestApp;
let admin: Member;
let outsider: Member;
const logOutput: string[] = [];
/** Every value this file writes, to be looked for wherever it must not appear. */
const writtenValues: string[] = [];
/** Every response this file receives, for the same search. */
const responses: TestResponse[] = [];

const newValue = (label = 'value') => {
  const value = `${label}-${randomBytes(12).toString('hex')}`;
  writtenValues.push(value);
  return value;
};
const vault = () => ({ sequelize: t.sequelize, config: t.config });
const as = (m: Member) => ({ token: m.accessToken });

async function call<R extends TestResponse>(response: Promise<R>): Promise<R> {
  const res = await response;
  responses.push(res);
  return res;
}

async function createSecret(owner: Member, body: { name?: string; value?: string; description?: string } = {}) {
  const res = await call(t.post('/api/v1/secrets', { name: `s-${randomUUID().slice(0, 8)}`, value: newValue(), ...body }, as(owner)));
  expect(res.status).toBe(201);
  return res.body as { id: string; name: string; reference: string; currentVersion: number };
}

beforeAll(async () => {
  const sink = new PassThrough();
  sink.on('data', (chunk: Buffer) => logOutput.push(chunk.toString()));
  t = await startTestApp({ LOG_LEVEL: 'trace', VAULT_KEEP_VERSIONS: '2' }, { logTo: sink });
  admin = await registerTenant(t, 'vault');
  outsider = await registerTenant(t, 'vault-outsider');
});
afterAll(async () => {
  // What every test wrote must appear in no response, log line or audit row.
  const audit = JSON.stringify(await AuditLog.findAll({ where: { tenantId: [admin.tenantId, outsider.tenantId] } }));
  const said = responses.map((r) => r.text).join('\n');
  const logged = logOutput.join('');
  expect(logged).toContain('"msg":"request"'); // the capture works
  for (const value of writtenValues) {
    expect([value, said.includes(value), logged.includes(value), audit.includes(value)]).toEqual([value, false, false, false]);
  }
  await t.close();
});

describe('secrets API', () => {
  test('creating a secret answers its metadata and reference, never the value; the database holds only ciphertext', async () => {
    const value = newValue('ghp');
    const res = await call(t.post('/api/v1/secrets', { name: 'git-token', value, description: 'CI checkout' }, as(admin)));
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe(`/api/v1/secrets/${res.body.id}`);
    expect(res.body).toMatchObject({ name: 'git-token', reference: 'secret://git-token', description: 'CI checkout', currentVersion: 1, createdBy: `user:${admin.userId}` });
    expect(res.body).not.toHaveProperty('value');

    const stored = await SecretVersion.findAll({ where: { secretId: res.body.id } });
    expect(stored).toHaveLength(1);
    expect(stored[0]?.masterKeyId).toBe(t.config.vaultKeyring.currentKeyId);
    expect(JSON.stringify(stored.map((v) => v.toJSON()))).not.toContain(value);
    expect(stored[0]?.ciphertext.includes(Buffer.from(value))).toBe(false);

    expect(await resolveSecret(vault(), 'secret://git-token', { tenantId: admin.tenantId })).toBe(value);
  });

  test('list and get answer metadata only; get lists the versions', async () => {
    const created = await createSecret(admin, { description: 'listed' });
    const list = await call(t.get('/api/v1/secrets?limit=100', as(admin)));
    expect(list.status).toBe(200);
    expect(list.body.items).toContainEqual(expect.objectContaining({ id: created.id, name: created.name, description: 'listed' }));

    const read = await call(t.get(`/api/v1/secrets/${created.id}`, as(admin)));
    expect(read.status).toBe(200);
    expect(read.body.versions).toEqual([{ version: 1, enabled: true, masterKeyId: t.config.vaultKeyring.currentKeyId, createdAt: expect.any(String) }]);
  });

  test('the list walks every secret once, oldest first, page by page', async () => {
    const owner = await registerTenant(t, 'vault-pages');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createSecret(owner)).id);
    const first = await call(t.get('/api/v1/secrets?limit=2', as(owner)));
    const second = await call(t.get(`/api/v1/secrets?limit=2&cursor=${first.body.nextCursor}`, as(owner)));
    expect([...first.body.items, ...second.body.items].map((s: { id: string }) => s.id)).toEqual(ids);
    expect(second.body.nextCursor).toBeNull();
  });

  test.each([
    ['an upper-case name', { name: 'Git-Token' }, 'body.name'],
    ['a name starting with a dot', { name: '.hidden' }, 'body.name'],
    ['a name of 64 characters', { name: 'a'.repeat(64) }, 'body.name'],
    ['a name with a slash', { name: 'a/b' }, 'body.name'],
    ['an empty value', { value: '' }, 'body.value'],
    ['a value over 64 KiB', { value: 'é'.repeat(32 * 1024 + 1) }, 'body.value'],
  ])('refuses %s with 400', async (_label, body, path) => {
    const res = await call(t.post('/api/v1/secrets', { name: 'valid-name', value: newValue(), ...body }, as(admin)));
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([expect.objectContaining({ path })]);
  });

  test('a value of exactly 64 KiB is accepted', async () => {
    const value = `${newValue()}`.padEnd(64 * 1024, 'x');
    writtenValues.push(value);
    const created = await createSecret(admin, { value });
    expect(await resolveSecret(vault(), created.reference, { tenantId: admin.tenantId })).toBe(value);
  });

  test('names are unique per tenant: 409 in the same tenant, fine in another', async () => {
    const created = await createSecret(admin);
    const again = await call(t.post('/api/v1/secrets', { name: created.name, value: newValue() }, as(admin)));
    expect(again.status).toBe(409);
    expect(again.body.type).toBe('/problems/conflict');
    await createSecret(outsider, { name: created.name });
  });

  test('rotation makes a new current version, disables older ones and keeps only VAULT_KEEP_VERSIONS of them', async () => {
    const created = await createSecret(admin);
    let last = '';
    for (let i = 0; i < 4; i++) {
      last = newValue('rotated');
      const res = await call(t.post(`/api/v1/secrets/${created.id}/rotate`, { value: last }, as(admin)));
      expect(res.status).toBe(200);
      expect(res.body.currentVersion).toBe(i + 2);
    }
    const read = await call(t.get(`/api/v1/secrets/${created.id}`, as(admin)));
    expect(read.body.versions.map((v: { version: number; enabled: boolean }) => [v.version, v.enabled])).toEqual([
      [5, true],
      [4, false],
      [3, false],
    ]);
    expect(await resolveSecret(vault(), created.reference, { tenantId: admin.tenantId })).toBe(last);
    const audited = await AuditLog.findAll({ where: { resourceId: created.id }, order: [['id', 'ASC']] });
    expect(audited.map((a) => a.action)).toEqual(['secret.create', 'secret.rotate', 'secret.rotate', 'secret.rotate', 'secret.rotate']);
    expect(audited.at(-1)?.details).toEqual({ name: created.name, version: 5, prunedVersions: 1 });
  });

  test("another tenant's secret answers 404 on every route and stays unchanged", async () => {
    const theirs = await createSecret(outsider);
    const attempts = [
      t.get(`/api/v1/secrets/${theirs.id}`, as(admin)),
      t.post(`/api/v1/secrets/${theirs.id}/rotate`, { value: newValue() }, as(admin)),
      t.delete(`/api/v1/secrets/${theirs.id}?force=true`, as(admin)),
      t.get(`/api/v1/secrets/${theirs.id}/access-log`, as(admin)),
    ];
    for (const res of await Promise.all(attempts.map(call))) {
      expect(res.status).toBe(404);
      expect(res.body.type).toBe('/problems/not-found');
    }
    expect((await call(t.get(`/api/v1/secrets/${theirs.id}`, as(outsider)))).body.currentVersion).toBe(1);
    await expect(resolveSecret(vault(), theirs.reference, { tenantId: admin.tenantId })).rejects.toMatchObject({ reason: 'missing' });
  });

  test('deleting a secret that projects reference answers 409 listing them; ?force=true deletes it', async () => {
    const created = await createSecret(admin, { name: 'deploy-key' });
    const project = async (name: string, settings: Record<string, unknown>) =>
      (await call(t.post('/api/v1/projects', { name, settings }, as(admin)))).body as { id: string; name: string };
    const nested = await project(`nested ${randomUUID()}`, { git: { remotes: [{ url: 'https://x', token: 'secret://deploy-key' }] } });
    const top = await project(`top ${randomUUID()}`, { token: 'secret://deploy-key' });
    await project(`other ${randomUUID()}`, { token: 'secret://deploy-key-2', note: 'secret://deploy-key is mentioned, not referenced' });

    const refused = await call(t.delete(`/api/v1/secrets/${created.id}`, as(admin)));
    expect(refused.status).toBe(409);
    expect(refused.body.type).toBe('/problems/secret-in-use');
    expect(refused.body.references).toEqual([
      { type: 'project', id: nested.id, name: nested.name },
      { type: 'project', id: top.id, name: top.name },
    ]);
    expect(await resolveSecret(vault(), created.reference, { tenantId: admin.tenantId })).toBeDefined();

    const forced = await call(t.delete(`/api/v1/secrets/${created.id}?force=true`, as(admin)));
    expect(forced.status).toBe(204);
    expect((await call(t.get(`/api/v1/secrets/${created.id}`, as(admin)))).status).toBe(404);
    expect(await SecretVersion.count({ where: { secretId: created.id } })).toBe(0);
    const deletion = await AuditLog.findOne({ where: { resourceId: created.id, action: 'secret.delete' } });
    expect(deletion?.details).toMatchObject({ name: 'deploy-key', forced: true, references: refused.body.references });

    const unreferenced = await call(t.delete(`/api/v1/secrets/${(await createSecret(admin)).id}`, as(admin)));
    expect(unreferenced.status).toBe(204);
  });

  test("deleting the secret the tenant's LLM settings hold as their API key answers 409 naming them", async () => {
    const llmKey = await createSecret(admin, { name: `llm-key-${randomUUID().slice(0, 8)}` });
    const saved = await call(t.put('/api/v1/llm/settings', { chat: { provider: 'openai', apiKey: llmKey.reference } }, as(admin)));
    expect(saved.status).toBe(200);

    const refused = await call(t.delete(`/api/v1/secrets/${llmKey.id}`, as(admin)));
    expect(refused.status).toBe(409);
    expect(refused.body.references).toEqual([{ type: 'llmSettings', id: admin.tenantId, name: 'LLM settings' }]);

    expect((await call(t.put('/api/v1/llm/settings', {}, as(admin)))).status).toBe(200);
    expect((await call(t.delete(`/api/v1/secrets/${llmKey.id}`, as(admin)))).status).toBe(204);
  });
});

describe('resolveSecret and the access log', () => {
  test('each resolution writes an access-log row, listed newest first with job and activity', async () => {
    const created = await createSecret(admin);
    const jobId = randomUUID();
    await resolveSecret(vault(), created.reference, { tenantId: admin.tenantId, jobId, activity: 'cloneRepository' });
    await call(t.post(`/api/v1/secrets/${created.id}/rotate`, { value: newValue() }, as(admin)));
    await resolveSecret(vault(), created.reference, { tenantId: admin.tenantId, actor: `user:${admin.userId}` });
    await resolveSecret(vault(), created.reference, { tenantId: admin.tenantId, jobId, activity: 'pushReport' });

    const first = await call(t.get(`/api/v1/secrets/${created.id}/access-log?limit=2`, as(admin)));
    expect(first.status).toBe(200);
    const second = await call(t.get(`/api/v1/secrets/${created.id}/access-log?limit=2&cursor=${first.body.nextCursor}`, as(admin)));
    const entries = [...first.body.items, ...second.body.items];
    expect(entries.map((e) => [e.version, e.jobId, e.activity, e.actor])).toEqual([
      [2, jobId, 'pushReport', null],
      [2, null, null, `user:${admin.userId}`],
      [1, jobId, 'cloneRepository', null],
    ]);
    expect(second.body.nextCursor).toBeNull();
    expect(await SecretAccessLog.count({ where: { secretId: created.id, tenantId: admin.tenantId } })).toBe(3);
  });

  test.each([
    ['a missing secret', 'secret://no-such-secret', 'missing'],
    ['a reference without the scheme', 'no-such-secret', 'malformed'],
    ['a reference with a bad name', 'secret://Not Valid', 'malformed'],
  ])('%s is a typed error naming the reference', async (_label, ref, reason) => {
    const attempt = resolveSecret(vault(), ref, { tenantId: admin.tenantId });
    await expect(attempt).rejects.toBeInstanceOf(SecretReferenceError);
    await expect(attempt).rejects.toMatchObject({ reference: ref, reason, status: 422, slug: 'unresolvable-secret-reference' });
  });

  test('a ciphertext moved to another secret or another version is detected, never decrypted', async () => {
    const a = await createSecret(admin);
    const b = await createSecret(admin);
    const encrypted = ['ciphertext', 'iv', 'authTag', 'wrappedDataKey', 'dataKeyIv', 'dataKeyAuthTag'] as const;
    const copy = async (from: { secretId: string; version: number }, to: { secretId: string; version: number }) => {
      const source = await SecretVersion.findOne({ where: from, rejectOnEmpty: true });
      await SecretVersion.update(Object.fromEntries(encrypted.map((f) => [f, source[f]])), { where: to });
    };
    // Another secret's version, byte for byte.
    await copy({ secretId: a.id, version: 1 }, { secretId: b.id, version: 1 });
    await expect(resolveSecret(vault(), b.reference, { tenantId: admin.tenantId })).rejects.toBeInstanceOf(TamperedCiphertextError);

    // An older version of the same secret put in the place of the current one.
    await call(t.post(`/api/v1/secrets/${a.id}/rotate`, { value: newValue() }, as(admin)));
    await copy({ secretId: a.id, version: 1 }, { secretId: a.id, version: 2 });
    await expect(resolveSecret(vault(), a.reference, { tenantId: admin.tenantId })).rejects.toBeInstanceOf(TamperedCiphertextError);

    // The attempts are on record all the same.
    expect(await SecretAccessLog.count({ where: { secretId: [a.id, b.id] } })).toBe(2);
  });
});
