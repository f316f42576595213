import { monitorEventLoopDelay } from 'node:perf_hooks';
import { defaultPayloadConverter } from '@temporalio/common';
import type { WorkerOptions } from '@temporalio/worker';
import { JobEvent, LlmUsage } from '../../db';
import type { LlmCheckResult, LlmCheckStage, LlmStageVerdict } from '../../workflows/definitions';
import { registerTenant, type Member, type TestApp } from '../harness';
import { captureLogs, expectNoSecretLeaks } from '../harness/leak-detector';
import { startLlmStandIn, type LlmStandIn, type LlmStandInOptions, type RecordedLlmRequest } from '../harness/llm-stand-in';
import { addMember } from '../harness/members';
import { createTestLlmWorker } from '../harness/worker';
import { createSecrets, eventTypes, isFinished, startJobsSuite, waitForJob, type CreatedSecret, type JobBody, type JobsSuite } from '../jobs/job-helpers';

/*
 * POST /llm/checks: a job whose workflow runs on the main task queue and makes one real model
 * call per stage (chat, structured output, embeddings) from activities on the LLM task queue,
 * served here by real LLM workers (`createTestLlmWorker`) beside the suite's main worker.
 * Providers are the builtin default or the real `openai` client against a stand-in on 127.0.0.1.
 */

const logs = captureLogs();
let suite: JobsSuite | undefined;
let t: TestApp;
const standIns: LlmStandIn[] = [];

beforeAll(async () => {
  // Trace level: the most the app ever logs, for the leak detector.
  suite = await startJobsSuite('llm-check', { env: { LOG_LEVEL: 'trace', LLM_ALLOWED_HOSTS: '127.0.0.1' }, logTo: logs.stream });
  ({ t } = suite);
});
afterAll(async () => {
  await Promise.all(standIns.map((s) => s.close()));
  await suite?.stop();
});

/** Runs `fn` while LLM workers (one per options object) serve the app's LLM task queue. */
async function withLlmWorkers<T>(options: Partial<WorkerOptions>[], fn: () => Promise<T>): Promise<T> {
  const created: Awaited<ReturnType<typeof createTestLlmWorker>>[] = [];
  try {
    for (const o of options) created.push(await createTestLlmWorker(t, o));
    const run = created.reduceRight<() => Promise<T>>((inner, { worker }) => () => worker.runUntil(inner), fn);
    return await run();
  } finally {
    for (const c of created) await c.connection.close();
  }
}
const oneLlmWorker = <T>(fn: () => Promise<T>) => withLlmWorkers([{ identity: 'llm-worker' }], fn);

async function startCheck(m: { accessToken: string }): Promise<JobBody> {
  const res = await t.post('/api/v1/llm/checks', undefined, { token: m.accessToken });
  if (res.status !== 202) throw new Error(`POST /llm/checks answered ${res.status}: ${res.text}`);
  return res.body as JobBody;
}
const finished = (m: Member, job: JobBody) => waitForJob(t, m.accessToken, job.id, isFinished, 'the provider check');
const runCheck = async (m: Member) => finished(m, await startCheck(m));

async function verdictsOf(jobId: string): Promise<LlmStageVerdict[]> {
  const completed = await JobEvent.findOne({ where: { jobId, type: 'completed' }, rejectOnEmpty: true });
  return (completed.data as { verdicts: LlmStageVerdict[] }).verdicts;
}

interface LlmActivityRun {
  stage: LlmCheckStage;
  /** The attempt that ended the activity (earlier attempts of a retried activity leave no event). */
  attempt: number;
  identity: string;
  outcome: 'completed' | 'failed' | 'other';
}

/** The workflow's model-call activities, from its history: the stage, the last attempt, the worker that ran it. */
async function llmActivityRuns(workflowId: string): Promise<LlmActivityRun[]> {
  const events = (await t.temporal.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const scheduled = new Map<string, LlmCheckStage>();
  const started = new Map<string, { attempt: number; identity: string }>();
  const runs: LlmActivityRun[] = [];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === 'checkLlmStage') {
      // checkLlmStage(jobId, tenantId, stage)
      const args = (s.input?.payloads ?? []).map((p) => defaultPayloadConverter.fromPayload(p));
      scheduled.set(String(e.eventId), args[2] as LlmCheckStage);
    }
    const st = e.activityTaskStartedEventAttributes;
    if (st && scheduled.has(String(st.scheduledEventId))) started.set(String(st.scheduledEventId), { attempt: st.attempt ?? 0, identity: st.identity ?? '' });
    const ended = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes ?? e.activityTaskTimedOutEventAttributes;
    if (ended && scheduled.has(String(ended.scheduledEventId))) {
      const id = String(ended.scheduledEventId);
      const outcome = e.activityTaskCompletedEventAttributes ? 'completed' : e.activityTaskFailedEventAttributes ? 'failed' : 'other';
      runs.push({ stage: scheduled.get(id) as LlmCheckStage, ...(started.get(id) ?? { attempt: 0, identity: '' }), outcome });
    }
  }
  return runs;
}

