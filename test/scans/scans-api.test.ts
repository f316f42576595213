import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Job, Scan } from '../../db';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';
import { addMember } from '../harness/members';
import { responseValidator } from '../harness/openapi-validator';

/*
 * Starting and reading scans through the API (issue 6, criterion 1). No worker runs in this file:
 * a started scan stays queued, which is all these tests need (the scan itself has its own tests).
 */

/** The parts of yazl (a real ZIP writer, no type package installed) these tests use. */
interface YazlZipFile {
  addBuffer(data: Buffer, name: string, options?: { mode?: number }): void;
  end(): void;
  outputStream: Readable;
}
const yazl = createRequire(__filename)('yazl') as { ZipFile: new () => YazlZipFile };

async function zipOf(entries: { name: string; content: string; mode?: number }[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(Buffer.from(e.content), e.name, e.mode === undefined ? {} : { mode: e.mode });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const UPLOAD_MAX_BYTES = 64 * 1024;
const ZIP_MAX_ENTRIES = 20;

let t: TestApp;
let admin: Member;
let outsider: Member;
let fileRoot: string;
let validate: ReturnType<typeof responseValidator>;

beforeAll(async () => {
  fileRoot = await mkdtemp(path.join(tmpdir(), 'scans-api-root-'));
  t = await startTestApp({
    SCAN_ALLOWED_HOSTS: '127.0.0.1,git.example.test',
    SCAN_FILE_ROOTS: fileRoot,
    UPLOAD_MAX_BYTES: String(UPLOAD_MAX_BYTES),
    ZIP_MAX_ENTRIES: String(ZIP_MAX_ENTRIES),
  });
  validate = responseValidator(t.openapi);
  admin = await registerTenant(t, 'scans');
  outsider = await registerTenant(t, 'scans-outsider');
});
afterAll(async () => {
  await t.close();
  await rm(fileRoot, { recursive: true, force: true });
});

async function newProject(as: Member = admin): Promise<string> {
  const res = await t.post('/api/v1/projects', { name: `scans ${randomUUID()}` }, { token: as.accessToken });
  expect(res.status).toBe(201);
  return res.body.id;
}

const startScan = (projectId: string, body: unknown, opts: { token?: string; headers?: Record<string, string> } = {}) =>
  t.post(`/api/v1/projects/${projectId}/scans`, body, { token: opts.token ?? admin.accessToken, headers: opts.headers ?? {} });

/** A loopback git URL: allowlisted, and never connected to (no worker runs here). */
const gitUrl = (name = 'repo') => `http://127.0.0.1:9/${name}.git`;

interface UploadParts {
  archive?: { content: Buffer; fileName?: string; mediaType?: string; field?: string };
  fields?: Record<string, string>;
  headers?: Record<string, string>;
  token?: string;
}

/** A multipart upload through supertest, its answer checked against the OpenAPI document like the harness's calls. */
async function upload(url: string, parts: UploadParts): Promise<TestResponse> {
  let req = t
    .raw()
    .post(url)
    .set('Authorization', `Bearer ${parts.token ?? admin.accessToken}`)
    .set(parts.headers ?? {});
  for (const [name, value] of Object.entries(parts.fields ?? {})) req = req.field(name, value);
  if (parts.archive) {
    const a = parts.archive;
    req = req.attach(a.field ?? 'archive', a.content, { filename: a.fileName ?? 'source.zip', contentType: a.mediaType ?? 'application/zip' });
  }
  const res = await req;
  validate('post', url, res.status, String(res.headers['content-type'] ?? ''), res.body);
  return { status: res.status, body: res.body, headers: res.headers, text: res.text };
}

const uploadScan = (projectId: string, parts: UploadParts) => upload(`/api/v1/projects/${projectId}/scans`, parts);

function expectProblem(res: TestResponse, status: number, slug: string, extra: Record<string, unknown> = {}): void {
  expect({ status: res.status, type: res.body.type }).toEqual({ status, type: `/problems/${slug}` });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject(extra);
}

async function scanOfJob(jobId: string): Promise<Scan> {
  return Scan.findOne({ where: { jobId }, rejectOnEmpty: true });
}

/** Temporary upload directories of one request (named after its request id) still on disk. */
async function uploadDirsOf(requestId: string): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith(`auditflow-upload-${requestId}-`));
}

