import { randomUUID } from 'node:crypto';
import { Op, QueryTypes } from 'sequelize';
import { z } from 'zod';
import { Job, LlmUsage, SecretAccessLog } from '../../db';
import { costOf, LlmProviderError, type ChatMessage } from '../../lib/llm';
import {
  chatCompletion,
  embedTexts,
  LlmBudgetExhaustedError,
  spentThisMonth,
  streamChatCompletion,
  structuredCompletion,
  type LlmCall,
  type LlmDeps,
  type LlmStreamEvent,
  type StoredLlmSettings,
} from '../../services/llm';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { collect, failureOf, standInEmbedding, startLlmStandIn, type LlmStandIn, type RecordedLlmRequest } from '../harness/llm-stand-in';

/*
 * The LLM gateway as its callers use it: inline from an API request (`mode: 'interactive'`, one
 * deadline of LLM_INLINE_TIMEOUT_SECONDS for the whole call) and from a job's activity
 * (`mode: 'job'`). Real Postgres, real vault, the real `openai` and `@anthropic-ai/sdk` clients
 * talking to stand-in providers on 127.0.0.1. Each tenant has its own API key (a vault secret),
 * hence its own rate-limit bucket, cache entries and spend.
 */

let t: TestApp;
let deps: LlmDeps;
/** The OpenAI-compatible provider most tenants use; answers `echo: <question>` unless a test queues texts. */
let openai: LlmStandIn;
/** The fallback provider. */
let anthropic: LlmStandIn;
/** An OpenAI provider reporting expensive usage, for the budget. */
let pricey: LlmStandIn;

/** Answer texts the OpenAI stand-in gives next, in order, before it echoes again. */
const queuedAnswers: string[] = [];
/** The usage the OpenAI stand-in reports for every chat answer: priced, so calls cost something. */
const reportedUsage = { promptTokens: 1000, completionTokens: 200 };

interface TenantUnderTest {
  admin: Member;
  tenantId: string;
  /** The secret holding the tenant's API key. */
  key: { id: string; reference: string; value: string };
  interactive(extra?: Partial<LlmCall>): LlmCall;
  job(jobId: string, extra?: Partial<LlmCall>): LlmCall;
}

async function createSecret(admin: Member, name: string, value: string) {
  const res = await t.post('/api/v1/secrets', { name, value }, { token: admin.accessToken });
  if (res.status !== 201) throw new Error(`create secret answered ${res.status}: ${res.text}`);
  return { id: res.body.id as string, reference: res.body.reference as string, value };
}

/** A new tenant whose admin stores an API key in the vault and LLM settings (through the API) that use it. */
async function tenantWith(
  label: string,
  settings: (keyReference: string) => StoredLlmSettings,
  secret: { name?: string; value?: string } = {},
): Promise<TenantUnderTest> {
  const admin = await registerTenant(t, label);
  const key = await createSecret(admin, secret.name ?? `llm-key-${randomUUID().slice(0, 8)}`, secret.value ?? `sk-${label}-${randomUUID()}`);
  const res = await t.put('/api/v1/llm/settings', settings(key.reference), { token: admin.accessToken });
  if (res.status !== 200) throw new Error(`PUT /llm/settings answered ${res.status}: ${res.text}`);
  return {
    admin,
    tenantId: admin.tenantId,
    key,
    interactive: (extra = {}) => ({ tenantId: admin.tenantId, mode: 'interactive', actor: `user:${admin.userId}`, ...extra }),
    job: (jobId, extra = {}) => ({ tenantId: admin.tenantId, mode: 'job', jobId, activity: 'gatewayTest', ...extra }),
  };
}

/** A job row for `mode: 'job'` calls to belong to (usage rows reference it). */
async function jobOf(tenantId: string): Promise<string> {
  const job = await Job.create({ tenantId, projectId: null, kind: 'checkLlm', workflowId: `gateway-test-${randomUUID()}`, title: 'gateway test', requestedBy: 'test' });
  return job.id;
}

const openAiChat = (key: string, extra: StoredLlmSettings = {}): StoredLlmSettings => ({
  chat: { provider: 'openai', baseUrl: openai.url, apiKey: key, model: 'gpt-4o-mini' },
  ...extra,
});

const ask = (question: string, extra: { temperature?: number } = {}) => ({ messages: [{ role: 'user' as const, content: question }], ...extra });

function lastUserText(request: RecordedLlmRequest): string {
  const messages = (request.body?.messages ?? []) as Array<{ role: string; content: string }>;
  return messages.filter((m) => m.role === 'user').at(-1)?.content ?? '';
}

