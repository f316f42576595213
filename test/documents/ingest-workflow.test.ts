import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Op } from 'sequelize';
import { Document, DocumentChunk, IngestionItem } from '../../db';
import { AuditScope } from '../../services/audit';
import { chunkId } from '../../services/documents/identity';
import { startIngestion, type IngestionRequest, type UploadedDocument } from '../../services/documents/ingestion';
import type { IngestProgress } from '../../workflows/definitions';
import { createTestLlmWorker } from '../harness/worker';
import { zipOf } from '../harness/zip';
import { passwordProtectedPdf, readablePdf, truncatedPdf } from '../fixtures/ingest-pdfs';
import { backendsBlockedBy, createProject, holdTransaction, isFinished, startJobsSuite, waitForJob, waitUntil, type JobBody, type JobsSuite } from '../jobs/job-helpers';
import { finalEventData, progressStages, storedDocuments, uploadDocuments } from './ingest-helpers';

/*
 * Document ingestion end to end (issue 7, criteria 1-5): through the API, the `ingestDocuments`
 * workflow on the suite's real workers (main and LLM task queues), the built-in embedder, real
 * Postgres and LanceDB. URLs are served by a loopback HTTP server (127.0.0.1 allowlisted).
 */

let suite: JobsSuite;
let llmWorker: Awaited<ReturnType<typeof createTestLlmWorker>>;
let llmWorkerRun: Promise<void>;
let web: Server;
let webUrl: string;
let scratch: string;
/** What the loopback server serves, by path: body and Content-Type. */
const pages = new Map<string, { body: string; type: string }>();
const requested: string[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'ingest-workflow-'));
  // Small chunks, so documents have several and replacing a version is worth counting.
  // Batches of at most 4 KiB of documents, so a test can fill one; the other tests' batches stay well under it.
  suite = await startJobsSuite('ingest', { env: { INGEST_ALLOWED_HOSTS: '127.0.0.1', CHUNK_TARGET_TOKENS: '48', CHUNK_OVERLAP_TOKENS: '8', INGEST_BATCH_MAX_BYTES: '4096', INGEST_FETCH_TIMEOUT_SECONDS: '1' } });
  llmWorker = await createTestLlmWorker(suite.t);
  llmWorkerRun = llmWorker.worker.run();
  web = createServer((req, res) => {
    requested.push(req.url ?? '');
    // Never answered: the worker's fetch gives up after INGEST_FETCH_TIMEOUT_SECONDS.
    if (req.url === '/never.md') return;
    const page = pages.get(req.url ?? '');
    if (!page) {
      res.writeHead(404).end('not here');
      return;
    }
    res.writeHead(200, { 'content-type': page.type }).end(page.body);
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webUrl = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
}, 60_000);
afterAll(async () => {
  llmWorker?.worker.shutdown();
  await llmWorkerRun;
  await llmWorker?.connection.close();
  web?.closeAllConnections();
  await new Promise((resolve) => web?.close(resolve));
  await suite?.stop();
  await rm(scratch, { recursive: true, force: true });
});

const t = () => suite.t;
const token = () => suite.admin.accessToken;
const tenantId = () => suite.admin.tenantId;

/** Markdown files written to the scratch directory, as an upload stores them. */
async function markdownUploads(projectId: string, files: Array<{ name: string; content: string }>): Promise<UploadedDocument[]> {
  return Promise.all(
    files.map(async (f) => {
      const file = path.join(scratch, `${projectId}-${f.name}`);
      await writeFile(file, f.content);
      return { path: file, fileName: f.name, mediaType: 'text/markdown', bytes: Buffer.byteLength(f.content), sha256: '' };
    }),
  );
}

