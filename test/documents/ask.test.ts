import { randomUUID } from 'node:crypto';
import { Op } from 'sequelize';
import { ingestInProcess } from '../../bench/harness/ingest-loop';
import { LlmUsage } from '../../db';
import { NOTHING_FOUND_ANSWER, type Citation } from '../../services/documents/answers';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { responseValidator } from '../harness/openapi-validator';
import { parseSse } from '../harness/sse';

/*
 * Answers with numbered citations (issue 7, criterion 8), with the built-in provider: the answer
 * quotes sentences of the sources, each followed by the number of the source it came from. Asked
 * with `Accept: text/event-stream`, the same answer streams: citations, deltas, done.
 */

const handbook = `# Operations handbook

## Retrying failed jobs

A job that fails is retried with exponential backoff. The first retry waits one second, and each
later one waits twice as long, up to five minutes.

After ten attempts the job is parked in the dead letter queue. An operator can inspect it there.

## Rotating credentials

Database passwords are rotated every ninety days by the vault.
`;

const cache = `# Caching

## Expiry

Entries of the response cache expire after sixty seconds. A stale entry is served while a fresh
one is fetched in the background.
`;

let t: TestApp;
let admin: Member;
let outsider: Member;
let projectId: string;
let emptyProjectId: string;

async function newProject(as: Member, label: string): Promise<string> {
  return (await t.post('/api/v1/projects', { name: `${label} ${randomUUID()}` }, { token: as.accessToken })).body.id;
}

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'ask');
  outsider = await registerTenant(t, 'ask-outsider');
  projectId = await newProject(admin, 'handbook');
  emptyProjectId = await newProject(admin, 'empty');
  const files = [
    { name: 'handbook.md', bytes: Buffer.from(handbook) },
    { name: 'cache.md', bytes: Buffer.from(cache) },
  ];
  expect(await ingestInProcess(t, { tenantId: admin.tenantId, projectId }, files, 10)).toMatchObject({ documents: 2, failed: 0 });
  const outsiderProject = await newProject(outsider, 'outsider');
  const theirs = [{ name: 'theirs.md', bytes: Buffer.from('# Their secrets\n\nFailed jobs of the outsider are retried by hand, never with backoff.\n') }];
  await ingestInProcess(t, { tenantId: outsider.tenantId, projectId: outsiderProject }, theirs, 10);
}, 60_000);
afterAll(() => t.close());

const collapseSpaces = (text: string) => text.replace(/\s+/g, ' ').trim();

/** Each quoted sentence of an extractive answer, with the source number that follows it. */
function quotedSentences(answer: string): Array<{ sentence: string; n: number }> {
  return [...answer.matchAll(/(.+?)\s\[(\d+)\](?:\s+|$)/g)].map((m) => ({ sentence: (m[1] ?? '').trim(), n: Number(m[2]) }));
}

/** Every sentence the answer quotes comes, word for word, from the chunk its marker names. */
function expectFaithfulCitations(answer: string, citations: Citation[]): void {
  const quoted = quotedSentences(answer);
  expect(quoted.length).toBeGreaterThan(0);
  expect(quoted.map((q) => q.sentence).join(' ')).toBe(collapseSpaces(answer.replace(/\s\[\d+\]/g, '')));
  for (const { sentence, n } of quoted) {
    const source = citations.find((c) => c.n === n);
    expect(source).toBeDefined();
    expect(collapseSpaces(source?.text ?? '')).toContain(collapseSpaces(sentence));
  }
}