/** A JSON answer when the client asks for one (`response_format`), prose otherwise. */
const checkReply = (r: RecordedLlmRequest) =>
  r.body?.response_format ? JSON.stringify({ answered: true, summary: 'The stand-in answered the check.' }) : 'The stand-in answered the connectivity check.';

interface OpenAiTenant {
  owner: Member;
  key: CreatedSecret;
  standIn: LlmStandIn;
}

/** A tenant whose chat and embeddings go to an OpenAI stand-in, with its key in the vault. */
async function openAiTenant(label: string, o: { model?: string; requestsPerMinute?: number; monthlyBudgetUsd?: number; standIn?: LlmStandInOptions } = {}): Promise<OpenAiTenant> {
  const owner = await registerTenant(t, label);
  const [key] = await createSecrets(t, owner, [`${label}-key`]);
  if (!key) throw new Error('unreachable');
  const standIn = await startLlmStandIn('openai', { reply: checkReply, ...o.standIn });
  standIns.push(standIn);
  const target = { provider: 'openai', baseUrl: standIn.url, apiKey: key.reference, ...(o.requestsPerMinute ? { requestsPerMinute: o.requestsPerMinute } : {}) };
  const settings = { chat: { ...target, model: o.model ?? 'gpt-4o-mini' }, embedding: target, ...(o.monthlyBudgetUsd === undefined ? {} : { monthlyBudgetUsd: o.monthlyBudgetUsd }) };
  const res = await t.put('/api/v1/llm/settings', settings, { token: owner.accessToken });
  if (res.status !== 200) throw new Error(`PUT /llm/settings answered ${res.status}: ${res.text}`);
  return { owner, key, standIn };
}

const isStructured = (r: RecordedLlmRequest) => r.body?.response_format !== undefined;
/** What a stand-in was asked, in order: `chat`, `structured` or `embeddings`. */
const kindsOf = (s: LlmStandIn) => s.requests.map((r) => (r.path.endsWith('/embeddings') ? 'embeddings' : isStructured(r) ? 'structured' : 'chat'));

/** Every key a check used, and its jobs: the leak test scans them all. */
const usedKeys: { value: string; jobIds: string[] }[] = [];

describe('with the environment defaults (builtin)', () => {
  test('chat answers extractively, structured output is skipped, embeddings have 384 dimensions; usage rows carry the job', async () => {
    const owner = await registerTenant(t, 'llm-check-builtin');
    const job = await oneLlmWorker(() => runCheck(owner));
    expect(job).toMatchObject({
      kind: 'checkLlmProviders',
      title: 'Check LLM providers (builtin / builtin)',
      projectId: null,
      status: 'completed',
      counters: { ok: 2, failed: 0, skipped: 1 },
      error: null,
      requestedBy: `user:${owner.userId}`,
    });
    expect(job.workflowId).toBe(`checkLlmProviders-${job.id}`);

    const verdicts = await verdictsOf(job.id);
    expect(verdicts).toEqual([
      { stage: 'chat', status: 'ok', provider: 'builtin', model: 'extractive', latencyMs: expect.any(Number), costUsd: 0, fallbackFrom: null, detail: expect.stringContaining('The provider answered this connectivity check') },
      { stage: 'structured', status: 'skipped', provider: 'builtin', detail: 'The built-in provider produces no structured output; configure a real chat model to use it.' },
      { stage: 'embeddings', status: 'ok', provider: 'builtin', model: 'hashing-384', latencyMs: expect.any(Number), costUsd: 0, fallbackFrom: null, detail: '2 vectors of 384 dimensions' },
    ]);
    expect((await t.temporal.workflow.getHandle(job.workflowId).result()) as LlmCheckResult).toEqual({ counters: job.counters, verdicts });
    expect(await eventTypes(job.id)).toEqual(['queued', 'running', 'progress', 'stage_skipped', 'progress', 'progress', 'completed']);

    const usage = await LlmUsage.findAll({ where: { tenantId: owner.tenantId }, order: [['id', 'ASC']] });
    expect(usage.map((u) => u.get({ plain: true }))).toEqual([
      expect.objectContaining({ jobId: job.id, projectId: null, operation: 'chat', provider: 'builtin', model: 'extractive', items: 1, costUsd: 0, cached: false, outcome: 'ok' }),
      expect.objectContaining({ jobId: job.id, projectId: null, operation: 'embedding', provider: 'builtin', model: 'hashing-384', items: 2, costUsd: 0, cached: false, outcome: 'ok' }),
    ]);
    // Every stage ran on the LLM worker, once.
    expect(await llmActivityRuns(job.workflowId)).toEqual(
      ['chat', 'structured', 'embeddings'].map((stage) => ({ stage, attempt: 1, identity: 'llm-worker', outcome: 'completed' })),
    );
  });
});

