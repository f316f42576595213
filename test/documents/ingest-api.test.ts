import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { IngestionItem, Job } from '../../db';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';
import { zipOf } from '../harness/zip';
import { createProject } from '../jobs/job-helpers';
import { uploadDocuments } from './ingest-helpers';

/*
 * Starting ingestions through the API (issue 7, criterion 1). No worker runs in this file: a
 * started job stays queued with its items, which is all these tests need; what is refused is
 * refused before anything is stored or connected to.
 */

const MAX_DOCUMENT_BYTES = 2048;
const MAX_DOCUMENTS = 3;

let t: TestApp;
let admin: Member;
let outsider: Member;
let canary: Server;
let canaryUrl: string;
let canaryHits = 0;

beforeAll(async () => {
  // A server nobody may reach: every URL test pointing at it must be refused before connecting.
  canary = createServer((_req, res) => {
    canaryHits += 1;
    res.end('reached');
  });
  await new Promise<void>((resolve) => canary.listen(0, '127.0.0.1', resolve));
  canaryUrl = `http://127.0.0.1:${(canary.address() as AddressInfo).port}`;
  t = await startTestApp({ INGEST_ALLOWED_HOSTS: 'docs.example.test', INGEST_MAX_DOCUMENT_BYTES: String(MAX_DOCUMENT_BYTES), INGEST_MAX_DOCUMENTS: String(MAX_DOCUMENTS) });
  admin = await registerTenant(t, 'ingest-api');
  outsider = await registerTenant(t, 'ingest-api-outsider');
});
afterAll(async () => {
  await t.close();
  await new Promise((resolve) => canary.close(resolve));
});

function expectProblem(res: TestResponse, status: number, slug: string, extra: Record<string, unknown> = {}): void {
  expect({ status: res.status, type: res.body.type }).toEqual({ status, type: `/problems/${slug}` });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject(extra);
}

const ingest = (projectId: string, body: unknown, as: Member = admin, headers: Record<string, string> = {}) =>
  t.post(`/api/v1/projects/${projectId}/documents`, body, { token: as.accessToken, headers });

const blobsOf = (projectId: string) => t.blobs.countPrefix(`projects/${projectId}/documents/`);