/** Requests a stand-in received with this tenant's key (tenants share stand-ins). */
const requestsOf = (standIn: LlmStandIn, key: string, path = '/v1/chat/completions') =>
  standIn.requests.filter((r) => r.path === path && (r.headers.authorization === `Bearer ${key}` || r.headers['x-api-key'] === key));

/** The newest usage row id: rows written after it are a call's. */
async function usageMark(): Promise<string> {
  const [row] = await t.sequelize.query<{ id: string | null }>('SELECT max(id)::text AS id FROM llm_usage', { type: QueryTypes.SELECT });
  return row?.id ?? '0';
}

const usageSince = (tenantId: string, mark: string) => LlmUsage.findAll({ where: { tenantId, id: { [Op.gt]: mark } }, order: [['id', 'ASC']] });

async function providerFailureOf(promise: Promise<unknown>): Promise<LlmProviderError> {
  const error = await failureOf(promise);
  if (!(error instanceof LlmProviderError)) throw new Error(`expected an LlmProviderError, got ${String(error)}`);
  return error;
}

const float32 = (v: number[]) => Array.from(Float32Array.from(v));

beforeAll(async () => {
  t = await startTestApp({ LLM_ALLOWED_HOSTS: '127.0.0.1', LLM_INLINE_TIMEOUT_SECONDS: '1' });
  deps = { sequelize: t.sequelize, config: t.config };
  openai = await startLlmStandIn('openai', { reply: (request) => queuedAnswers.shift() ?? `echo: ${lastUserText(request)}`, usage: reportedUsage });
  anthropic = await startLlmStandIn('anthropic');
  pricey = await startLlmStandIn('openai', { usage: { promptTokens: 100_000, completionTokens: 10_000 } });
});

afterAll(async () => {
  await Promise.all([openai, anthropic, pricey].filter(Boolean).map((s) => s.close()));
  await t?.close();
});

afterEach(() => {
  // A test that failed half-way must not hand its answers to the next one.
  queuedAnswers.length = 0;
});

describe('chat completion', () => {
  let acme: TenantUnderTest;
  beforeAll(async () => {
    acme = await tenantWith('chat', (key) => openAiChat(key));
  });

  test.each(['interactive', 'job'] as const)(
    '%s: reaches the provider with the tenant key from the vault, and records tokens, cost and latency',
    async (mode) => {
      const jobId = await jobOf(acme.tenantId);
      const call = mode === 'interactive' ? acme.interactive() : acme.job(jobId);
      const accessesBefore = await SecretAccessLog.count({ where: { secretId: acme.key.id } });
      const mark = await usageMark();

      const answer = await chatCompletion(deps, call, ask(`What changed in release 1.2 (${mode})?`));

      expect(answer).toMatchObject({ text: `echo: What changed in release 1.2 (${mode})?`, provider: 'openai', cached: false, fallbackFrom: null, usage: reportedUsage });
      const sent = requestsOf(openai, acme.key.value);
      expect(sent.at(-1)?.headers.authorization).toBe(`Bearer ${acme.key.value}`);
      expect(sent.at(-1)?.body).toMatchObject({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `What changed in release 1.2 (${mode})?` }] });

      const expectedCost = costOf('openai', 'gpt-4o-mini', reportedUsage);
      expect(expectedCost).toBeGreaterThan(0);
      expect(answer.costUsd).toBeCloseTo(expectedCost, 10);
      const rows = await usageSince(acme.tenantId, mark);
      expect(rows.map((r) => r.toJSON())).toEqual([
        expect.objectContaining({
          tenantId: acme.tenantId,
          jobId: mode === 'job' ? jobId : null,
          operation: 'chat',
          provider: 'openai',
          model: 'gpt-4o-mini',
          promptTokens: 1000,
          completionTokens: 200,
          items: 1,
          cached: false,
          fallbackFrom: null,
          outcome: 'ok',
          error: null,
        }),
      ]);
      expect(rows[0]?.costUsd).toBeCloseTo(expectedCost, 6);
      expect(rows[0]?.latencyMs).toBe(answer.latencyMs);
      expect(answer.latencyMs).toBeGreaterThanOrEqual(0);

      // The key was resolved from the vault for this call, and the resolution is on record.
      const accesses = await SecretAccessLog.findAll({ where: { secretId: acme.key.id }, order: [['createdAt', 'ASC']] });
      expect(accesses).toHaveLength(accessesBefore + 1);
      expect(accesses.at(-1)?.toJSON()).toMatchObject(
        mode === 'interactive' ? { tenantId: acme.tenantId, actor: `user:${acme.admin.userId}`, jobId: null } : { tenantId: acme.tenantId, jobId, activity: 'gatewayTest' },
      );
    },
  );

  test('system messages, temperature and the token limit reach the provider as given', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Answer briefly.' },
      { role: 'user', content: 'Summarise the audit.' },
    ];
    await chatCompletion(deps, acme.job(await jobOf(acme.tenantId)), { messages, temperature: 0.2, maxTokens: 50 });
    expect(requestsOf(openai, acme.key.value).at(-1)?.body).toMatchObject({ messages, temperature: 0.2, max_completion_tokens: 50 });
  });
});

