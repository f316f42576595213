import { randomUUID } from 'node:crypto';
import { ingestInProcess } from '../../bench/harness/ingest-loop';
import { QueryTypes } from 'sequelize';
import { Document } from '../../db';
import { keywordCandidates, type QueryTerm } from '../../services/documents/search';
import { embedTexts } from '../../services/llm';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { addMember } from '../harness/members';

/*
 * Search through the API (issue 7, criterion 7): the three modes, the project and document
 * filters, live chunks only, and tenant isolation. Documents are stored by the ingestion
 * pipeline's own steps (bench/harness/ingest-loop), without a job around them.
 */

const retryGuide = `# Operations handbook

## Retrying failed jobs

A job that fails is retried with exponential backoff: the first retry waits one second, each
later one twice as long, up to five minutes. After ten attempts the job is parked in the dead
letter queue, where an operator can inspect it.

## Rotating credentials

Database passwords are rotated every ninety days by the vault. Applications read the new
password on their next connection; nothing needs a restart.
`;

const cacheGuide = `# Caching

## Expiry

Entries of the response cache expire after their time to live (TTL), sixty seconds by default.
A stale entry is served while a fresh one is fetched in the background.
`;

const deployGuide = `# Deployments

## Rolling back

A deployment that fails its health checks is rolled back automatically to the previous release.
`;

/** What the other tenant stores: the same subject in nearly the same words, so only the tenant filter tells them apart. */
const otherRetryGuide = retryGuide.replace('Operations handbook', 'Runbook of the other tenant');

let t: TestApp;
let admin: Member;
let outsider: Member;
/** admin's two projects, and the outsider's. */
let alpha: string;
let beta: string;
let foreign: string;

async function newProject(as: Member, label: string): Promise<string> {
  const res = await t.post('/api/v1/projects', { name: `${label} ${randomUUID()}` }, { token: as.accessToken });
  expect(res.status).toBe(201);
  return res.body.id;
}

async function store(as: Member, projectId: string, documents: Record<string, string>): Promise<void> {
  const files = Object.entries(documents).map(([name, text]) => ({ name, bytes: Buffer.from(text) }));
  const result = await ingestInProcess(t, { tenantId: as.tenantId, projectId }, files, 10);
  expect(result).toMatchObject({ documents: files.length, failed: 0 });
}

async function documentId(projectId: string, sourceKey: string): Promise<string> {
  return (await Document.findOne({ where: { projectId, sourceKey }, rejectOnEmpty: true })).id;
}

const search = (as: Member, body: Record<string, unknown>) => t.post('/api/v1/search', body, { token: as.accessToken });
const modes = ['vector', 'keyword', 'hybrid'] as const;

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'search');
  outsider = await registerTenant(t, 'search-outsider');
  alpha = await newProject(admin, 'alpha');
  beta = await newProject(admin, 'beta');
  foreign = await newProject(outsider, 'foreign');
  await store(admin, alpha, { 'ops/retries.md': retryGuide, 'ops/cache.md': cacheGuide });
  await store(admin, beta, { 'deploy.md': deployGuide });
  await store(outsider, foreign, { 'ops/retries.md': otherRetryGuide });
}, 60_000);
afterAll(() => t.close());

