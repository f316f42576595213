import { randomUUID } from 'node:crypto';
import { Op } from 'sequelize';
import { AuditLog, Job, LlmUsage } from '../../db';
import { chatCompletion, embedTexts, type LlmCall } from '../../services/llm';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';
import { startLlmStandIn, type LlmStandIn } from '../harness/llm-stand-in';
import { addMember } from '../harness/members';
import { createProject, createSecrets, type CreatedSecret } from '../jobs/job-helpers';

/*
 * The LLM gateway's API: settings (validated, audited, shown with the environment's defaults
 * filled in), provider status, usage and the budget, against the real database and the real
 * `openai` client talking to stand-ins on 127.0.0.1. The provider check job itself runs in
 * llm-check.test.ts; the gateway's own behaviour is in gateway.test.ts.
 *
 * No response, audit row or stored setting may ever contain an API key: every key this file
 * creates is looked for in every response it receives.
 */

let t: TestApp;
let admin: Member;
/** Every API key value this file stores in the vault. */
const keyValues: string[] = [];
/** Every response this file receives. */
const responses: TestResponse[] = [];
const standIns: LlmStandIn[] = [];

/** The environment's defaults the effective settings must show where a tenant sets nothing. */
const env = { LLM_ALLOWED_HOSTS: '127.0.0.1', LLM_REQUESTS_PER_MINUTE: '120', LLM_MONTHLY_BUDGET_USD: '50' };

beforeAll(async () => {
  t = await startTestApp(env);
  admin = await registerTenant(t, 'llm-api');
});
afterAll(async () => {
  const said = responses.map((r) => r.text).join('\n');
  const audit = JSON.stringify(await AuditLog.findAll({ where: { action: { [Op.like]: 'llm.%' } } }));
  for (const value of keyValues) expect([value, said.includes(value), audit.includes(value)]).toEqual([value, false, false]);
  await Promise.all(standIns.map((s) => s.close()));
  await t?.close();
});

async function record<R extends TestResponse>(response: Promise<R>): Promise<R> {
  const res = await response;
  responses.push(res);
  return res;
}
const as = (m: { accessToken: string }) => ({ token: m.accessToken });
const getSettings = (m: { accessToken: string } = admin) => record(t.get('/api/v1/llm/settings', as(m)));
const putSettings = (body: unknown, m: { accessToken: string } = admin) => record(t.put('/api/v1/llm/settings', body, as(m)));

/** API keys stored in the vault as `owner`; their values are looked for in every response. */
async function apiKeys(owner: Member, labels: string[]): Promise<CreatedSecret[]> {
  const created = await createSecrets(t, owner, labels.map((l) => `${l}-key`));
  keyValues.push(...created.map((s) => s.value));
  return created;
}

async function standIn(...args: Parameters<typeof startLlmStandIn>): Promise<LlmStandIn> {
  const s = await startLlmStandIn(...args);
  standIns.push(s);
  return s;
}

function expectProblem(res: TestResponse, status: number, slug: string): void {
  expect({ status: res.status, type: res.body?.type }).toEqual({ status, type: `/problems/${slug}` });
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String), requestId: res.headers['x-request-id'] });
}

/** What the environment's defaults (builtin, env rate limit and budget) look like in a settings view. */
const environmentChat = {
  role: 'chat',
  provider: 'builtin',
  model: 'extractive',
  baseUrl: null,
  apiVersion: null,
  apiKey: { source: 'none' },
  requestsPerMinute: 120,
  source: 'environment',
};
const environmentEmbedding = { ...environmentChat, role: 'embedding', model: 'hashing-384' };

const deps = () => ({ sequelize: t.sequelize, config: t.config });
const callFor = (m: Member, projectId?: string): LlmCall => ({ tenantId: m.tenantId, projectId, mode: 'interactive', actor: `user:${m.userId}` });
const askAbout = (question: string) => ({
  messages: [
    { role: 'system' as const, content: 'Context: AuditFlow keeps durable audit jobs. The gateway meters every call.' },
    { role: 'user' as const, content: question },
  ],
});