describe('starting an ingestion', () => {
  test('files, a ZIP, URLs and a text each answer 202 with a queued job whose items name the documents', async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-api');
    const archive = await zipOf({ 'docs/a.md': '# A\n', 'docs/b.md': '# B\n' });
    const files = await uploadDocuments(t, admin.accessToken, project.id, [
      { name: 'one.md', content: '# One\n' },
      { name: 'two.html', content: '<p>Two</p>', type: 'text/html' },
      { name: 'bundle.zip', content: archive, type: 'application/zip' },
    ]);
    expect(files.status).toBe(202);
    expect(files.headers.location).toBe(`/api/v1/jobs/${files.body.id}`);
    expect(files.body).toMatchObject({ kind: 'ingestDocuments', status: 'queued', projectId: project.id });
    const items = await IngestionItem.findAll({ where: { jobId: files.body.id }, order: [['seq', 'ASC']] });
    expect(items.map((i) => [i.sourceKey, i.sourceType, i.origin, i.format])).toEqual([
      ['one.md', 'file', 'files', 'markdown'],
      ['two.html', 'file', 'files', 'html'],
      ['bundle.zip', 'archive', 'archive:bundle.zip', null],
    ]);
    // The bytes are in the blob store under the project's prefix; the workflow gets none of them.
    expect(await blobsOf(project.id)).toBe(3);
    const job = await Job.findByPk(files.body.id, { rejectOnEmpty: true });
    expect(Object.keys(job.params).sort()).toEqual(['batchSize', 'batchesPerRun', 'blobPrefix', 'llmTaskQueue', 'mode', 'parallelism']);

    const urls = await ingest(project.id, { urls: ['https://docs.example.test/a', 'https://docs.example.test/a', 'https://docs.example.test/b'], mode: 'sync' });
    // docs.example.test is allowlisted but resolves nowhere: refused before anything connects.
    expectProblem(urls, 422, 'unsafe-document-url', { code: 'unresolvable' });

    // Another project: this one's ingestion is still queued (no worker runs here).
    const notes = await createProject(t, admin.accessToken, 'ingest-api-text');
    const text = await ingest(notes.id, { title: 'Notes', text: '# Notes\n\nSome notes.' });
    expect(text.status).toBe(202);
    expect(await IngestionItem.findAll({ where: { jobId: text.body.id }, attributes: ['sourceKey', 'sourceType', 'origin', 'format'], raw: true })).toEqual([
      { sourceKey: 'Notes', sourceType: 'text', origin: 'text', format: 'markdown' },
    ]);
    expect((await Job.findByPk(text.body.id, { rejectOnEmpty: true })).params).toMatchObject({ mode: 'add' });
  });

  test('an unsupported file answers 415 naming it; nothing is stored and no job starts', async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-415');
    const res = await uploadDocuments(t, admin.accessToken, project.id, [
      { name: 'fine.md', content: '# Fine\n' },
      { name: 'photo.png', content: Buffer.from([0x89, 0x50, 0x4e, 0x47]), type: 'image/png' },
    ]);
    expectProblem(res, 415, 'unsupported-media-type', { file: 'photo.png' });
    expect(res.body.detail).toContain('"photo.png"');
    expect(await blobsOf(project.id)).toBe(0);
    expect(await Job.count({ where: { projectId: project.id } })).toBe(0);
  });

  test('a document above INGEST_MAX_DOCUMENT_BYTES answers 413, as does a text; too many documents 400', async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-413');
    const big = await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'big.md', content: 'x'.repeat(MAX_DOCUMENT_BYTES + 1) }]);
    expectProblem(big, 413, 'payload-too-large', { limit: MAX_DOCUMENT_BYTES });
    expect(big.body.detail).toContain('"big.md"');
    expectProblem(await ingest(project.id, { title: 'Big', text: 'x'.repeat(MAX_DOCUMENT_BYTES + 1) }), 413, 'payload-too-large');
    const many = await uploadDocuments(
      t,
      admin.accessToken,
      project.id,
      Array.from({ length: MAX_DOCUMENTS + 1 }, (_, i) => ({ name: `d${i}.md`, content: `# ${i}\n` })),
    );
    expectProblem(many, 400, 'validation-error');
    expectProblem(await ingest(project.id, { urls: Array.from({ length: MAX_DOCUMENTS + 1 }, (_, i) => `https://docs.example.test/${i}`) }), 400, 'validation-error');
    expect(await blobsOf(project.id)).toBe(0);
    expect(await Job.count({ where: { projectId: project.id } })).toBe(0);
  });

  test('a hostile archive is refused at upload (422)', async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-zip-422');
    const res = await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'broken.zip', content: Buffer.from('PK\u0003\u0004 not a zip at all'), type: 'application/zip' }]);
    expectProblem(res, 422, 'archive-rejected', { code: 'corrupt' });
    expect(await blobsOf(project.id)).toBe(0);
  });

  test.each([
    ['a file: URL', 'file:///etc/passwd', 'scheme-not-allowed', /https:\/\/ \(or http:\/\/\) URLs only, not file:/],
    ['a loopback address', () => `${canaryUrl}/doc.md`, 'non-public-address', /127\.0\.0\.1 is not public/],
    ['the cloud metadata address', 'http://169.254.169.254/latest/meta-data/', 'non-public-address', /169\.254\.169\.254 is not public/],
    ['a private address', 'http://10.0.0.7/doc.md', 'non-public-address', /10\.0\.0\.7 is not public/],
    ['credentials in the URL', 'https://user:secret@docs.example.test/doc.md', 'credentials-in-url', /^The document URL carries credentials/],
    ['a host not allowlisted', 'https://elsewhere.example.test/doc.md', 'host-not-allowed', /elsewhere\.example\.test is not in the allowlist \(INGEST_ALLOWED_HOSTS\)/],
    ['another scheme', 'ftp://docs.example.test/doc.md', 'scheme-not-allowed', /URLs only, not ftp:/],
    ['a git option', '--upload-pack=touch /tmp/x', 'scheme-not-allowed', /URLs only\.$/],
  ])('%s is refused with 422 unsafe-document-url before anything connects', async (_label, url, code, detail) => {
    const project = await createProject(t, admin.accessToken, 'ingest-422');
    const res = await ingest(project.id, { urls: [typeof url === 'function' ? url() : url] });
    expectProblem(res, 422, 'unsafe-document-url', { code, detail: expect.stringMatching(detail) });
    // Nothing about repositories or the scans' allowlist in a document's refusal.
    expect(res.body.detail).not.toMatch(/repository|SCAN_/);
    expect(canaryHits).toBe(0);
    expect(await Job.count({ where: { projectId: project.id } })).toBe(0);
  });

  test('one ingestion of a project at a time: 409 while one is queued, even when two start at once; other projects go on', async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-409');
    const first = await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'a.md', content: '# A\n' }]);
    expect(first).toMatchObject({ status: 202, body: { status: 'queued' } });
    const second = await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'b.md', content: '# B\n' }], { mode: 'sync' });
    expectProblem(second, 409, 'conflict');
    expect(second.body.detail).toMatch(/already queued or running/);
    expectProblem(await ingest(project.id, { title: 'Notes', text: 'Some notes.' }), 409, 'conflict');
    // The refused requests kept nothing: one job, and only the first one's upload.
    expect(await Job.count({ where: { projectId: project.id } })).toBe(1);
    expect(await blobsOf(project.id)).toBe(1);

    // Two starts racing for an idle project: exactly one job, the other request refused.
    const raced = await createProject(t, admin.accessToken, 'ingest-409-race');
    const answers = await Promise.all(['One', 'Two', 'Three'].map((title) => ingest(raced.id, { title, text: `${title} notes.` })));
    expect(answers.map((r) => r.status).sort()).toEqual([202, 409, 409]);
    expect(await Job.count({ where: { projectId: raced.id } })).toBe(1);
    expect(await blobsOf(raced.id)).toBe(1);

    // Another project of the tenant is not held up.
    const other = await createProject(t, admin.accessToken, 'ingest-409-other');
    expect((await ingest(other.id, { title: 'Other', text: 'Other notes.' })).status).toBe(202);
  });

  test("another tenant's project answers 404, for uploads and JSON alike, and nothing is stored under it", async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-404');
    expectProblem(await uploadDocuments(t, outsider.accessToken, project.id, [{ name: 'a.md', content: '# A\n' }]), 404, 'not-found');
    expectProblem(await ingest(project.id, { title: 'Intruder', text: 'hello' }, outsider), 404, 'not-found');
    expectProblem(await ingest(randomUUID(), { title: 'Nowhere', text: 'hello' }), 404, 'not-found');
    expect(await blobsOf(project.id)).toBe(0);
    expect(await Job.count({ where: { projectId: project.id } })).toBe(0);
  });

  test('an Idempotency-Key replays the job it started (its second upload is not kept); the same key for another request answers 422', async () => {
    const project = await createProject(t, admin.accessToken, 'ingest-idem');
    const headers = { 'Idempotency-Key': `ingest-${randomUUID()}` };
    const first = await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'a.md', content: '# A\n' }], {}, headers);
    const again = await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'a.md', content: '# A\n' }], {}, headers);
    expect([first.status, again.status]).toEqual([202, 202]);
    expect(again.body.id).toBe(first.body.id);
    expect(await blobsOf(project.id)).toBe(1);
    expectProblem(await uploadDocuments(t, admin.accessToken, project.id, [{ name: 'a.md', content: '# Other\n' }], {}, headers), 422, 'idempotency-key-reused');
  });
});