describe('the answer cache', () => {
  let acme: TenantUnderTest;
  beforeAll(async () => {
    acme = await tenantWith('cache', (key) => openAiChat(key), { name: 'shared-llm-key', value: `sk-cache-${randomUUID()}` });
  });

  test('the same call again is answered from the cache: the provider is asked once, the hit is recorded at no cost', async () => {
    const first = await chatCompletion(deps, acme.interactive(), ask('Which findings are open?'));
    const mark = await usageMark();
    const second = await chatCompletion(deps, acme.interactive(), ask('Which findings are open?'));

    expect(requestsOf(openai, acme.key.value)).toHaveLength(1);
    expect(first.cached).toBe(false);
    expect(second).toMatchObject({ text: first.text, cached: true, costUsd: 0, provider: 'openai' });
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => r.toJSON())).toEqual([expect.objectContaining({ operation: 'chat', provider: 'openai', model: 'gpt-4o-mini', cached: true, outcome: 'ok', promptTokens: 0, completionTokens: 0 })]);
    expect(rows[0]?.costUsd).toBe(0);
  });

  test('a job shares the answers cached for interactive calls', async () => {
    const before = requestsOf(openai, acme.key.value).length;
    const answer = await chatCompletion(deps, acme.job(await jobOf(acme.tenantId)), ask('Which findings are open?'));
    expect(answer.cached).toBe(true);
    expect(requestsOf(openai, acme.key.value)).toHaveLength(before);
  });

  test("cache: 'bypass' asks the provider even when an answer is cached, and leaves the cache alone", async () => {
    await chatCompletion(deps, acme.interactive(), ask('Is the scan finished?'));
    const before = requestsOf(openai, acme.key.value).length;
    queuedAnswers.push('a fresh answer');
    const bypassed = await chatCompletion(deps, acme.interactive({ cache: 'bypass' }), ask('Is the scan finished?'));
    expect(bypassed).toMatchObject({ text: 'a fresh answer', cached: false });
    expect(requestsOf(openai, acme.key.value)).toHaveLength(before + 1);
    // The bypass did not overwrite the entry.
    const again = await chatCompletion(deps, acme.interactive(), ask('Is the scan finished?'));
    expect(again).toMatchObject({ text: 'echo: Is the scan finished?', cached: true });
  });

  test('is never shared between tenants, even with identical settings, key and messages', async () => {
    await chatCompletion(deps, acme.interactive(), ask('What is our secret roadmap?'));
    const other = await tenantWith('cache-other', (key) => openAiChat(key), { name: 'shared-llm-key', value: acme.key.value });
    expect(other.key.reference).toBe(acme.key.reference);
    const before = openai.requests.length;

    const answer = await chatCompletion(deps, other.interactive(), ask('What is our secret roadmap?'));

    expect(answer.cached).toBe(false);
    expect(openai.requests).toHaveLength(before + 1);
    const rows = await LlmUsage.findAll({ where: { tenantId: other.tenantId } });
    expect(rows.map((r) => r.cached)).toEqual([false]);
  });

  test('an expired entry is a miss, and the fresh answer replaces it', async () => {
    await chatCompletion(deps, acme.interactive(), ask('Who approved the exception?'));
    await t.sequelize.query("UPDATE llm_cache SET expires_at = now() - interval '1 minute' WHERE tenant_id = :tenantId AND response->>'text' = :text", {
      replacements: { tenantId: acme.tenantId, text: 'echo: Who approved the exception?' },
    });
    const before = requestsOf(openai, acme.key.value).length;

    const expired = await chatCompletion(deps, acme.interactive(), ask('Who approved the exception?'));
    expect(expired.cached).toBe(false);
    expect(requestsOf(openai, acme.key.value)).toHaveLength(before + 1);

    const refreshed = await chatCompletion(deps, acme.interactive(), ask('Who approved the exception?'));
    expect(refreshed.cached).toBe(true);
  });

  test('different parameters (temperature) are a different entry', async () => {
    await chatCompletion(deps, acme.interactive(), ask('Rate the risk.', { temperature: 0 }));
    const before = requestsOf(openai, acme.key.value).length;
    const warmer = await chatCompletion(deps, acme.interactive(), ask('Rate the risk.', { temperature: 0.7 }));
    expect(warmer.cached).toBe(false);
    expect(requestsOf(openai, acme.key.value)).toHaveLength(before + 1);
    expect(requestsOf(openai, acme.key.value).at(-1)?.body.temperature).toBe(0.7);
  });
});