describe('PUT /llm/settings', () => {
  test('an API key given as a literal is a 400 validation error that does not echo it; nothing is stored', async () => {
    const literal = `sk-literal-${randomUUID()}`;
    keyValues.push(literal);
    const res = await putSettings({ chat: { provider: 'openai', apiKey: literal } });
    expectProblem(res, 400, 'validation-error');
    expect(res.body.errors).toEqual([{ path: 'body.chat.apiKey', message: 'must be a vault reference: secret://<name>' }]);
    expect((await getSettings()).body.stored).toEqual({});
  });

  test('settings a provider cannot serve are 422 invalid-llm-settings naming the field', async () => {
    const [key] = await apiKeys(admin, ['invalid']);
    const cases: Array<[unknown, { path: string; message: string }]> = [
      [{ embedding: { provider: 'anthropic', apiKey: key?.reference } }, { path: 'embedding.provider', message: 'anthropic offers no embeddings.' }],
      [{ chat: { provider: 'openai' } }, { path: 'chat.apiKey', message: 'openai needs an API key: store it as a secret and give its reference (secret://<name>).' }],
      // Only 127.0.0.1 is allowed here: no reaching internal services (cloud metadata) through a tenant's settings.
      [
        { chat: { provider: 'openai', apiKey: key?.reference, baseUrl: 'http://169.254.169.254/v1' } },
        { path: 'chat.baseUrl', message: 'The endpoint host "169.254.169.254" is not allowed here: an operator must list it in LLM_ALLOWED_HOSTS.' },
      ],
      [{ chat: { provider: 'builtin' }, fallback: { provider: 'builtin' } }, { path: 'fallback', message: 'The fallback is the chat provider itself; name another provider or model.' }],
    ];
    for (const [body, error] of cases) {
      const res = await putSettings(body);
      expectProblem(res, 422, 'invalid-llm-settings');
      expect([res.body.detail, res.body.errors]).toEqual([error.message, [error]]);
    }
    expect((await getSettings()).body.stored).toEqual({});
    expect(await AuditLog.count({ where: { tenantId: admin.tenantId, action: 'llm.settings.update', outcome: 'success' } })).toBe(0);
  });

  test('a reference to a secret the tenant does not have is 422 unresolvable-secret-reference', async () => {
    const reference = `secret://no-such-key-${randomUUID().slice(0, 8)}`;
    const res = await putSettings({ chat: { provider: 'openai', apiKey: reference } });
    expectProblem(res, 422, 'unresolvable-secret-reference');
    expect(res.body).toMatchObject({ reference, reason: 'missing' });

    // Another tenant's secret is as missing as one that does not exist.
    const outsider = await registerTenant(t, 'llm-api-outsider');
    const [theirs] = await apiKeys(outsider, ['theirs']);
    const foreign = await putSettings({ chat: { provider: 'openai', apiKey: theirs?.reference } });
    expectProblem(foreign, 422, 'unresolvable-secret-reference');
    expect(foreign.body).toMatchObject({ reference: theirs?.reference, reason: 'missing' });
  });

  test("an admin's settings are stored, audited with the references only, and shown with the environment's defaults filled in", async () => {
    const owner = await registerTenant(t, 'llm-api-settings');
    const before = await getSettings(owner);
    expect(before.status).toBe(200);
    expect(before.body).toEqual({
      stored: {},
      chat: environmentChat,
      embedding: environmentEmbedding,
      fallback: null,
      budget: { monthlyBudgetUsd: 50, source: 'environment', spentThisMonthUsd: 0 },
    });

    const s = await standIn('openai');
    const [key] = await apiKeys(owner, ['settings']);
    const stored = { chat: { provider: 'openai', baseUrl: s.url, apiKey: key?.reference, requestsPerMinute: 30 }, monthlyBudgetUsd: 5 };
    const res = await putSettings(stored, owner);
    expect(res.status).toBe(200);
    const expected = {
      stored,
      chat: { role: 'chat', provider: 'openai', model: 'gpt-4o-mini', baseUrl: s.url, apiVersion: null, apiKey: { source: 'vault', reference: key?.reference }, requestsPerMinute: 30, source: 'tenant' },
      // Left out: the environment's.
      embedding: environmentEmbedding,
      fallback: null,
      budget: { monthlyBudgetUsd: 5, source: 'tenant', spentThisMonthUsd: 0 },
    };
    expect(res.body).toEqual(expected);
    const member = await addMember(t, owner.tenantId, 'viewer');
    expect((await getSettings(member)).body).toEqual(expected);
    // Setting up the provider made no call to it.
    expect(s.requests).toEqual([]);

    const audits = await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } });
    expect(audits.map((a) => a.get({ plain: true }))).toEqual([
      expect.objectContaining({
        tenantId: owner.tenantId,
        actorType: 'user',
        actorId: owner.userId,
        action: 'llm.settings.update',
        resourceType: 'llm_settings',
        resourceId: owner.tenantId,
        outcome: 'success',
        details: { settings: stored },
      }),
    ]);
    expect(JSON.stringify(audits)).not.toContain(key?.value);

    // A PUT replaces: what it leaves out goes back to the environment's defaults; null is "no budget".
    const replaced = await putSettings({ embedding: { provider: 'builtin' }, monthlyBudgetUsd: null }, owner);
    expect(replaced.status).toBe(200);
    expect(replaced.body).toEqual({
      stored: { embedding: { provider: 'builtin' }, monthlyBudgetUsd: null },
      chat: environmentChat,
      embedding: { ...environmentEmbedding, source: 'tenant' },
      fallback: null,
      budget: { monthlyBudgetUsd: null, source: 'tenant', spentThisMonthUsd: 0 },
    });
  });

  test('only an admin may change them (403, not audited as a change); every role may read them', async () => {
    const owner = await registerTenant(t, 'llm-api-roles');
    for (const role of ['approver', 'member', 'viewer'] as const) {
      const m = await addMember(t, owner.tenantId, role);
      const res = await putSettings({ monthlyBudgetUsd: 0 }, m);
      expectProblem(res, 403, 'forbidden');
      expect(await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] }, attributes: ['action', 'outcome'], raw: true })).toEqual([
        expect.objectContaining({ outcome: 'denied' }),
      ]);
      expect((await getSettings(m)).status).toBe(200);
    }
    expect((await getSettings(owner)).body.stored).toEqual({});
  });
});