it('answers from the documents, citing the chunks each quoted sentence comes from', async () => {
  const res = await t.post('/api/v1/ask', { question: 'How long does a failed job wait before it is retried?', projectId }, { token: admin.accessToken });
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ provider: 'builtin', model: 'extractive' });
  const citations = res.body.citations as Citation[];
  expect(citations.map((c) => c.n)).toEqual(citations.map((_, i) => i + 1));
  expect(citations[0]).toMatchObject({ sourceKey: 'handbook.md', title: 'Operations handbook', headingPath: ['Operations handbook', 'Retrying failed jobs'] });
  for (const c of citations) expect(handbook.includes(c.text) || cache.includes(c.text)).toBe(true);
  expect(res.body.answer).toContain('exponential backoff');
  expectFaithfulCitations(res.body.answer, citations);
});

it('streams the same answer as Server-Sent Events: citations, deltas, then done', async () => {
  const question = 'What happens to a job after ten failed attempts?';
  const res = await t
    .raw()
    .post('/api/v1/ask')
    .set('Authorization', `Bearer ${admin.accessToken}`)
    .set('Accept', 'text/event-stream')
    .send({ question, projectId })
    .buffer(true)
    .parse((response, done) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => done(null, text));
    });
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
  // The OpenAPI document declares the stream beside the JSON answer, and the response matches it.
  const ask = (t.openapi as { paths: Record<string, { post: { responses: Record<string, { content: Record<string, unknown> }> } }> }).paths['/api/v1/ask'];
  expect(Object.keys(ask?.post.responses['200']?.content ?? {}).sort()).toEqual(['application/json', 'text/event-stream']);
  responseValidator(t.openapi)('POST', '/api/v1/ask', res.status, res.headers['content-type'] ?? '', res.body);
  const events = parseSse(res.body as string).flatMap((m) => (m.kind === 'event' ? [m] : []));
  const names = events.map((e) => e.event);
  expect(names[0]).toBe('citations');
  expect(names.at(-1)).toBe('done');
  expect(names.slice(1, -1).every((name) => name === 'delta')).toBe(true);
  expect(names.length).toBeGreaterThan(2);

  const citations = (JSON.parse(events[0]?.data ?? '{}') as { citations: Citation[] }).citations;
  const done = JSON.parse(events.at(-1)?.data ?? '{}') as { answer: string; citations: Citation[] };
  const streamed = events.slice(1, -1).map((e) => (JSON.parse(e.data) as { text: string }).text).join('');
  expect(streamed).toBe(done.answer);
  expect(done.citations).toEqual(citations);
  expect(done.answer).toContain('dead letter queue');
  expectFaithfulCitations(done.answer, citations);

  // The same question without the stream header: the same answer, as JSON.
  const json = await t.post('/api/v1/ask', { question, projectId }, { token: admin.accessToken });
  expect(json.body).toMatchObject({ answer: done.answer, citations });
});

it('says plainly that nothing was found, without asking a model, when no document matches', async () => {
  // The question is embedded for the search; no chat model is asked.
  const chatCalls = () => LlmUsage.count({ where: { tenantId: admin.tenantId, operation: { [Op.ne]: 'embedding' } } });
  const chatCallsBefore = await chatCalls();
  const res = await t.post('/api/v1/ask', { question: 'How are failed jobs retried?', projectId: emptyProjectId }, { token: admin.accessToken });
  expect(res.status).toBe(200);
  expect(res.body).toEqual({ answer: NOTHING_FOUND_ANSWER, citations: [], provider: null, model: null });
  expect(await chatCalls()).toBe(chatCallsBefore);
});

it("cites only the asking tenant's documents, and answers 404 for another tenant's project", async () => {
  const res = await t.post('/api/v1/ask', { question: 'Are failed jobs retried by hand or with backoff?' }, { token: admin.accessToken });
  expect(res.status).toBe(200);
  expect(res.body.citations.length).toBeGreaterThan(0);
  expect(res.body.citations.filter((c: Citation) => c.sourceKey === 'theirs.md')).toEqual([]);
  expect(res.body.answer).not.toContain('by hand');

  const theirs = await t.post('/api/v1/ask', { question: 'How are failed jobs retried?', projectId }, { token: outsider.accessToken });
  expect(theirs.status).toBe(404);
});