describe.each(modes)('%s search', (mode) => {
  it('finds the passage that answers a question, with its document, heading path and offsets', async () => {
    const res = await search(admin, { query: 'how long does a failed job wait before it is retried with backoff?', mode, topK: 3 });
    expect(res.status).toBe(200);
    expect(res.body.mode).toBe(mode);
    const [best] = res.body.results;
    expect(best).toMatchObject({
      document: { id: await documentId(alpha, 'ops/retries.md'), title: 'Operations handbook', sourceKey: 'ops/retries.md', projectId: alpha },
      chunk: { headingPath: ['Operations handbook', 'Retrying failed jobs'] },
    });
    expect(best.chunk.text).toContain('exponential backoff');
    // Offsets into the document's text: the chunk is exactly that stretch of it.
    expect(retryGuide.slice(best.chunk.start, best.chunk.end)).toBe(best.chunk.text);
    expect(best.score).toBeGreaterThan(0);
    // Best first.
    const scores = res.body.results.map((r: { score: number }) => r.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
  });

  it('never shows another tenant its documents, however alike', async () => {
    const query = 'retrying failed jobs with exponential backoff';
    for (const [as, projectIds] of [
      [admin, [alpha, beta]],
      [outsider, [foreign]],
    ] as const) {
      const res = await search(as, { query, mode, topK: 50 });
      expect(res.status).toBe(200);
      expect(res.body.results.length).toBeGreaterThan(0);
      expect(res.body.results.filter((r: { document: { projectId: string } }) => !projectIds.includes(r.document.projectId))).toEqual([]);
    }
  });

  it('searches one project, or only the documents named, when asked', async () => {
    const inBeta = await search(admin, { query: 'rolled back after failing health checks', mode, projectId: beta, topK: 50 });
    expect(inBeta.body.results.length).toBeGreaterThan(0);
    expect(new Set(inBeta.body.results.map((r: { document: { sourceKey: string } }) => r.document.sourceKey))).toEqual(new Set(['deploy.md']));

    const cacheId = await documentId(alpha, 'ops/cache.md');
    const onlyCache = await search(admin, { query: 'failed jobs are retried; stale cache entries expire', mode, documentIds: [cacheId], topK: 50 });
    expect(onlyCache.body.results.length).toBeGreaterThan(0);
    expect(onlyCache.body.results.every((r: { document: { id: string } }) => r.document.id === cacheId)).toBe(true);

    expect((await search(admin, { query: 'retried', mode, documentIds: [] })).body.results).toEqual([]);
  });
});

it('answers 404 for a project of another tenant, and finds nothing in documents of another tenant named by id', async () => {
  const res = await search(admin, { query: 'retries', projectId: foreign });
  expect(res.status).toBe(404);
  const foreignDocument = await documentId(foreign, 'ops/retries.md');
  expect((await search(admin, { query: 'retrying failed jobs', documentIds: [foreignDocument] })).body.results).toEqual([]);
});

it('finds only the stored version of a changed document', async () => {
  const project = await newProject(admin, 'versions');
  await store(admin, project, { 'notes.md': '# Notes\n\nThe staging cluster lives in Frankfurt.\n' });
  await store(admin, project, { 'notes.md': '# Notes\n\nThe staging cluster moved to Dublin.\n' });
  for (const mode of modes) {
    const res = await search(admin, { query: 'where does the staging cluster live? Frankfurt or Dublin', mode, projectId: project });
    expect(res.body.results.map((r: { chunk: { text: string } }) => r.chunk.text)).toEqual(['# Notes\n\nThe staging cluster moved to Dublin.']);
  }
});

it('fills its results with live chunks when points of versions not yet published are nearer', async () => {
  const project = await newProject(admin, 'crowded');
  await store(admin, project, { 'ops/retries.md': retryGuide, 'ops/cache.md': cacheGuide });
  const query = 'how long does a failed job wait before it is retried with backoff?';
  const before = await search(admin, { query, mode: 'vector', projectId: project, topK: 3 });
  expect(before.body.results).toHaveLength(3);
  // A batch embedded and upserted but not yet published: points nearer to the query than any live chunk (its very vector), ids no live chunk has.
  const embedded = await embedTexts(t, { tenantId: admin.tenantId, projectId: project, mode: 'job' }, [query]);
  const retries = await documentId(project, 'ops/retries.md');
  const pending = Array.from({ length: 20 }, (_, i) => ({
    id: randomUUID(),
    vector: embedded.vectors[0] ?? [],
    payload: { tenantId: admin.tenantId, projectId: project, documentId: retries, chunkIndex: 100 + i },
  }));
  const collection = { model: embedded.model, dimensions: embedded.dimensions };
  await t.vectors.upsert(collection, pending);
  try {
    const crowded = await search(admin, { query, mode: 'vector', projectId: project, topK: 3 });
    expect(crowded.body.results.map((r: { chunk: { id: string } }) => r.chunk.id)).toEqual(before.body.results.map((r: { chunk: { id: string } }) => r.chunk.id));
  } finally {
    await t.vectors.deleteByIds(collection, { tenantId: admin.tenantId }, pending.map((p) => p.id));
  }
});

it('leaves out the documents of a project being deleted', async () => {
  const project = await newProject(admin, 'doomed');
  await store(admin, project, { 'doomed.md': '# Doomed\n\nThe quarterly zeppelin inventory is counted on Fridays.\n' });
  const query = 'when is the zeppelin inventory counted?';
  expect((await search(admin, { query, mode: 'keyword' })).body.results).toHaveLength(1);
  // No worker runs here: the deletion stays queued, and the project stays hidden meanwhile.
  expect((await t.delete(`/api/v1/projects/${project}`, { token: admin.accessToken })).status).toBe(202);
  for (const mode of modes) {
    const res = await search(admin, { query, mode, topK: 50 });
    expect(res.body.results.filter((r: { document: { projectId: string } }) => r.document.projectId === project)).toEqual([]);
  }
});

it('lets a viewer search, and validates the request', async () => {
  const viewer = await addMember(t, admin.tenantId, 'viewer');
  expect((await t.post('/api/v1/search', { query: 'backoff' }, { token: viewer.accessToken })).status).toBe(200);
  for (const body of [{}, { query: '' }, { query: 'x', topK: 51 }, { query: 'x', mode: 'fuzzy' }, { query: 'x', documentIds: ['not-a-uuid'] }]) {
    const res = await search(admin, body);
    expect(res.status).toBe(400);
    expect(res.body.type).toBe('/problems/validation-error');
  }
});

describe('keyword candidates at scale', () => {
  /** Three words, as the planner's statistics see them: one rare, two found in a third and a half of the chunks. */
  const terms: QueryTerm[] = [
    { lexeme: 'job', frequency: 0.5 },
    { lexeme: 'backoff', frequency: 0 },
    { lexeme: 'retri', frequency: 0.3 },
  ];
  const passages = [
    'Exponential backoff between attempts.',
    'A failed job is retried.',
    'Every job has an id.',
    'Retrying is what operators do.',
    'The vault rotates passwords.',
  ];

  /** Which of the passages each candidate tsquery matches, by Postgres's own full-text matching. */
  async function matchesOf(queries: string[]): Promise<number[][]> {
    const matched: number[][] = [];
    for (const query of queries) {
      const rows = await t.sequelize.query<{ i: number }>(
        "SELECT i::int FROM unnest(ARRAY[:passages]::text[]) WITH ORDINALITY AS p(text, i) WHERE to_tsvector('english', p.text) @@ CAST(:query AS tsquery) ORDER BY i",
        { replacements: { passages, query }, type: QueryTypes.SELECT },
      );
      matched.push(rows.map((r) => r.i - 1));
    }
    return matched;
  }

  it('ranks every chunk holding any word at once in a scope within the budget', async () => {
    const queries = keywordCandidates(terms, 1000, 1000);
    expect(queries).toHaveLength(1);
    expect(await matchesOf(queries)).toEqual([[0, 1, 2, 3]]);
  });

  it('beyond it, ranks the chunks holding the rarest words first, then widens, never ranking a chunk twice', async () => {
    // 10,000 chunks: "backoff" is estimated in none, "retri" in 3,000, "job" in 5,000.
    const queries = keywordCandidates(terms, 10_000, 1000);
    expect(queries).toHaveLength(3);
    expect(await matchesOf(queries)).toEqual([[0], [1, 3], [2]]);
  });

  it('quotes every lexeme, whatever it holds', async () => {
    for (const lexeme of ["o'brien\\x", 'a:b|c&!d', '(x)']) {
      const [query] = keywordCandidates([{ lexeme, frequency: 0 }], 1, 1000);
      const [row] = await t.sequelize.query<{ holds: boolean; lacks: boolean }>(
        'SELECT array_to_tsvector(ARRAY[:lexeme]) @@ CAST(:query AS tsquery) AS holds, array_to_tsvector(ARRAY[:other]) @@ CAST(:query AS tsquery) AS lacks',
        { replacements: { lexeme, other: 'other', query }, type: QueryTypes.SELECT },
      );
      expect(row).toEqual({ holds: true, lacks: false });
    }
  });
});