describe('GET /llm/providers', () => {
  test("the environment's builtin defaults answer ok; every provider available is listed", async () => {
    const owner = await registerTenant(t, 'llm-api-builtin');
    const res = await record(t.get('/api/v1/llm/providers', as(owner)));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      chat: { ...environmentChat, status: 'ok', error: null, latencyMs: expect.any(Number) },
      embedding: { ...environmentEmbedding, status: 'ok', error: null },
      fallback: null,
      budget: { monthlyBudgetUsd: 50, source: 'environment', spentThisMonthUsd: 0 },
    });
    const available = res.body.available as Array<{ name: string }>;
    expect(available.map((p) => p.name)).toEqual(expect.arrayContaining(['builtin', 'anthropic', 'openai', 'azure', 'ollama', 'gemini']));
    expect(available.find((p) => p.name === 'anthropic')).toMatchObject({ chat: true, embeddings: false, apiKeyRequired: true, local: false });
  });

  test('a provider answering with the key is ok, one answering 401 is failed with a clear error; no key is ever in the answer', async () => {
    const owner = await registerTenant(t, 'llm-api-probe');
    const [good, bad] = await apiKeys(owner, ['good', 'bad']);
    if (!good || !bad) throw new Error('unreachable');
    const healthy = await standIn('openai');
    const refusing = await standIn('openai');
    // Real providers echo (part of) a refused key in their message: the gateway redacts it.
    refusing.script({ status: 401, body: { error: { message: `Incorrect API key provided: ${bad.value}.`, type: 'invalid_request_error', code: 'invalid_api_key' } } });
    const put = await putSettings(
      {
        chat: { provider: 'openai', baseUrl: healthy.url, apiKey: good.reference, model: 'gpt-4o' },
        fallback: { provider: 'openai', baseUrl: refusing.url, apiKey: bad.reference },
      },
      owner,
    );
    expect(put.status).toBe(200);

    const viewer = await addMember(t, owner.tenantId, 'viewer');
    const res = await record(t.get('/api/v1/llm/providers', as(viewer)));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      chat: { role: 'chat', provider: 'openai', model: 'gpt-4o', baseUrl: healthy.url, apiKey: { source: 'vault', reference: good.reference }, source: 'tenant', status: 'ok', error: null },
      embedding: { ...environmentEmbedding, status: 'ok', error: null },
      fallback: {
        role: 'fallback',
        provider: 'openai',
        model: 'gpt-4o-mini',
        baseUrl: refusing.url,
        apiKey: { source: 'vault', reference: bad.reference },
        status: 'failed',
        error: 'openai answered 401 Unauthorized: Incorrect API key provided: [redacted].',
      },
    });
    // The raw text, not only the parsed body.
    for (const key of [good, bad]) expect(res.text).not.toContain(key.value);

    // Each was asked with its own key, and only how it is (a model list), never for a completion.
    expect(healthy.requests.map((r) => [r.method, r.path, r.headers.authorization])).toEqual([['GET', '/v1/models', `Bearer ${good.value}`]]);
    expect(refusing.requests.map((r) => [r.method, r.path, r.headers.authorization])).toEqual([['GET', '/v1/models', `Bearer ${bad.value}`]]);
    expect(await LlmUsage.count({ where: { tenantId: owner.tenantId } })).toBe(0);
  });
});