describe('streaming', () => {
  let acme: TenantUnderTest;
  beforeAll(async () => {
    acme = await tenantWith('stream', (key) => openAiChat(key));
  });

  test('deltas join to the final answer, usage is recorded once, and a later identical chat is a cache hit', async () => {
    const question = 'Explain the failing check in a few words please';
    const mark = await usageMark();

    const events = await collect(streamChatCompletion(deps, acme.interactive(), ask(question)));

    const deltas = events.filter((e): e is Extract<LlmStreamEvent, { type: 'delta' }> => e.type === 'delta');
    const done = events.at(-1);
    expect(deltas.length).toBeGreaterThan(1);
    expect(done?.type).toBe('done');
    if (done?.type !== 'done') throw new Error('unreachable');
    expect(deltas.map((d) => d.text).join('')).toBe(`echo: ${question}`);
    expect(done.answer).toMatchObject({ text: `echo: ${question}`, provider: 'openai', cached: false, usage: reportedUsage });
    expect(done.answer.costUsd).toBeCloseTo(costOf('openai', 'gpt-4o-mini', reportedUsage), 10);
    expect(requestsOf(openai, acme.key.value).at(-1)?.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });

    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => r.toJSON())).toEqual([expect.objectContaining({ operation: 'stream', cached: false, outcome: 'ok', promptTokens: 1000, completionTokens: 200 })]);

    const later = await chatCompletion(deps, acme.job(await jobOf(acme.tenantId)), ask(question));
    expect(later).toMatchObject({ text: `echo: ${question}`, cached: true });
    expect(requestsOf(openai, acme.key.value)).toHaveLength(1);
  });

  test('a cached answer streams as one delta and the done event', async () => {
    await chatCompletion(deps, acme.interactive(), ask('Short answer?'));
    const events = await collect(streamChatCompletion(deps, acme.interactive(), ask('Short answer?')));
    expect(events).toEqual([
      { type: 'delta', text: 'echo: Short answer?' },
      { type: 'done', answer: expect.objectContaining({ text: 'echo: Short answer?', cached: true }) },
    ]);
  });
});