/** Starts an ingestion of files on disk as the suite's admin, with batch tuning the API does not take. */
async function startTunedIngestion(projectId: string, files: UploadedDocument[], tuning: IngestionRequest['tuning']) {
  const audit = new AuditScope({ type: 'user', id: suite.admin.userId, tenantId: tenantId() });
  const deps = { sequelize: t().sequelize, temporal: t().temporal, config: t().config, blobs: t().blobs };
  const { job } = await startIngestion(deps, audit, { tenantId: tenantId(), projectId, requestedBy: `user:${suite.admin.userId}`, mode: 'add', source: { kind: 'files', files }, tuning });
  return job;
}

/** A Markdown guide of several sections about `topic`. */
function guide(topic: string, sections = 3, extra = ''): string {
  const section = (n: number) =>
    `## ${topic} part ${n}\n\nThe ${topic} service keeps its state in Postgres and reports progress through queries. ` +
    `Operators restart the ${topic} workers when their queue drains slowly; every restart is audited.${extra}\n`;
  return `# The ${topic} guide\n\n${Array.from({ length: sections }, (_, n) => section(n + 1)).join('\n')}`;
}

async function finished(res: { status: number; body: JobBody; text: string }): Promise<JobBody> {
  expect({ status: res.status, text: res.status === 202 ? '' : res.text }).toEqual({ status: 202, text: '' });
  expect(res.body.kind).toBe('ingestDocuments');
  return waitForJob(t(), token(), res.body.id, isFinished, 'the ingestion');
}