describe('GET /llm/usage', () => {
  test('sums calls, cache hits and misses, tokens and cost by day, provider, model and project, with totals; another tenant never shows', async () => {
    const owner = await registerTenant(t, 'llm-api-usage');
    const outsider = await registerTenant(t, 'llm-api-usage-outsider');
    const [key] = await apiKeys(owner, ['usage']);
    // A priced model with known usage: 1000 prompt and 500 completion tokens of gpt-4o-mini cost $0.00045.
    const s = await standIn('openai', { usage: { promptTokens: 1000, completionTokens: 500 } });
    expect((await putSettings({ chat: { provider: 'openai', baseUrl: s.url, apiKey: key?.reference } }, owner)).status).toBe(200);
    const [chatProject, searchProject] = [await createProject(t, owner.accessToken, 'usage-chat'), await createProject(t, owner.accessToken, 'usage-search')];

    // Chat through the stand-in: a miss, then the same question answered from the cache.
    const first = await chatCompletion(deps(), callFor(owner, chatProject.id), askAbout('What does the gateway do?'));
    const again = await chatCompletion(deps(), callFor(owner, chatProject.id), askAbout('What does the gateway do?'));
    expect([first.cached, again.cached, first.costUsd]).toEqual([false, true, 0.00045]);
    expect(s.requests).toHaveLength(1);
    // Embeddings with the builtin default: three misses, then one hit and one miss.
    expect((await embedTexts(deps(), callFor(owner, searchProject.id), ['alpha beta', 'gamma', 'delta epsilon zeta'])).cachedCount).toBe(0);
    expect((await embedTexts(deps(), callFor(owner, searchProject.id), ['gamma', 'eta'])).cachedCount).toBe(1);
    // A call of no project.
    await chatCompletion(deps(), { ...callFor(owner), cache: 'bypass' }, askAbout('Is anything metered without a project?'));
    // The other tenant's calls, on the same builtin models: never in our sums.
    await embedTexts(deps(), callFor(outsider), ['alpha beta', 'theirs only']);
    await chatCompletion(deps(), callFor(outsider), askAbout('What is theirs?'));

    const days = [...new Set((await LlmUsage.findAll({ where: { tenantId: owner.tenantId } })).map((u) => u.createdAt.toISOString().slice(0, 10)))];
    expect(days).toHaveLength(1); // (the test does not run across midnight UTC)
    const day = days[0];

    const res = await record(t.get('/api/v1/llm/usage', as(owner)));
    expect(res.status).toBe(200);
    expect(res.body.groupBy).toEqual(['day', 'provider', 'model', 'project']);
    const zero = { calls: 0, cachedCalls: 0, failedCalls: 0, items: 0, cacheHits: 0, cacheMisses: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 };
    const byKey = (g: { provider: string; projectId: string | null }) => `${g.provider}:${g.projectId}`;
    const groups = [...(res.body.groups as Array<{ provider: string; projectId: string | null }>)].sort((a, b) => byKey(a).localeCompare(byKey(b)));
    expect(groups).toEqual(
      [
        // 'alpha beta', 'gamma', 'delta epsilon zeta' (6 words), then 'eta' (1 word) and 'gamma' from the cache.
        { ...zero, day, provider: 'builtin', model: 'hashing-384', projectId: searchProject.id, calls: 2, cachedCalls: 1, items: 5, cacheHits: 1, cacheMisses: 4, promptTokens: 7 },
        { ...zero, day, provider: 'openai', model: 'gpt-4o-mini', projectId: chatProject.id, calls: 1, cachedCalls: 1, items: 2, cacheHits: 1, cacheMisses: 1, promptTokens: 1000, completionTokens: 500, costUsd: 0.00045 },
        { ...zero, day, provider: 'openai', model: 'gpt-4o-mini', projectId: null, calls: 1, items: 1, cacheMisses: 1, promptTokens: 1000, completionTokens: 500, costUsd: 0.00045 },
      ]
        .map((g) => ({ ...g, averageLatencyMs: expect.any(Number) }))
        .sort((a, b) => byKey(a).localeCompare(byKey(b))),
    );
    expect(res.body.totals).toEqual({
      ...zero,
      calls: 4,
      cachedCalls: 2,
      items: 8,
      cacheHits: 2,
      cacheMisses: 6,
      promptTokens: 2007,
      completionTokens: 1000,
      costUsd: 0.0009,
      averageLatencyMs: expect.any(Number),
    });
    expect(res.body.budget).toEqual({ monthlyBudgetUsd: 50, source: 'environment', spentThisMonthUsd: 0.0009 });

    const byProvider = await record(t.get('/api/v1/llm/usage?groupBy=provider', as(owner)));
    expect(byProvider.status).toBe(200);
    expect(byProvider.body.groups).toEqual([
      { ...zero, provider: 'builtin', calls: 2, cachedCalls: 1, items: 5, cacheHits: 1, cacheMisses: 4, promptTokens: 7, averageLatencyMs: expect.any(Number) },
      { ...zero, provider: 'openai', calls: 2, cachedCalls: 1, items: 3, cacheHits: 1, cacheMisses: 2, promptTokens: 2000, completionTokens: 1000, costUsd: 0.0009, averageLatencyMs: expect.any(Number) },
    ]);
    expect(byProvider.body.totals).toEqual(res.body.totals);

    // One project only, and nothing before the calls.
    const oneProject = await record(t.get(`/api/v1/llm/usage?groupBy=project&projectId=${searchProject.id}`, as(owner)));
    expect(oneProject.body.groups).toEqual([expect.objectContaining({ projectId: searchProject.id, calls: 2, cacheHits: 1 })]);
    const lastYear = await record(t.get('/api/v1/llm/usage?from=2000-01-01T00:00:00Z&to=2000-02-01T00:00:00Z', as(owner)));
    expect([lastYear.body.groups, lastYear.body.totals]).toEqual([[], { ...zero, averageLatencyMs: 0 }]);
    expect((await record(t.get('/api/v1/llm/usage?groupBy=tenant', as(owner)))).status).toBe(400);

    // The outsider sees their own calls only.
    const theirs = await record(t.get('/api/v1/llm/usage?groupBy=provider,model', as(outsider)));
    expect(theirs.body.groups).toEqual([
      expect.objectContaining({ provider: 'builtin', model: 'extractive', calls: 1, cacheMisses: 1 }),
      expect.objectContaining({ provider: 'builtin', model: 'hashing-384', calls: 1, cacheHits: 0, cacheMisses: 2 }),
    ]);
  });
});