describe('starting a scan of a repository', () => {
  test('a git URL answers 202 with the job and its Location, and a queued scan row records the source', async () => {
    const projectId = await newProject();
    const res = await startScan(projectId, { source: { type: 'git', url: gitUrl(), ref: 'release/1.2' } });
    expect(res.status).toBe(202);
    expect(res.headers.location).toBe(`/api/v1/jobs/${res.body.id}`);
    expect(res.body).toMatchObject({ kind: 'scanRepository', status: 'queued', projectId });

    const scan = await scanOfJob(res.body.id);
    expect(scan).toMatchObject({ projectId, tenantId: admin.tenantId, status: 'queued', mode: 'full', source: { type: 'git', url: gitUrl(), ref: 'release/1.2' } });
    const job = await Job.findByPk(res.body.id, { rejectOnEmpty: true });
    expect(job.params).toMatchObject({ scanId: scan.id });
  });

  test('a GitHub or GitLab repository (with a self-hosted base URL) and an incremental mode are accepted', async () => {
    const github = await startScan(await newProject(), { source: { type: 'github', repo: 'acme/payments', baseUrl: 'https://127.0.0.1:9443' }, mode: 'incremental' });
    expect(github.status).toBe(202);
    expect(await scanOfJob(github.body.id)).toMatchObject({ mode: 'incremental', source: { type: 'github', repo: 'acme/payments', baseUrl: 'https://127.0.0.1:9443' } });

    const gitlab = await startScan(await newProject(), { source: { type: 'gitlab', repo: 'group/sub/tool', ref: 'v2.0.1', baseUrl: 'https://git.example.test:8443' } });
    // git.example.test is allowlisted but resolves nowhere: refused before anything connects.
    expectProblem(gitlab, 422, 'unsafe-repository-url', { code: 'unresolvable' });
  });

  test('an Idempotency-Key replays the job it started; the same key for another request answers 422', async () => {
    const projectId = await newProject();
    const key = `scan-${randomUUID()}`;
    const body = { source: { type: 'git', url: gitUrl('idem') } };
    const first = await startScan(projectId, body, { headers: { 'Idempotency-Key': key } });
    const again = await startScan(projectId, body, { headers: { 'Idempotency-Key': key } });
    expect(first.status).toBe(202);
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(await Scan.count({ where: { projectId } })).toBe(1);

    const other = await startScan(projectId, { ...body, mode: 'incremental' }, { headers: { 'Idempotency-Key': key } });
    expectProblem(other, 422, 'idempotency-key-reused');
  });

  test('a second scan of a project while one is queued answers 409, and starts nothing', async () => {
    const projectId = await newProject();
    expect((await startScan(projectId, { source: { type: 'git', url: gitUrl() } })).status).toBe(202);
    const second = await startScan(projectId, { source: { type: 'git', url: gitUrl('other') } });
    expectProblem(second, 409, 'conflict');
    expect(await Scan.count({ where: { projectId } })).toBe(1);
    expect(await Job.count({ where: { projectId, kind: 'scanRepository' } })).toBe(1);
  });

  test.each([
    ['a ref starting with "-"', { type: 'git', url: gitUrl(), ref: '--upload-pack=touch /tmp/x' }, 'body.source.ref'],
    ['a ref with ".."', { type: 'git', url: gitUrl(), ref: 'main..evil' }, 'body.source.ref'],
    ['a ref ending in .lock', { type: 'git', url: gitUrl(), ref: 'heads/main.lock' }, 'body.source.ref'],
    ['a repository without an owner', { type: 'github', repo: 'payments' }, 'body.source.repo'],
    ['a repository with a query', { type: 'github', repo: 'acme/payments?x=1' }, 'body.source.repo'],
    ['a base URL that is not https', { type: 'gitlab', repo: 'acme/tool', baseUrl: 'http://127.0.0.1:9' }, 'body.source.baseUrl'],
    ['a URL beyond 2048 characters', { type: 'git', url: `http://127.0.0.1/${'a'.repeat(2048)}` }, 'body.source.url'],
    ['a zip source sent as JSON', { type: 'zip', blobKey: 'projects/x/uploads/y.zip', fileName: 'y.zip', sha256: '0', bytes: 1 }, 'body.source.type'],
  ])('%s answers 400 validation-error naming the field', async (_label, source, field) => {
    const projectId = await newProject();
    const res = await startScan(projectId, { source });
    expectProblem(res, 400, 'validation-error');
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(field);
    expect(await Scan.count({ where: { projectId } })).toBe(0);
  });

  test('an unknown mode answers 400', async () => {
    const res = await startScan(await newProject(), { source: { type: 'git', url: gitUrl() }, mode: 'partial' });
    expectProblem(res, 400, 'validation-error', { errors: [expect.objectContaining({ path: 'body.mode' })] });
  });

  test.each([
    ['credentials in the URL', () => ({ type: 'git', url: 'https://ci:ghp_secret@127.0.0.1/acme/app.git' }), 'credentials-in-url'],
    ['credentials in a base URL', () => ({ type: 'github', repo: 'acme/app', baseUrl: 'https://token@127.0.0.1' }), 'credentials-in-url'],
    ['a host not allowlisted', () => ({ type: 'git', url: 'https://evil.example.com/acme/app.git' }), 'host-not-allowed'],
    ['the default GitHub host, not allowlisted here', () => ({ type: 'github', repo: 'acme/app' }), 'host-not-allowed'],
    ['an ext:: remote helper', () => ({ type: 'git', url: 'ext::sh -c touch% /tmp/pwned' }), 'scheme-not-allowed'],
    ['an scp-like address', () => ({ type: 'git', url: 'git@127.0.0.1:acme/app.git' }), 'scheme-not-allowed'],
    ['an option for git', () => ({ type: 'git', url: '--upload-pack=touch /tmp/pwned' }), 'option-injection'],
    ['the metadata address', () => ({ type: 'git', url: 'http://169.254.169.254/latest/meta-data' }), 'non-public-address'],
    ['a file URL outside the roots', () => ({ type: 'git', url: pathToFileURL(tmpdir()).href }), 'path-outside-roots'],
  ])('%s answers 422 unsafe-repository-url with its code', async (_label, source, code) => {
    const projectId = await newProject();
    const res = await startScan(projectId, { source: source() });
    expectProblem(res, 422, 'unsafe-repository-url', { code });
    expect(res.body.detail).not.toContain('ghp_secret');
    expect(await Scan.count({ where: { projectId } })).toBe(0);
  });

  test('a file URL inside a root is accepted', async () => {
    const res = await startScan(await newProject(), { source: { type: 'git', url: pathToFileURL(fileRoot).href } });
    expect(res.status).toBe(202);
  });

  test("another tenant's project answers 404, and nothing is started", async () => {
    const theirs = await newProject(outsider);
    const res = await startScan(theirs, { source: { type: 'git', url: gitUrl() } });
    expectProblem(res, 404, 'not-found');
    expect(await Scan.count({ where: { projectId: theirs } })).toBe(0);
  });

  test('a viewer may not start a scan', async () => {
    const viewer = await addMember(t, admin.tenantId, 'viewer');
    const res = await startScan(await newProject(), { source: { type: 'git', url: gitUrl() } }, { token: viewer.accessToken });
    expectProblem(res, 403, 'forbidden');
  });
});