describe('ingesting documents', () => {
  test('several uploaded files: stored through every stage, with chunks and vectors, counters and duration', async () => {
    const project = await createProject(t(), token(), 'ingest-files');
    const files = [
      { name: 'billing.md', content: guide('billing'), type: 'text/markdown' },
      { name: 'notes.txt', content: 'Plain notes about the billing service.\n\nThey have two paragraphs.', type: 'text/plain' },
      { name: 'page.html', content: '<html><head><title>Status page</title><script>evil()</script></head><body><nav>Home</nav><h1>Status</h1><p>All systems go.</p></body></html>' },
      { name: 'report.pdf', content: await readablePdf('Quarterly revenue grew in every region.'), type: 'application/pdf' },
      { name: 'tool.py', content: 'def main():\n    print("hello")\n' },
    ];
    const job = await finished(await uploadDocuments(t(), token(), project.id, files));
    expect(job.status).toBe('completed');
    const stored = await storedDocuments(t(), tenantId(), project.id);
    expect(Object.keys(stored)).toEqual(['billing.md', 'notes.txt', 'page.html', 'report.pdf', 'tool.py']);
    for (const d of Object.values(stored)) {
      expect(d).toMatchObject({ status: 'stored', origin: 'files' });
      expect(d.chunkCount).toBeGreaterThan(0);
      expect({ key: d.sourceKey, live: d.liveChunks, all: d.allChunks, vectors: d.vectors }).toEqual({ key: d.sourceKey, live: d.chunkCount, all: d.chunkCount, vectors: d.chunkCount });
    }
    expect(stored['billing.md']?.chunkCount).toBeGreaterThan(1);
    const chunks = Object.values(stored).reduce((n, d) => n + d.chunkCount, 0);
    expect(job.counters).toMatchObject({ documentsTotal: 5, documentsStored: 5, documentsFailed: 0, documentsUnchanged: 0, chunksCreated: chunks, embeddingsGenerated: chunks });
    expect(job.counters.durationMs).toBeGreaterThan(0);
    expect(await progressStages(job.id)).toEqual(['fetching', 'parsing', 'chunking', 'embedding', 'storing']);
    expect(await finalEventData(job.id)).toMatchObject({ failed: [], removed: [] });

    // Chunk ids are the UUID v5 of (document, content hash, index); the HTML's script and navigation are gone.
    const html = await DocumentChunk.findAll({ include: [], where: { projectId: project.id }, order: [['chunkIndex', 'ASC']] });
    for (const c of html) expect(c.id).toBe(chunkId(c.documentId, c.contentSha256, c.chunkIndex));
    const page = html.filter((c) => c.text.includes('All systems go'));
    expect(page).toHaveLength(1);
    expect(page[0]?.text).not.toMatch(/evil|Home/);
    // The job's blobs (its uploads) are gone once it completed.
    expect(await t().blobs.countPrefix(`projects/${project.id}/documents/`)).toBe(0);
  });

  test('a corrupt and an encrypted PDF among good files: the job completes, listing both with their errors', async () => {
    const project = await createProject(t(), token(), 'ingest-partial');
    const job = await finished(
      await uploadDocuments(t(), token(), project.id, [
        { name: 'good.md', content: guide('good') },
        { name: 'broken.pdf', content: await truncatedPdf('half a report'), type: 'application/pdf' },
        { name: 'secret.pdf', content: await passwordProtectedPdf('salaries'), type: 'application/pdf' },
        { name: 'fine.txt', content: 'Fine text.' },
      ]),
    );
    expect(job.status).toBe('completed');
    expect(job.counters).toMatchObject({ documentsTotal: 4, documentsStored: 2, documentsFailed: 2 });
    const { failed } = (await finalEventData(job.id)) as { failed: Array<{ sourceKey: string; error: string }> };
    expect(failed.map((f) => f.sourceKey)).toEqual(['broken.pdf', 'secret.pdf']);
    expect(failed[0]?.error).toMatch(/could not be read as a PDF.*\(corrupt\)/);
    expect(failed[1]?.error).toMatch(/encrypted.*\(encrypted\)/);
    const stored = await storedDocuments(t(), tenantId(), project.id);
    expect(Object.fromEntries(Object.values(stored).map((d) => [d.sourceKey, d.status]))).toEqual({ 'broken.pdf': 'failed', 'fine.txt': 'stored', 'good.md': 'stored', 'secret.pdf': 'failed' });
    expect(stored['secret.pdf']).toMatchObject({ allChunks: 0, vectors: 0 });
  });

  test('the same content again is a no-op; changed content replaces its chunks and vectors', async () => {
    const project = await createProject(t(), token(), 'ingest-versions');
    const first = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'a.md', content: guide('alpha') }, { name: 'b.md', content: guide('beta') }]));
    expect(first.counters).toMatchObject({ documentsStored: 2 });
    const before = await storedDocuments(t(), tenantId(), project.id);

    const again = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'a.md', content: guide('alpha') }, { name: 'b.md', content: guide('beta') }]));
    expect(again.counters).toMatchObject({ documentsTotal: 2, documentsStored: 0, documentsUnchanged: 2, chunksCreated: 0, embeddingsGenerated: 0 });
    expect(await storedDocuments(t(), tenantId(), project.id)).toEqual(before);

    // b.md grows by two sections: its old version's rows and vectors go, the new ones stay, a.md is untouched.
    const changed = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'a.md', content: guide('alpha') }, { name: 'b.md', content: guide('beta', 5, ' Changed.') }]));
    expect(changed.counters).toMatchObject({ documentsStored: 1, documentsUnchanged: 1 });
    const after = await storedDocuments(t(), tenantId(), project.id);
    expect(after['a.md']).toEqual(before['a.md']);
    const b = after['b.md'];
    expect(b?.chunkCount).toBeGreaterThan(before['b.md']?.chunkCount ?? 0);
    expect(b).toMatchObject({ liveChunks: b?.chunkCount, allChunks: b?.chunkCount, vectors: b?.chunkCount });
  });

  test('a ZIP of documents: entries are documents by their paths; a sync with a smaller archive removes the missing ones', async () => {
    const project = await createProject(t(), token(), 'ingest-zip');
    const archive = (files: Record<string, string>) => zipOf(files);
    const full = await archive({ 'docs/intro.md': guide('intro'), 'docs/setup.md': guide('setup'), 'docs/logo.png': 'not a document', 'README.txt': 'Read me.' });
    const job = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'handbook.zip', content: full, type: 'application/zip' }]));
    expect(job.counters).toMatchObject({ documentsTotal: 3, documentsStored: 3, documentsFailed: 0 });
    const loose = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'loose.md', content: guide('loose') }]));
    expect(loose.status).toBe('completed');
    expect(Object.fromEntries(Object.values(await storedDocuments(t(), tenantId(), project.id)).map((d) => [d.sourceKey, d.origin]))).toEqual({
      'README.txt': 'archive:handbook.zip',
      'docs/intro.md': 'archive:handbook.zip',
      'docs/setup.md': 'archive:handbook.zip',
      'loose.md': 'files',
    });

    const smaller = await archive({ 'docs/intro.md': guide('intro'), 'docs/faq.md': guide('faq') });
    const sync = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'handbook.zip', content: smaller, type: 'application/zip' }], { mode: 'sync' }));
    expect(sync.counters).toMatchObject({ documentsStored: 1, documentsUnchanged: 1, documentsRemoved: 2 });
    expect((await finalEventData(sync.id)).removed).toEqual(['README.txt', 'docs/setup.md']);
    const after = await storedDocuments(t(), tenantId(), project.id);
    // Loose files are another origin: a sync of the archive leaves them.
    expect(Object.keys(after)).toEqual(['docs/faq.md', 'docs/intro.md', 'loose.md']);
    expect(await progressStages(sync.id)).toEqual(['fetching', 'parsing', 'chunking', 'embedding', 'storing', 'removing']);
    const removedChunks = await t().sequelize.query('SELECT 1 FROM document_chunks c LEFT JOIN documents d ON d.id = c.document_id WHERE c.project_id = :p AND d.id IS NULL', {
      replacements: { p: project.id },
    });
    expect(removedChunks[0]).toHaveLength(0);
  });

  test('URLs are fetched by the worker from an allowlisted host (one that does not answer in time fails alone); a sync of the URL list removes the URLs it no longer names', async () => {
    const project = await createProject(t(), token(), 'ingest-urls');
    pages.set('/guide.md', { body: guide('served'), type: 'text/markdown' });
    pages.set('/docs/', { body: '<html><body><h1>Docs</h1><p>Served as HTML.</p></body></html>', type: 'text/html; charset=utf-8' });
    const urls = [`${webUrl}/guide.md`, `${webUrl}/docs/`, `${webUrl}/missing.md`, `${webUrl}/never.md`];
    const res = await t().post(`/api/v1/projects/${project.id}/documents`, { urls }, { token: token() });
    const job = await finished(res);
    expect(job.counters).toMatchObject({ documentsTotal: 4, documentsStored: 2, documentsFailed: 2 });
    const { failed } = (await finalEventData(job.id)) as { failed: Array<{ sourceKey: string; error: string }> };
    expect(failed).toEqual([
      { sourceKey: `${webUrl}/missing.md`, name: `${webUrl}/missing.md`, error: expect.stringContaining('HTTP 404') },
      { sourceKey: `${webUrl}/never.md`, name: `${webUrl}/never.md`, error: `${webUrl}/never.md did not answer within 1000 ms.` },
    ]);
    // A document that could not be fetched never got a row.
    expect(Object.values(await storedDocuments(t(), tenantId(), project.id)).map((d) => [d.sourceKey, d.origin, d.status])).toEqual([
      [`${webUrl}/docs/`, 'urls', 'stored'],
      [`${webUrl}/guide.md`, 'urls', 'stored'],
    ]);
    expect(requested).toEqual(expect.arrayContaining(['/guide.md', '/docs/', '/missing.md']));

    const sync = await finished(await t().post(`/api/v1/projects/${project.id}/documents`, { urls: [`${webUrl}/guide.md`], mode: 'sync' }, { token: token() }));
    expect(sync.counters).toMatchObject({ documentsUnchanged: 1, documentsRemoved: 1 });
    expect(Object.keys(await storedDocuments(t(), tenantId(), project.id))).toEqual([`${webUrl}/guide.md`]);
  });

  test('a text with a title is a document identified by its title', async () => {
    const project = await createProject(t(), token(), 'ingest-text');
    const job = await finished(await t().post(`/api/v1/projects/${project.id}/documents`, { title: 'Runbook', text: guide('runbook') }, { token: token() }));
    expect(job.counters).toMatchObject({ documentsStored: 1 });
    const stored = await storedDocuments(t(), tenantId(), project.id);
    expect(stored.Runbook).toMatchObject({ origin: 'text', status: 'stored' });
    const chunks = await DocumentChunk.findAll({ where: { projectId: project.id }, order: [['chunkIndex', 'ASC']] });
    // Read as Markdown: its headings are kept as the chunks' heading paths.
    expect(chunks.map((c) => c.headingPath)).toContainEqual(['The runbook guide', 'runbook part 1']);
  });

  test('many documents in small batches, continuing as new: every stage over every batch, the progress query answers', async () => {
    const project = await createProject(t(), token(), 'ingest-batches');
    const files = Array.from({ length: 12 }, (_, i) => ({ name: `doc-${String(i).padStart(2, '0')}.md`, content: guide(`topic${i}`, 2) }));
    const started = await startTunedIngestion(project.id, await markdownUploads(project.id, files), { batchSize: 2, parallelism: 2, batchesPerRun: 4 });
    // The query answers while the job runs (finished, the job's row does).
    const live = await waitUntil('the progress query answers', async () => {
      const job = (await t().get(`/api/v1/jobs/${started.id}`, { token: token() })).body as JobBody;
      return job.progress ?? (isFinished(job) ? null : undefined);
    });
    if (live) expect(['starting', 'fetching', 'parsing', 'chunking', 'embedding', 'storing', 'completed']).toContain((live as IngestProgress).stage);
    const job = await waitForJob(t(), token(), started.id, isFinished, 'the ingestion');
    expect(job.counters).toMatchObject({ documentsTotal: 12, documentsStored: 12, documentsFailed: 0 });
    const items = await IngestionItem.findAll({ where: { jobId: job.id } });
    expect(new Set(items.map((i) => i.batch))).toEqual(new Set([0, 1, 2, 3, 4, 5]));
    // Six batches, five stages, four batch steps a run: the last run continued from an earlier one.
    const history = await t().temporal.workflow.getHandle(job.workflowId).fetchHistory();
    expect(history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId).toBeTruthy();
    expect(await progressStages(job.id)).toEqual(['fetching', 'parsing', 'chunking', 'embedding', 'storing']);
  });

  test("a ZIP's entries in small batches: each document holds exactly its own entry's text", async () => {
    const project = await createProject(t(), token(), 'ingest-zip-batches');
    // Sizes differ and one entry is not ASCII, so a document read from the wrong place in its pack could not pass.
    const entries = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`guides/g${i}.md`, guide(i === 3 ? 'Zürich café' : `topic${i}`, 1 + (i % 3))]));
    const file = path.join(scratch, `${project.id}.zip`);
    await writeFile(file, await zipOf(entries));
    const started = await startTunedIngestion(project.id, [{ path: file, fileName: 'guides.zip', mediaType: 'application/zip', bytes: 0, sha256: '' }], { batchSize: 3 });
    const job = await waitForJob(t(), token(), started.id, isFinished, 'the ingestion');
    expect(job.counters).toMatchObject({ documentsTotal: 7, documentsStored: 7, documentsFailed: 0 });
    // Planning packed the entries a batch's worth to a blob: three packs for seven entries.
    const expanded = await IngestionItem.findAll({ where: { jobId: job.id, expandedFrom: { [Op.ne]: null } } });
    expect(new Set(expanded.map((i) => i.blobKey)).size).toBe(3);
    for (const [name, text] of Object.entries(entries)) {
      const document = await Document.findOne({ where: { projectId: project.id, sourceKey: name }, rejectOnEmpty: true });
      expect({ name, sha: document.contentSha256 }).toEqual({ name, sha: createHash('sha256').update(text).digest('hex') });
      const chunks = await DocumentChunk.findAll({ where: { documentId: document.id }, order: [['chunkIndex', 'ASC']] });
      // Every chunk is the entry's text at its offsets.
      for (const c of chunks) expect({ name, text: c.text }).toEqual({ name, text: text.slice(c.startOffset, c.endOffset) });
      expect(chunks.at(-1)?.endOffset).toBe(text.trimEnd().length);
    }
  });

  test('batches hold at most INGEST_BATCH_MAX_BYTES of documents; a larger document is a batch of its own', async () => {
    const project = await createProject(t(), token(), 'ingest-batch-bytes');
    const sized = (name: string, bytes: number) => ({ name, content: `# ${name}\n\n${'Every restart of a worker is audited. '.repeat(Math.ceil(bytes / 38))}`.slice(0, bytes) });
    const files = [sized('a.md', 3000), sized('b.md', 3000), sized('c.md', 1000), sized('d.md', 1000), sized('e.md', 9000)];
    const started = await startTunedIngestion(project.id, await markdownUploads(project.id, files), {});
    const job = await waitForJob(t(), token(), started.id, isFinished, 'the ingestion');
    expect(job.counters).toMatchObject({ documentsTotal: 5, documentsStored: 5, documentsFailed: 0 });
    const items = await IngestionItem.findAll({ where: { jobId: job.id }, order: [['seq', 'ASC']] });
    // 4,096 bytes: a alone (a + b is over); b and c (4,000); d; e, over the limit by itself, alone.
    expect(Object.fromEntries(items.map((i) => [i.sourceKey, i.batch]))).toEqual({ 'a.md': 0, 'b.md': 1, 'c.md': 1, 'd.md': 2, 'e.md': 3 });
  });

  test('cancelled mid-ingestion: the job ends cancelled, its documents fail, and the stored version stays live untouched', async () => {
    const project = await createProject(t(), token(), 'ingest-cancel');
    const first = await finished(await uploadDocuments(t(), token(), project.id, [{ name: 'kept.md', content: guide('kept') }]));
    expect(first.status).toBe('completed');
    const before = await storedDocuments(t(), tenantId(), project.id);
    // Held by Postgres, not by timing: the document's row is locked, so fetching the new version waits on it.
    const kept = await Document.findOne({ where: { projectId: project.id, sourceKey: 'kept.md' }, rejectOnEmpty: true });
    const lock = await holdTransaction(async (client) => {
      await client.query('SELECT id FROM documents WHERE id = $1 FOR UPDATE', [kept.id]);
    });
    try {
      const res = await uploadDocuments(t(), token(), project.id, [
        { name: 'kept.md', content: guide('kept', 4, ' Changed.') },
        { name: 'new.md', content: guide('new') },
      ]);
      expect(res.status).toBe(202);
      await waitUntil('the fetching step waits on the locked document', async () => (await backendsBlockedBy(t().sequelize, lock.pid)) > 0);
      const cancel = await t().post(`/api/v1/jobs/${res.body.id}/cancel`, undefined, { token: token() });
      expect(cancel.status).toBe(202);
      const job = await waitForJob(t(), token(), res.body.id, isFinished, 'the cancelled ingestion');
      expect(job.status).toBe('cancelled');
      await lock.release();
      // Whatever the step does once the lock goes, its items stay failed and nothing of the new versions is kept.
      await waitUntil('the waiting step has let go of the document', async () => (await backendsBlockedBy(t().sequelize, lock.pid)) === 0);
      const items = await IngestionItem.findAll({ where: { jobId: job.id }, order: [['seq', 'ASC']] });
      expect(items.map((i) => [i.sourceKey, i.state, i.error])).toEqual([
        ['kept.md', 'failed', 'The ingestion was cancelled before this document was stored.'],
        ['new.md', 'failed', 'The ingestion was cancelled before this document was stored.'],
      ]);
      const after = await storedDocuments(t(), tenantId(), project.id);
      expect(after['kept.md']).toEqual(before['kept.md']);
      expect(after['new.md'] ?? { allChunks: 0, vectors: 0 }).toMatchObject({ allChunks: 0, vectors: 0 });
    } finally {
      await lock.release();
    }
  });
});