describe('the monthly budget', () => {
  test('once a real call has spent it, POST /llm/checks is refused with 402 llm-budget-exhausted and no job starts', async () => {
    const owner = await registerTenant(t, 'llm-api-budget');
    const [key] = await apiKeys(owner, ['budget']);
    // A million prompt and completion tokens of gpt-4o: $12.50 in one call.
    const s = await standIn('openai', { usage: { promptTokens: 1_000_000, completionTokens: 1_000_000 } });
    const settings = { chat: { provider: 'openai', model: 'gpt-4o', baseUrl: s.url, apiKey: key?.reference }, monthlyBudgetUsd: 10 };
    expect((await putSettings(settings, owner)).status).toBe(200);
    const member = await addMember(t, owner.tenantId, 'member');

    const spent = await chatCompletion(deps(), callFor(owner), askAbout('How much does this cost?'));
    expect(spent.costUsd).toBe(12.5);

    const res = await record(t.post('/api/v1/llm/checks', undefined, as(member)));
    expectProblem(res, 402, 'llm-budget-exhausted');
    const now = new Date();
    const resetsAt = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString();
    expect(res.body).toMatchObject({ budgetUsd: 10, spentUsd: 12.5, resetsAt });
    expect(res.body.detail).toBe(`This tenant's monthly LLM budget of $10.00 is spent ($12.5000 this month): new model calls are refused until ${resetsAt.slice(0, 10)}, or until an admin raises the budget.`);
    expect(await Job.count({ where: { tenantId: owner.tenantId, kind: 'checkLlmProviders' } })).toBe(0);
    // Interactive calls are refused as well, before reaching the provider.
    await expect(chatCompletion(deps(), callFor(owner), askAbout('And now?'))).rejects.toMatchObject({ status: 402, slug: 'llm-budget-exhausted' });
    expect(s.requests).toHaveLength(1);

    const usage = await record(t.get('/api/v1/llm/usage?groupBy=', as(owner)));
    expect(usage.body.budget).toEqual({ monthlyBudgetUsd: 10, source: 'tenant', spentThisMonthUsd: 12.5 });
    expect(usage.body.groups).toEqual([expect.objectContaining({ calls: 1, costUsd: 12.5 })]);

    // An admin raising the budget lets checks start again.
    expect((await putSettings({ ...settings, monthlyBudgetUsd: 100 }, owner)).status).toBe(200);
    const started = await record(t.post('/api/v1/llm/checks', undefined, as(member)));
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ kind: 'checkLlmProviders', status: 'queued', projectId: null, title: 'Check LLM providers (openai / builtin)' });
  });
});