describe('structured output', () => {
  let acme: TenantUnderTest;
  const verdict = z.object({ verdict: z.enum(['pass', 'fail']), score: z.number().min(0).max(1) }).strict();
  const request = (question: string) => ({ name: 'verdict', schema: verdict, messages: [{ role: 'user' as const, content: question }] });
  const cachedStructured = async (tenantId: string) => {
    const [row] = await t.sequelize.query<{ n: number }>("SELECT count(*)::int AS n FROM llm_cache WHERE tenant_id = :tenantId AND operation = 'structured'", {
      replacements: { tenantId },
      type: QueryTypes.SELECT,
    });
    return row?.n ?? 0;
  };

  beforeAll(async () => {
    acme = await tenantWith('structured', (key) => openAiChat(key));
  });

  test('a zod schema in, a validated object out (the schema is sent as the response format)', async () => {
    queuedAnswers.push('{"verdict":"pass","score":0.8}');
    const result = await structuredCompletion(deps, acme.job(await jobOf(acme.tenantId)), request('Does the repository pass?'));
    expect(result).toMatchObject({ value: { verdict: 'pass', score: 0.8 }, repaired: false, answer: { provider: 'openai', cached: false } });
    expect(requestsOf(openai, acme.key.value).at(-1)?.body.response_format).toMatchObject({ type: 'json_schema', json_schema: { name: 'verdict', schema: { type: 'object' } } });
  });

  test('invalid JSON first gets one repair attempt that shows the model its answer and the problem', async () => {
    queuedAnswers.push('The verdict is pass.', '{"verdict":"fail","score":0.1}');
    const mark = await usageMark();

    const result = await structuredCompletion(deps, acme.job(await jobOf(acme.tenantId)), request('Does the branch pass?'));

    expect(result).toMatchObject({ value: { verdict: 'fail', score: 0.1 }, repaired: true });
    const [first, repair] = requestsOf(openai, acme.key.value).slice(-2);
    expect(first?.body.messages).toEqual([{ role: 'user', content: 'Does the branch pass?' }]);
    expect(repair?.body.messages).toEqual([
      { role: 'user', content: 'Does the branch pass?' },
      { role: 'assistant', content: 'The verdict is pass.' },
      { role: 'user', content: expect.stringMatching(/not valid JSON/) },
    ]);
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => [r.operation, r.outcome])).toEqual([
      ['structured', 'ok'],
      ['structured', 'ok'],
    ]);
  });

  test('an answer of the wrong shape is repaired with the schema violation named', async () => {
    queuedAnswers.push('{"verdict":"maybe","score":0.5}', '{"verdict":"pass","score":0.5}');
    const result = await structuredCompletion(deps, acme.job(await jobOf(acme.tenantId)), request('Does the tag pass?'));
    expect(result).toMatchObject({ value: { verdict: 'pass', score: 0.5 }, repaired: true });
    expect(lastUserText(requestsOf(openai, acme.key.value).at(-1) as RecordedLlmRequest)).toMatch(/verdict/);
  });

  test('invalid twice fails as invalid_output (not retryable), and nothing is cached', async () => {
    const cachedBefore = await cachedStructured(acme.tenantId);
    queuedAnswers.push('not json', '{"verdict":"unsure"}');

    const error = await providerFailureOf(structuredCompletion(deps, acme.job(await jobOf(acme.tenantId)), request('Does the fork pass?')));

    expect(error).toMatchObject({ provider: 'openai', kind: 'invalid_output', retryable: false });
    expect(error.message).toMatch(/"verdict" schema/);
    expect(await cachedStructured(acme.tenantId)).toBe(cachedBefore);
    // Asking again reaches the provider: the bad answers were not kept.
    const before = requestsOf(openai, acme.key.value).length;
    queuedAnswers.push('{"verdict":"pass","score":1}');
    const retried = await structuredCompletion(deps, acme.job(await jobOf(acme.tenantId)), request('Does the fork pass?'));
    expect(retried).toMatchObject({ value: { verdict: 'pass', score: 1 }, repaired: false, answer: { cached: false } });
    expect(requestsOf(openai, acme.key.value)).toHaveLength(before + 1);
  });

  test('a validated answer is cached and served again', async () => {
    queuedAnswers.push('{"verdict":"pass","score":0.3}');
    await structuredCompletion(deps, acme.job(await jobOf(acme.tenantId)), request('Does the release pass?'));
    const again = await structuredCompletion(deps, acme.interactive(), request('Does the release pass?'));
    expect(again).toMatchObject({ value: { verdict: 'pass', score: 0.3 }, answer: { cached: true } });
  });

  test('the builtin provider refuses structured output as unsupported', async () => {
    const offline = await registerTenant(t, 'structured-offline');
    const error = await providerFailureOf(structuredCompletion(deps, { tenantId: offline.tenantId, mode: 'interactive' }, request('Does it pass?')));
    expect(error).toMatchObject({ provider: 'builtin', kind: 'unsupported', retryable: false });
  });
});