describe('starting a scan of an uploaded ZIP', () => {
  test('answers 202; the archive is in the blob store and the scan carries its key, name and digest; the temporary file is gone', async () => {
    const projectId = await newProject();
    const archive = await zipOf([
      { name: 'src/app.js', content: 'eval(process.argv[2]);\n' },
      { name: 'README.md', content: '# app\n' },
    ]);
    const requestId = `upload-${randomUUID()}`;
    const res = await uploadScan(projectId, { archive: { content: archive, fileName: 'app-src.zip' }, fields: { mode: 'incremental' }, headers: { 'X-Request-Id': requestId } });
    expect(res.status).toBe(202);
    expect(res.headers.location).toBe(`/api/v1/jobs/${res.body.id}`);

    const scan = await scanOfJob(res.body.id);
    expect(scan).toMatchObject({
      mode: 'incremental',
      status: 'queued',
      source: { type: 'zip', fileName: 'app-src.zip', sha256: createHash('sha256').update(archive).digest('hex'), bytes: archive.length },
    });
    const source = scan.source as { blobKey: string };
    expect(source.blobKey).toMatch(new RegExp(`^projects/${projectId}/uploads/[0-9a-f-]{36}\\.zip$`));
    expect(await t.blobs.exists(source.blobKey)).toBe(true);
    expect(await uploadDirsOf(requestId)).toEqual([]);

    const read = await t.get(`/api/v1/scans/${scan.id}`, { token: admin.accessToken });
    expect(read.status).toBe(200);
    expect(read.body.source).toEqual({ type: 'zip', fileName: 'app-src.zip', sha256: createHash('sha256').update(archive).digest('hex'), bytes: archive.length });
    expect(JSON.stringify(read.body)).not.toContain(source.blobKey);
  });

  test('the mode defaults to full; an Idempotency-Key replays the same job for the same archive', async () => {
    const projectId = await newProject();
    const archive = await zipOf([{ name: 'main.py', content: 'print("hi")\n' }]);
    const key = `upload-${randomUUID()}`;
    const first = await uploadScan(projectId, { archive: { content: archive }, headers: { 'Idempotency-Key': key } });
    const again = await uploadScan(projectId, { archive: { content: archive }, headers: { 'Idempotency-Key': key } });
    expect(first.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(await Scan.count({ where: { projectId } })).toBe(1);
    expect((await scanOfJob(first.body.id)).mode).toBe('full');

    const otherArchive = await zipOf([{ name: 'main.py', content: 'print("changed")\n' }]);
    expectProblem(await uploadScan(projectId, { archive: { content: otherArchive }, headers: { 'Idempotency-Key': key } }), 422, 'idempotency-key-reused');
  });

  test('a file that is not a ZIP answers 422 archive-rejected (corrupt), and nothing is stored or started', async () => {
    const projectId = await newProject();
    const res = await uploadScan(projectId, { archive: { content: Buffer.from('just some text, not an archive\n'.repeat(20)), fileName: 'notes.zip' } });
    expectProblem(res, 422, 'archive-rejected', { code: 'corrupt' });
    expect(await Scan.count({ where: { projectId } })).toBe(0);
  });

  test('a ZIP holding a symlink answers 422 archive-rejected naming the entry', async () => {
    const archive = await zipOf([
      { name: 'ok.js', content: 'x = 1\n' },
      { name: 'link', content: '/etc/passwd', mode: 0o120777 },
    ]);
    const res = await uploadScan(await newProject(), { archive: { content: archive } });
    expectProblem(res, 422, 'archive-rejected', { code: 'symlink', entry: 'link' });
  });

  test('a ZIP with more entries than ZIP_MAX_ENTRIES answers 413 archive-too-large', async () => {
    const archive = await zipOf(Array.from({ length: ZIP_MAX_ENTRIES + 1 }, (_, i) => ({ name: `f${i}.txt`, content: `${i}\n` })));
    const res = await uploadScan(await newProject(), { archive: { content: archive } });
    expectProblem(res, 413, 'archive-too-large', { code: 'too-many-entries' });
  });

  test('a file beyond UPLOAD_MAX_BYTES answers 413 payload-too-large, and its temporary file is removed', async () => {
    const projectId = await newProject();
    const requestId = `too-big-${randomUUID()}`;
    const res = await uploadScan(projectId, { archive: { content: randomBytes(UPLOAD_MAX_BYTES + 4096) }, headers: { 'X-Request-Id': requestId } });
    expectProblem(res, 413, 'payload-too-large', { limit: UPLOAD_MAX_BYTES });
    expect(await uploadDirsOf(requestId)).toEqual([]);
    expect(await Scan.count({ where: { projectId } })).toBe(0);
  });

  test('a form without the file part answers 400 naming the field', async () => {
    const res = await uploadScan(await newProject(), { fields: { mode: 'full' } });
    expectProblem(res, 400, 'validation-error', { errors: [expect.objectContaining({ path: 'body.archive' })] });
  });

  test('a file under another field name answers 400', async () => {
    const archive = await zipOf([{ name: 'a.js', content: '1\n' }]);
    const res = await uploadScan(await newProject(), { archive: { content: archive, field: 'file' } });
    expectProblem(res, 400, 'validation-error', { errors: [expect.objectContaining({ path: 'body.file' })] });
  });

  test('an unknown mode field answers 400', async () => {
    const archive = await zipOf([{ name: 'a.js', content: '1\n' }]);
    const res = await uploadScan(await newProject(), { archive: { content: archive }, fields: { mode: 'partial' } });
    expectProblem(res, 400, 'validation-error', { errors: [expect.objectContaining({ path: 'body.mode' })] });
  });

  test('a file part of another media type answers 415', async () => {
    const archive = await zipOf([{ name: 'a.js', content: '1\n' }]);
    const res = await uploadScan(await newProject(), { archive: { content: archive, mediaType: 'text/plain' } });
    expectProblem(res, 415, 'unsupported-media-type');
  });

  test('multipart to a route that takes only JSON answers 415', async () => {
    const archive = await zipOf([{ name: 'a.js', content: '1\n' }]);
    expectProblem(await upload('/api/v1/projects', { archive: { content: archive }, fields: { name: 'by form' } }), 415, 'unsupported-media-type');
    const projectId = await newProject();
    expectProblem(await upload(`/api/v1/projects/${projectId}/credential-checks`, { archive: { content: archive } }), 415, 'unsupported-media-type');
    expect(await Job.count({ where: { projectId } })).toBe(0);
  });

  test('an upload to a project of another tenant answers 404; without a token, 401', async () => {
    const archive = await zipOf([{ name: 'a.js', content: '1\n' }]);
    const theirs = await newProject(outsider);
    expectProblem(await uploadScan(theirs, { archive: { content: archive } }), 404, 'not-found');
    expect(await Scan.count({ where: { projectId: theirs } })).toBe(0);

    const res = await t.raw().post(`/api/v1/projects/${theirs}/scans`).attach('archive', archive, { filename: 'a.zip', contentType: 'application/zip' });
    expect(res.status).toBe(401);
  });
});

describe('reading scans', () => {
  test('GET /scans/:id answers the summary; another tenant gets 404', async () => {
    const projectId = await newProject();
    const job = await startScan(projectId, { source: { type: 'git', url: gitUrl(), ref: 'main' } });
    const scan = await scanOfJob(job.body.id);

    const res = await t.get(`/api/v1/scans/${scan.id}`, { token: admin.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: scan.id,
      projectId,
      jobId: job.body.id,
      status: 'queued',
      mode: 'full',
      source: { type: 'git', url: gitUrl(), ref: 'main' },
      commitSha: null,
      archiveSha256: null,
      filesTotal: 0,
      filesAnalyzed: 0,
      filesCarried: 0,
      filesSkipped: 0,
      findings: { critical: 0, high: 0, medium: 0, low: 0, info: 0 },
      newIssues: 0,
      fixedIssues: 0,
      warnings: [],
      llm: {},
      error: null,
      startedAt: null,
      finishedAt: null,
      durationMs: null,
      createdAt: scan.createdAt.toISOString(),
    });

    expectProblem(await t.get(`/api/v1/scans/${scan.id}`, { token: outsider.accessToken }), 404, 'not-found');
    expectProblem(await t.get(`/api/v1/projects/${projectId}/scans`, { token: outsider.accessToken }), 404, 'not-found');
  });

  test('a finished scan shows its counts, findings by severity, warnings and duration', async () => {
    const projectId = await newProject();
    const job = await startScan(projectId, { source: { type: 'git', url: gitUrl() } });
    const scan = await scanOfJob(job.body.id);
    const startedAt = new Date('2030-01-01T10:00:00.000Z');
    await scan.update({
      status: 'completed',
      commitSha: 'a'.repeat(40),
      filesTotal: 12,
      filesAnalyzed: 10,
      filesSkipped: 2,
      findings: { high: 3, low: 1 },
      newIssues: 4,
      warnings: [{ path: 'src/huge.min.js', message: 'could not be parsed' }],
      startedAt,
      finishedAt: new Date(startedAt.getTime() + 4321),
    });
    const res = await t.get(`/api/v1/scans/${scan.id}`, { token: admin.accessToken });
    expect(res.body).toMatchObject({
      status: 'completed',
      commitSha: 'a'.repeat(40),
      filesTotal: 12,
      filesAnalyzed: 10,
      filesSkipped: 2,
      findings: { critical: 0, high: 3, medium: 0, low: 1, info: 0 },
      newIssues: 4,
      warnings: [{ path: 'src/huge.min.js', message: 'could not be parsed' }],
      durationMs: 4321,
    });
  });

  test("a project's scans list newest first, page by page", async () => {
    const projectId = await newProject();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const job = await startScan(projectId, { source: { type: 'git', url: gitUrl(`r${i}`) } });
      const scan = await scanOfJob(job.body.id);
      ids.push(scan.id);
      // One scan at a time: this one is done before the next starts.
      await scan.update({ status: 'completed' });
    }
    const first = await t.get(`/api/v1/projects/${projectId}/scans?limit=2`, { token: admin.accessToken });
    expect(first.status).toBe(200);
    expect(first.body.items.map((s: { id: string }) => s.id)).toEqual([ids[2], ids[1]]);
    const second = await t.get(`/api/v1/projects/${projectId}/scans?limit=2&cursor=${first.body.nextCursor}`, { token: admin.accessToken });
    expect(second.body).toEqual({ items: [expect.objectContaining({ id: ids[0] })], nextCursor: null });
  });
});