describe('with an OpenAI provider', () => {
  test('all three stages answer, each asked with the key from the vault', async () => {
    const { owner, key, standIn } = await openAiTenant('llm-check-openai');
    const job = await oneLlmWorker(() => runCheck(owner));
    usedKeys.push({ value: key.value, jobIds: [job.id] });
    expect(job).toMatchObject({ status: 'completed', title: 'Check LLM providers (openai / openai)', counters: { ok: 3, failed: 0, skipped: 0 } });
    expect(await verdictsOf(job.id)).toEqual([
      expect.objectContaining({ stage: 'chat', status: 'ok', provider: 'openai', model: 'gpt-4o-mini', fallbackFrom: null, detail: 'The stand-in answered the connectivity check.' }),
      expect.objectContaining({ stage: 'structured', status: 'ok', provider: 'openai', model: 'gpt-4o-mini', detail: 'answered: The stand-in answered the check.' }),
      expect.objectContaining({ stage: 'embeddings', status: 'ok', provider: 'openai', model: 'text-embedding-3-small', detail: '2 vectors of 8 dimensions' }),
    ]);
    expect(kindsOf(standIn)).toEqual(['chat', 'structured', 'embeddings']);
    expect(standIn.requests.map((r) => [r.path, r.headers.authorization])).toEqual([
      ['/v1/chat/completions', `Bearer ${key.value}`],
      ['/v1/chat/completions', `Bearer ${key.value}`],
      ['/v1/embeddings', `Bearer ${key.value}`],
    ]);
    expect(standIn.requests[1]?.body.response_format).toMatchObject({ type: 'json_schema', json_schema: { name: 'connectivity_check' } });

    // Each stage resolved the key itself, inside its activity, on record with the job.
    const log = await t.get(`/api/v1/secrets/${key.id}/access-log`, { token: owner.accessToken });
    expect(log.body.items).toEqual(Array.from({ length: 3 }, () => expect.objectContaining({ jobId: job.id, activity: 'checkLlmStage', actor: null })));
    const usage = await LlmUsage.findAll({ where: { jobId: job.id } });
    expect(usage.map((u) => [u.operation, u.outcome, u.cached])).toEqual(
      expect.arrayContaining([
        ['chat', 'ok', false],
        ['structured', 'ok', false],
        ['embedding', 'ok', false],
      ]),
    );
    expect(usage).toHaveLength(3);
  });

  test('a 429 with Retry-After is retried by Temporal and the stage ends ok', async () => {
    const { owner, key, standIn } = await openAiTenant('llm-check-429');
    standIn.script({ status: 429, headers: { 'retry-after': '1' } });
    const job = await oneLlmWorker(() => runCheck(owner));
    usedKeys.push({ value: key.value, jobIds: [job.id] });
    expect(job).toMatchObject({ status: 'completed', counters: { ok: 3, failed: 0, skipped: 0 } });
    expect((await verdictsOf(job.id)).map((v) => [v.stage, v.status])).toEqual([
      ['chat', 'ok'],
      ['structured', 'ok'],
      ['embeddings', 'ok'],
    ]);
    // Two requests for the chat stage: the throttled one and its retry, a second attempt of the same activity.
    expect(kindsOf(standIn)).toEqual(['chat', 'chat', 'structured', 'embeddings']);
    expect((await llmActivityRuns(job.workflowId)).map((r) => [r.stage, r.attempt, r.outcome])).toEqual([
      ['chat', 2, 'completed'],
      ['structured', 1, 'completed'],
      ['embeddings', 1, 'completed'],
    ]);
    const chatUsage = await LlmUsage.findAll({ where: { jobId: job.id, operation: 'chat' }, order: [['id', 'ASC']] });
    expect(chatUsage.map((u) => [u.outcome, u.error])).toEqual([
      ['failed', 'openai answered 429 Too Many Requests: stand-in: 429 Too Many Requests'],
      ['ok', null],
    ]);
  });

  test('a 401 is not retried: the stage is failed with a clear message, the others still run', async () => {
    const { owner, key, standIn } = await openAiTenant('llm-check-401');
    standIn.script({ status: 401 });
    const job = await oneLlmWorker(() => runCheck(owner));
    usedKeys.push({ value: key.value, jobIds: [job.id] });
    expect(job).toMatchObject({ status: 'completed', counters: { ok: 2, failed: 1, skipped: 0 }, error: null });
    expect(await verdictsOf(job.id)).toEqual([
      { stage: 'chat', status: 'failed', detail: 'openai answered 401 Unauthorized: stand-in: 401 Unauthorized' },
      expect.objectContaining({ stage: 'structured', status: 'ok' }),
      expect.objectContaining({ stage: 'embeddings', status: 'ok' }),
    ]);
    // One request for the chat stage: a refused key is not asked again.
    expect(kindsOf(standIn)).toEqual(['chat', 'structured', 'embeddings']);
    expect((await llmActivityRuns(job.workflowId)).map((r) => [r.stage, r.attempt, r.outcome])).toEqual([
      ['chat', 1, 'failed'],
      ['structured', 1, 'completed'],
      ['embeddings', 1, 'completed'],
    ]);
  });
});