describe('embeddings', () => {
  let acme: TenantUnderTest;
  const embeddingsOf = (key: string) => requestsOf(openai, key, '/v1/embeddings');

  beforeAll(async () => {
    acme = await tenantWith('embed', (key) => ({ embedding: { provider: 'openai', baseUrl: openai.url, apiKey: key, model: 'text-embedding-3-small' } }));
  });

  test('vectors come back in input order, from one batched request', async () => {
    const texts = ['alpha finding', 'beta finding', 'gamma finding'];
    const result = await embedTexts(deps, acme.job(await jobOf(acme.tenantId)), texts);
    expect(result).toMatchObject({ provider: 'openai', model: 'text-embedding-3-small', dimensions: 8, cachedCount: 0 });
    expect(result.vectors).toEqual(texts.map((text) => float32(standInEmbedding(text))));
    const sent = embeddingsOf(acme.key.value);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.body).toMatchObject({ model: 'text-embedding-3-small', input: texts });
  });

  test('texts already cached are not sent again; the vectors still come in input order', async () => {
    const texts = ['gamma finding', 'delta finding', 'alpha finding'];
    const mark = await usageMark();

    const result = await embedTexts(deps, acme.interactive(), texts);

    expect(result.cachedCount).toBe(2);
    expect(result.vectors).toEqual(texts.map((text) => float32(standInEmbedding(text))));
    expect(embeddingsOf(acme.key.value).at(-1)?.body.input).toEqual(['delta finding']);
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => ({ cached: r.cached, items: r.items, operation: r.operation }))).toEqual([
      { cached: true, items: 2, operation: 'embedding' },
      { cached: false, items: 1, operation: 'embedding' },
    ]);
  });

  test("a batch larger than the provider's limit is split into requests it accepts", async () => {
    // Ollama takes 64 inputs per request (lib/llm/presets.ts); a baseUrl without a path gets /v1.
    const local = await tenantWith('embed-ollama', () => ({ embedding: { provider: 'ollama', baseUrl: openai.url } }));
    const before = openai.requests.length;
    const texts = Array.from({ length: 130 }, (_, i) => `local text number ${i}`);
    const mark = await usageMark();

    const result = await embedTexts(deps, local.job(await jobOf(local.tenantId)), texts);

    const sent = openai.requests.slice(before);
    expect(sent.map((r) => [r.path, r.headers.authorization, r.body.input.length])).toEqual([
      ['/v1/embeddings', undefined, 64],
      ['/v1/embeddings', undefined, 64],
      ['/v1/embeddings', undefined, 2],
    ]);
    expect(sent.flatMap((r) => r.body.input)).toEqual(texts);
    expect(result).toMatchObject({ provider: 'ollama', model: 'nomic-embed-text', cachedCount: 0, costUsd: 0 });
    expect(result.vectors).toEqual(texts.map((text) => float32(standInEmbedding(text))));
    const rows = await usageSince(local.tenantId, mark);
    expect(rows.map((r) => [r.items, r.outcome, r.costUsd])).toEqual([
      [64, 'ok', 0],
      [64, 'ok', 0],
      [2, 'ok', 0],
    ]);
  });

  test('the builtin embeddings need no network and have 384 dimensions', async () => {
    const offline = await registerTenant(t, 'embed-offline');
    const before = [openai, anthropic, pricey].map((s) => s.requests.length);

    const result = await embedTexts(deps, { tenantId: offline.tenantId, mode: 'interactive' }, ['token rotation policy', 'rotate tokens every 90 days']);

    expect(result).toMatchObject({ provider: 'builtin', model: 'hashing-384', dimensions: 384, costUsd: 0 });
    expect(result.vectors.map((v) => v.length)).toEqual([384, 384]);
    for (const vector of result.vectors) expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
    expect([openai, anthropic, pricey].map((s) => s.requests.length)).toEqual(before);
    // Deterministic, and cached like any other provider's.
    const again = await embedTexts(deps, { tenantId: offline.tenantId, mode: 'interactive' }, ['token rotation policy']);
    expect(again).toMatchObject({ cachedCount: 1, vectors: [result.vectors[0]] });
  });
});

describe('provider failures', () => {
  let acme: TenantUnderTest;
  beforeAll(async () => {
    acme = await tenantWith('failures', (key) => openAiChat(key));
  });

  async function failedRow(mark: string) {
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => ({ outcome: r.outcome, cached: r.cached, provider: r.provider }))).toEqual([{ outcome: 'failed', cached: false, provider: 'openai' }]);
    return rows[0]!;
  }

  test('a 429 with Retry-After is rate_limited, retryable, with the wait the provider asked for', async () => {
    openai.script({ status: 429, headers: { 'retry-after': '7' } });
    const mark = await usageMark();

    const error = await providerFailureOf(chatCompletion(deps, acme.job(await jobOf(acme.tenantId)), ask('Too many?')));

    expect(error).toMatchObject({ provider: 'openai', kind: 'rate_limited', retryable: true, details: { status: 429, retryAfterMs: 7000 } });
    expect((await failedRow(mark)).error).toBe(error.message);
  });

  test('a 500 is a retryable server_error', async () => {
    openai.script({ status: 500 });
    const mark = await usageMark();
    const error = await providerFailureOf(chatCompletion(deps, acme.interactive(), ask('Broken?')));
    expect(error).toMatchObject({ kind: 'server_error', retryable: true, details: { status: 500 } });
    expect(error.message).toMatch(/^openai answered 500/);
    await failedRow(mark);
  });

  test('a 401 is unauthorized and not retryable, with a clear message that never carries the key, even when the provider echoes it', async () => {
    openai.script({
      status: 401,
      body: { error: { message: `Incorrect API key provided: ${acme.key.value}. You can find your API key at https://example.test.`, type: 'invalid_request_error', code: 'invalid_api_key' } },
    });
    const mark = await usageMark();

    const error = await providerFailureOf(chatCompletion(deps, acme.interactive(), ask('Who am I?')));

    expect(error).toMatchObject({ kind: 'unauthorized', retryable: false, details: { status: 401 } });
    expect(error.message).toMatch(/^openai answered 401 Unauthorized: Incorrect API key provided/);
    expect(error.message).not.toContain(acme.key.value);
    const row = await failedRow(mark);
    expect(row.error).not.toContain(acme.key.value);
  });

  test('a failed call caches nothing: the same question asked again reaches the provider', async () => {
    openai.script({ status: 503 });
    await providerFailureOf(chatCompletion(deps, acme.interactive(), ask('Up again?')));
    const answer = await chatCompletion(deps, acme.interactive(), ask('Up again?'));
    expect(answer).toMatchObject({ text: 'echo: Up again?', cached: false });
  });

  test('an inline call that gets no answer within LLM_INLINE_TIMEOUT_SECONDS fails as a retryable timeout', async () => {
    openai.script({ status: 200, delayMs: 30_000 });
    const mark = await usageMark();

    const error = await providerFailureOf(chatCompletion(deps, acme.interactive(), ask('Still there?')));

    expect(error).toMatchObject({ provider: 'openai', kind: 'timeout', retryable: true });
    await failedRow(mark);
  });
});