describe('the monthly budget', () => {
  test('spent by the chat stage mid-run: the other stages are skipped with the reason on record, and the job completes', async () => {
    // A million prompt and completion tokens of gpt-4o: $12.50, against a budget of $1.
    const { owner, key, standIn } = await openAiTenant('llm-check-budget', {
      model: 'gpt-4o',
      monthlyBudgetUsd: 1,
      standIn: { usage: { promptTokens: 1_000_000, completionTokens: 1_000_000 } },
    });
    const job = await oneLlmWorker(() => runCheck(owner));
    usedKeys.push({ value: key.value, jobIds: [job.id] });
    expect(job).toMatchObject({ status: 'completed', counters: { ok: 1, failed: 0, skipped: 2 }, error: null });

    const reason = expect.stringMatching(/^This tenant's monthly LLM budget of \$1\.00 is spent \(\$12\.5000 this month\): new model calls are refused until \d{4}-\d{2}-01/);
    expect(await verdictsOf(job.id)).toEqual([
      expect.objectContaining({ stage: 'chat', status: 'ok', provider: 'openai', model: 'gpt-4o', costUsd: 12.5 }),
      { stage: 'structured', status: 'skipped', detail: reason },
      { stage: 'embeddings', status: 'skipped', detail: reason },
    ]);
    expect(await eventTypes(job.id)).toEqual(['queued', 'running', 'progress', 'stage_skipped', 'progress', 'stage_skipped', 'progress', 'completed']);
    const skipped = await JobEvent.findAll({ where: { jobId: job.id, type: 'stage_skipped' }, order: [['seq', 'ASC']] });
    expect(skipped.map((e) => e.data)).toEqual([
      { stage: 'structured', reason },
      { stage: 'embeddings', reason },
    ]);
    // Only the chat stage reached the provider; a spent budget is not retried.
    expect(kindsOf(standIn)).toEqual(['chat']);
    expect((await llmActivityRuns(job.workflowId)).map((r) => [r.stage, r.attempt, r.outcome])).toEqual([
      ['chat', 1, 'completed'],
      ['structured', 1, 'failed'],
      ['embeddings', 1, 'failed'],
    ]);
    // And the next check is refused before it starts.
    const refused = await t.post('/api/v1/llm/checks', undefined, { token: (await addMember(t, owner.tenantId, 'member')).accessToken });
    expect([refused.status, refused.body.type]).toEqual([402, '/problems/llm-budget-exhausted']);
  });
});

describe('rate limits', () => {
  test('two LLM workers together stay within the shared per-key limit', async () => {
    const requestsPerMinute = 300;
    const rate = requestsPerMinute / 60; // per second
    const capacity = Math.ceil(requestsPerMinute / 60); // the bucket's burst (services/llm/rate-limit.ts)
    const { owner, key, standIn } = await openAiTenant('llm-check-rate', { requestsPerMinute });
    // Two slots each: neither worker can take all the concurrent stages alone.
    const workers = ['llm-worker-a', 'llm-worker-b'].map((identity) => ({ identity, maxConcurrentActivityTaskExecutions: 2, maxConcurrentActivityTaskPolls: 2 }));
    // Workers, stand-in and app share this process: a stall of its event loop delays requests already
    // granted and so can bunch them up on arrival, by at most the longest stall.
    const stalls = monitorEventLoopDelay({ resolution: 10 });
    stalls.enable();
    const jobs = await withLlmWorkers(workers, async () => {
      const started = await Promise.all(Array.from({ length: 6 }, () => startCheck(owner)));
      return Promise.all(started.map((job) => finished(owner, job)));
    }).finally(() => stalls.disable());
    const longestStallMs = stalls.max / 1e6;
    usedKeys.push({ value: key.value, jobIds: jobs.map((j) => j.id) });
    expect(jobs.map((j) => [j.status, j.counters])).toEqual(jobs.map(() => ['completed', { ok: 3, failed: 0, skipped: 0 }]));
    expect(standIn.requests).toHaveLength(18);

    // The bucket's guarantee, as a lower bound on spacing: any n consecutive requests span at
    // least (n - capacity) / rate seconds. One request of slack for the time between taking a
    // token and the request reaching the stand-in, and the longest event-loop stall on top.
    const times = standIn.requests.map((r) => r.receivedAt).sort((a, b) => a - b);
    const excess: string[] = [];
    for (let i = 0; i < times.length; i++) {
      for (let j = i + 1; j < times.length; j++) {
        const allowed = capacity + (rate * ((times[j] as number) - (times[i] as number) + longestStallMs)) / 1000 + 1;
        if (j - i + 1 > allowed) excess.push(`${j - i + 1} requests in ${(times[j] as number) - (times[i] as number)} ms (allowed ${allowed.toFixed(2)})`);
      }
    }
    expect(excess).toEqual([]);

    // Both workers ran model calls: the combined rate held across them.
    const identities = new Set<string>();
    for (const job of jobs) for (const run of await llmActivityRuns(job.workflowId)) identities.add(run.identity);
    expect([...identities].sort()).toEqual(['llm-worker-a', 'llm-worker-b']);
  });
});

describe('secrets', () => {
  test('an API key reaches no workflow history, job row or event, and no log line, even when a provider echoes it', async () => {
    const { owner, key, standIn } = await openAiTenant('llm-check-leaks');
    // Real providers quote (part of) a refused key: the gateway redacts it before it becomes a failure.
    standIn.script({ status: 401, body: { error: { message: `Incorrect API key provided: ${key.value}.`, type: 'invalid_request_error', code: 'invalid_api_key' } } });
    const job = await oneLlmWorker(() => runCheck(owner));
    usedKeys.push({ value: key.value, jobIds: [job.id] });
    expect((await verdictsOf(job.id))[0]).toEqual({ stage: 'chat', status: 'failed', detail: 'openai answered 401 Unauthorized: Incorrect API key provided: [redacted].' });
    // The API's own probe of the provider, logged at trace level as every request is.
    const probed = await t.get('/api/v1/llm/providers', { token: owner.accessToken });
    expect([probed.status, probed.body.chat.status]).toEqual([200, 'ok']);
    expect(probed.text).not.toContain(key.value);

    for (const used of usedKeys) {
      const workflows = used.jobIds.map((id) => `checkLlmProviders-${id}`);
      const report = await expectNoSecretLeaks({ secret: used.value, temporal: t.temporal, workflows, jobIds: used.jobIds, logs: logs.lines() });
      // Nothing leaked because everything was read, not because nothing was.
      expect(report.scanned.historyEvents).toBeGreaterThan(20 * used.jobIds.length);
      expect(report.scanned.payloads).toBeGreaterThan(0);
      expect(report.scanned.jobEvents).toBeGreaterThanOrEqual(5 * used.jobIds.length);
      expect(report.scanned.logLines).toBeGreaterThan(0);
    }
    expect(logs.text()).toContain('"msg":"request"');
  });
});