describe('fallback provider', () => {
  let acme: TenantUnderTest;
  let fallbackKey: { id: string; reference: string; value: string };

  beforeAll(async () => {
    const admin = await registerTenant(t, 'fallback');
    fallbackKey = await createSecret(admin, 'anthropic-key', `sk-ant-${randomUUID()}`);
    const primaryKey = await createSecret(admin, 'openai-key', `sk-openai-${randomUUID()}`);
    const res = await t.put(
      '/api/v1/llm/settings',
      openAiChat(primaryKey.reference, { fallback: { provider: 'anthropic', baseUrl: anthropic.url, apiKey: fallbackKey.reference, model: 'claude-3-5-haiku-latest' } }),
      { token: admin.accessToken },
    );
    expect(res.status).toBe(200);
    acme = {
      admin,
      tenantId: admin.tenantId,
      key: primaryKey,
      interactive: (extra = {}) => ({ tenantId: admin.tenantId, mode: 'interactive', actor: `user:${admin.userId}`, ...extra }),
      job: (jobId, extra = {}) => ({ tenantId: admin.tenantId, mode: 'job', jobId, activity: 'gatewayTest', ...extra }),
    };
  });

  test('when the primary fails, the fallback answers, and both attempts are recorded', async () => {
    openai.script({ status: 500 });
    const mark = await usageMark();

    const answer = await chatCompletion(deps, acme.job(await jobOf(acme.tenantId)), ask('Who owns this service?'));

    expect(answer).toMatchObject({ text: 'echo: Who owns this service?', provider: 'anthropic', fallbackFrom: 'openai', cached: false });
    expect(answer.costUsd).toBeGreaterThan(0);
    expect(requestsOf(anthropic, fallbackKey.value, '/v1/messages').at(-1)?.body).toMatchObject({ model: 'claude-3-5-haiku-latest' });
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => ({ provider: r.provider, model: r.model, outcome: r.outcome, fallbackFrom: r.fallbackFrom }))).toEqual([
      { provider: 'openai', model: 'gpt-4o-mini', outcome: 'failed', fallbackFrom: null },
      { provider: 'anthropic', model: 'claude-3-5-haiku-latest', outcome: 'ok', fallbackFrom: 'openai' },
    ]);
  });

  test('a healthy primary answers without the fallback', async () => {
    const before = anthropic.requests.length;
    const answer = await chatCompletion(deps, acme.interactive(), ask('Is the primary back?'));
    expect(answer).toMatchObject({ provider: 'openai', fallbackFrom: null });
    expect(anthropic.requests).toHaveLength(before);
  });

  test.each([
    { primary: 401, fallback: 500, kind: 'server_error', provider: 'anthropic' },
    { primary: 429, fallback: 401, kind: 'rate_limited', provider: 'openai' },
  ])('when both fail (primary $primary, fallback $fallback), the error is the retryable one', async ({ primary, fallback, kind, provider }) => {
    openai.script({ status: primary });
    anthropic.script({ status: fallback });
    const mark = await usageMark();

    const error = await providerFailureOf(chatCompletion(deps, acme.interactive(), ask(`Anyone there (${primary}/${fallback})?`)));

    expect(error).toMatchObject({ provider, kind, retryable: true });
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => [r.provider, r.outcome, r.fallbackFrom])).toEqual([
      ['openai', 'failed', null],
      ['anthropic', 'failed', 'openai'],
    ]);
  });

  test('an inline call whose primary used up the deadline does not try the fallback', async () => {
    openai.script({ status: 200, delayMs: 30_000 });
    const before = anthropic.requests.length;
    const mark = await usageMark();

    const error = await providerFailureOf(chatCompletion(deps, acme.interactive(), ask('Slow primary?')));

    expect(error).toMatchObject({ provider: 'openai', kind: 'timeout', retryable: true });
    expect(anthropic.requests).toHaveLength(before);
    const rows = await usageSince(acme.tenantId, mark);
    expect(rows.map((r) => [r.provider, r.outcome])).toEqual([['openai', 'failed']]);
  });

  test('when both fail with final errors, the error is not retryable', async () => {
    openai.script({ status: 401 });
    anthropic.script({ status: 403 });
    const error = await providerFailureOf(chatCompletion(deps, acme.interactive(), ask('Anyone at all?')));
    expect(error.retryable).toBe(false);
  });
});

describe('monthly budget', () => {
  test('the call that reaches the budget succeeds; the next provider call is refused, cached answers stay free', async () => {
    const admin = await registerTenant(t, 'budget');
    const key = await createSecret(admin, 'openai-key', `sk-budget-${randomUUID()}`);
    const res = await t.put(
      '/api/v1/llm/settings',
      { chat: { provider: 'openai', baseUrl: pricey.url, apiKey: key.reference, model: 'gpt-4o-mini' }, monthlyBudgetUsd: 0.01 },
      { token: admin.accessToken },
    );
    expect(res.status).toBe(200);
    const call: LlmCall = { tenantId: admin.tenantId, mode: 'interactive' };
    const expensive = costOf('openai', 'gpt-4o-mini', { promptTokens: 100_000, completionTokens: 10_000 });
    expect(expensive).toBeGreaterThan(0.01);

    const first = await chatCompletion(deps, call, ask('Audit everything.'));
    expect(first.costUsd).toBeCloseTo(expensive, 10);
    expect(await spentThisMonth(t.sequelize, admin.tenantId)).toBeCloseTo(expensive, 6);

    const refused = await failureOf(chatCompletion(deps, call, ask('Audit everything again.')));
    expect(refused).toBeInstanceOf(LlmBudgetExhaustedError);
    expect(refused).toMatchObject({ status: 402, slug: 'llm-budget-exhausted', extra: { budgetUsd: 0.01 } });
    expect((refused as Error).message).toMatch(/monthly LLM budget of \$0\.01 is spent/);
    expect(requestsOf(pricey, key.value)).toHaveLength(1);

    // Streams and jobs are refused the same way.
    expect(await failureOf(collect(streamChatCompletion(deps, call, ask('Stream it.'))))).toBeInstanceOf(LlmBudgetExhaustedError);
    expect(await failureOf(chatCompletion(deps, { tenantId: admin.tenantId, mode: 'job', jobId: await jobOf(admin.tenantId) }, ask('As a job.')))).toBeInstanceOf(
      LlmBudgetExhaustedError,
    );
    expect(requestsOf(pricey, key.value)).toHaveLength(1);

    const cached = await chatCompletion(deps, call, ask('Audit everything.'));
    expect(cached).toMatchObject({ cached: true, costUsd: 0 });

    const [sum] = await t.sequelize.query<{ total: string }>('SELECT coalesce(sum(cost_usd), 0)::text AS total FROM llm_usage WHERE tenant_id = :tenantId', {
      replacements: { tenantId: admin.tenantId },
      type: QueryTypes.SELECT,
    });
    expect(await spentThisMonth(t.sequelize, admin.tenantId)).toBe(Number(sum?.total));
  });
});

describe('rate limit', () => {
  test('an inline call that would wait past its deadline fails as rate_limited with the wait, without reaching the provider', async () => {
    const limited = await tenantWith('rate', (key) => ({ chat: { provider: 'openai', baseUrl: openai.url, apiKey: key, model: 'gpt-4o-mini', requestsPerMinute: 6 } }));

    await chatCompletion(deps, limited.interactive(), ask('First question.'));
    const error = await providerFailureOf(chatCompletion(deps, limited.interactive(), ask('Second question.')));

    expect(error).toMatchObject({ provider: 'openai', kind: 'rate_limited', retryable: true });
    // Six a minute: the next token is about ten seconds away.
    expect(error.details.retryAfterMs).toBeGreaterThan(5_000);
    expect(error.details.retryAfterMs).toBeLessThanOrEqual(10_000);
    expect(requestsOf(openai, limited.key.value).map(lastUserText)).toEqual(['First question.']);
  });
});
