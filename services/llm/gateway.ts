import { performance } from 'node:perf_hooks';
import type { Sequelize } from 'sequelize';
import type { z, ZodType } from 'zod';
import { toJSONSchema } from 'zod';
import type { LlmOperation } from '../../db';
import type { Config } from '../../lib/config';
import { AppError } from '../../lib/errors';
import {
  costOf,
  createProvider,
  LlmProviderError,
  type CallOptions,
  type ChatMessage,
  type ChatRequest,
  type ChatResult,
  type LlmProvider,
} from '../../lib/llm';
import { resolveSecret, type VaultDeps } from '../vault';
import { cacheKey, readCachedAnswer, readCachedVectors, toFloat32, writeCachedAnswer, writeCachedVectors } from './cache';
import { acquireRateLimit, rateBucket, type RateLimit } from './rate-limit';
import { effectiveLlmSettings, type EffectiveLlmSettings, type LlmConfig, type ProviderTarget } from './settings';
import { assertLlmBudgetLeft, recordUsage } from './usage';

/**
 * The LLM gateway: every model call of the platform, from a job's activity or inline from the
 * API, goes through these functions, which pick the tenant's provider, check its budget, serve
 * from the cache, wait for the shared rate limit, call the provider (the fallback when it fails),
 * and record usage and cost.
 */

export interface LlmDeps extends VaultDeps {
  sequelize: Sequelize;
  config: LlmConfig &
    Pick<Config, 'vaultKeyring' | 'JWT_SECRET' | 'PUBLIC_URL' | 'LLM_CACHE_TTL_SECONDS' | 'LLM_TIMEOUT_SECONDS' | 'LLM_INLINE_TIMEOUT_SECONDS'>;
}

/** Who a call is for, and how it may wait. */
export interface LlmCall {
  tenantId: string;
  projectId?: string | null;
  jobId?: string | null;
  /** For the vault's access log: the activity making the call, or the person or token behind an API request. */
  activity?: string;
  actor?: string;
  /**
   * `job`: an activity; each provider call gets LLM_TIMEOUT_SECONDS and a rate-limit wait of up to
   * a minute (Temporal retries beyond). `interactive`: a person waits; the whole call gets
   * LLM_INLINE_TIMEOUT_SECONDS.
   */
  mode: 'job' | 'interactive';
  signal?: AbortSignal;
  /** `bypass`: neither read nor write the cache (a live check, a deliberate re-ask). */
  cache?: 'use' | 'bypass';
}

/** A chat answer and what it cost. */
export interface LlmAnswer extends ChatResult {
  provider: string;
  cached: boolean;
  costUsd: number;
  latencyMs: number;
  /** The chat provider that failed, when the fallback answered. */
  fallbackFrom: string | null;
}

export type ChatInput = Omit<ChatRequest, 'model'>;

export interface Embeddings {
  vectors: number[][];
  provider: string;
  model: string;
  dimensions: number;
  /** How many of the texts came from the cache. */
  cachedCount: number;
  costUsd: number;
}

const RATE_WAIT_MAX_JOB_MS = 60_000;

/** A call's time limits: one deadline for interactive calls, a per-provider-call timeout for jobs. */
class CallClock {
  private readonly deadline: number | null;
  readonly signal: AbortSignal | undefined;
  constructor(
    private readonly deps: LlmDeps,
    readonly call: LlmCall,
  ) {
    if (call.mode === 'interactive') {
      const ms = deps.config.LLM_INLINE_TIMEOUT_SECONDS * 1000;
      this.deadline = Date.now() + ms;
      const timeout = AbortSignal.timeout(ms);
      this.signal = call.signal ? AbortSignal.any([call.signal, timeout]) : timeout;
    } else {
      this.deadline = null;
      this.signal = call.signal;
    }
  }
  private remaining(): number {
    return this.deadline === null ? Infinity : Math.max(1, this.deadline - Date.now());
  }
  /** The caller cancelled, or the deadline passed: nothing more may be tried. */
  stopped(): boolean {
    return this.signal?.aborted === true || (this.deadline !== null && Date.now() >= this.deadline);
  }
  providerOptions(): CallOptions {
    // The caller's signal only: the deadline reaches the provider as its time limit, so running
    // out of time is a retryable `timeout`, not a cancellation (a provider client turns an abort
    // of the signal it is given into the signal's reason, which is no provider failure).
    return { signal: this.call.signal, timeoutMs: Math.min(this.remaining(), this.deps.config.LLM_TIMEOUT_SECONDS * 1000) };
  }
  rateWait(): { maxWaitMs: number; signal?: AbortSignal } {
    return { maxWaitMs: Math.min(this.remaining(), RATE_WAIT_MAX_JOB_MS), signal: this.signal };
  }
}

async function apiKeyOf(deps: LlmDeps, call: LlmCall, target: ProviderTarget): Promise<string | undefined> {
  if (!target.apiKey) return undefined;
  if (target.apiKey.source === 'environment') return deps.config[target.apiKey.variable];
  return resolveSecret(deps, target.apiKey.reference, { tenantId: call.tenantId, jobId: call.jobId ?? undefined, activity: call.activity, actor: call.actor });
}

/** The provider client for a target, with its key resolved now (never earlier, never kept), and its rate limit. */
async function openProvider(deps: LlmDeps, call: LlmCall, target: ProviderTarget): Promise<{ provider: LlmProvider; rate: RateLimit | null }> {
  const apiKey = await apiKeyOf(deps, call, target);
  const provider = createProvider({
    provider: target.provider,
    baseUrl: target.baseUrl ?? undefined,
    apiKey,
    apiVersion: target.apiVersion ?? undefined,
    appUrl: deps.config.PUBLIC_URL,
  });
  // The built-in provider runs on our own CPU: nothing to protect.
  const rate =
    target.provider === 'builtin'
      ? null
      : { bucket: rateBucket(deps.config.JWT_SECRET, target.provider, target.baseUrl ?? 'preset', apiKey), requestsPerMinute: target.requestsPerMinute };
  return { provider, rate };
}

interface Attempt {
  deps: LlmDeps;
  clock: CallClock;
  target: ProviderTarget;
  operation: LlmOperation;
  fallbackFrom: string | null;
}

function usageOf(a: Attempt) {
  const { call } = a.clock;
  return {
    tenantId: call.tenantId,
    projectId: call.projectId ?? null,
    jobId: call.jobId ?? null,
    operation: a.operation,
    provider: a.target.provider,
    model: a.target.model,
    fallbackFrom: a.fallbackFrom,
  };
}

const recordHit = (a: Attempt, items: number) =>
  recordUsage(a.deps.sequelize, { ...usageOf(a), promptTokens: 0, completionTokens: 0, items, costUsd: 0, latencyMs: 0, cached: true, outcome: 'ok', error: null });

const recordFailure = (a: Attempt, err: LlmProviderError, latencyMs: number, items: number) =>
  recordUsage(a.deps.sequelize, { ...usageOf(a), promptTokens: 0, completionTokens: 0, items, costUsd: 0, latencyMs, cached: false, outcome: 'failed', error: err.message });

async function recordSuccess(a: Attempt, usage: { promptTokens: number; completionTokens: number }, latencyMs: number, items: number): Promise<number> {
  const costUsd = costOf(a.target.provider, a.target.model, usage);
  await recordUsage(a.deps.sequelize, { ...usageOf(a), ...usage, items, costUsd, latencyMs, cached: false, outcome: 'ok', error: null });
  return costUsd;
}

/** Runs a provider call, recording a failed usage row when the provider fails. */
async function metered<R>(a: Attempt, items: number, work: () => Promise<R>): Promise<{ result: R; latencyMs: number }> {
  const started = performance.now();
  try {
    return { result: await work(), latencyMs: performance.now() - started };
  } catch (err) {
    if (err instanceof LlmProviderError) await recordFailure(a, err, performance.now() - started, items);
    throw err;
  }
}

/** Everything up to the provider call: the budget, the key, the rate limit. */
async function ready(a: Attempt, settings: EffectiveLlmSettings): Promise<LlmProvider> {
  const { call } = a.clock;
  await assertLlmBudgetLeft(a.deps.sequelize, call.tenantId, settings.monthlyBudgetUsd);
  const { provider, rate } = await openProvider(a.deps, call, a.target);
  if (rate) await acquireRateLimit(a.deps.sequelize, a.target.provider, rate, a.clock.rateWait());
  return provider;
}

/**
 * Tries the chat provider, then the fallback (when one is configured) if the provider fails.
 * Budget, vault and cancellation errors are not provider failures: they end the call at once.
 * When both fail, the error thrown is a retryable one if either was (a retry may then succeed).
 */
async function withFallback<R>(settings: EffectiveLlmSettings, clock: CallClock, run: (target: ProviderTarget, fallbackFrom: string | null) => Promise<R>): Promise<R> {
  const failures: LlmProviderError[] = [];
  const targets = settings.fallback ? [settings.chat, settings.fallback] : [settings.chat];
  for (const target of targets) {
    try {
      return await run(target, failures.length > 0 ? settings.chat.provider : null);
    } catch (err) {
      if (!(err instanceof LlmProviderError) || clock.stopped()) throw err;
      failures.push(err);
    }
  }
  throw failures.find((f) => f.retryable) ?? failures[0]!;
}

const answerKey = (tenantId: string, target: ProviderTarget, request: ChatInput) =>
  cacheKey([tenantId, target.provider, target.baseUrl, target.apiVersion, target.model, 'chat', request]);

const answerOf = (result: ChatResult, a: Attempt, extra: { cached: boolean; costUsd: number; latencyMs: number }): LlmAnswer => ({
  ...result,
  provider: a.target.provider,
  fallbackFrom: a.fallbackFrom,
  ...extra,
  latencyMs: Math.round(extra.latencyMs),
});

/** A cached answer the caller accepts, recorded as a hit; null on a miss (or a bypass). */
async function cachedAnswer(a: Attempt, key: string, accept: (r: ChatResult) => boolean): Promise<LlmAnswer | null> {
  if (a.clock.call.cache === 'bypass') return null;
  const hit = await readCachedAnswer(a.deps.sequelize, key);
  if (!hit || !accept(hit)) return null;
  await recordHit(a, 1);
  return answerOf(hit, a, { cached: true, costUsd: 0, latencyMs: 0 });
}

async function storeAnswer(a: Attempt, key: string, result: ChatResult): Promise<void> {
  if (a.clock.call.cache === 'bypass') return;
  await writeCachedAnswer(a.deps.sequelize, key, { tenantId: a.clock.call.tenantId, provider: a.target.provider, model: a.target.model }, a.operation, result, a.deps.config.LLM_CACHE_TTL_SECONDS);
}

/**
 * One chat completion. `accept` decides whether an answer may be cached (and whether a cached
 * one may be served): structured output caches only answers that validated.
 */
async function complete(deps: LlmDeps, call: LlmCall, request: ChatInput, operation: LlmOperation, accept: (r: ChatResult) => boolean = () => true): Promise<LlmAnswer> {
  const settings = await effectiveLlmSettings(deps.config, call.tenantId);
  const clock = new CallClock(deps, call);
  return withFallback(settings, clock, async (target, fallbackFrom) => {
    const a: Attempt = { deps, clock, target, operation, fallbackFrom };
    const key = answerKey(call.tenantId, target, request);
    const hit = await cachedAnswer(a, key, accept);
    if (hit) return hit;
    const provider = await ready(a, settings);
    const { result, latencyMs } = await metered(a, 1, () => provider.chat({ ...request, model: target.model }, clock.providerOptions()));
    const costUsd = await recordSuccess(a, result.usage, latencyMs, 1);
    if (accept(result)) await storeAnswer(a, key, result);
    return answerOf(result, a, { cached: false, costUsd, latencyMs });
  });
}

export async function chatCompletion(deps: LlmDeps, call: LlmCall, request: ChatInput): Promise<LlmAnswer> {
  return complete(deps, call, request, 'chat');
}

export type LlmStreamEvent = { type: 'delta'; text: string } | { type: 'done'; answer: LlmAnswer };

/**
 * A streamed completion: deltas as the provider sends them, then the answer with its cost. The
 * fallback takes over only while nothing has been streamed yet.
 */
export async function* streamChatCompletion(deps: LlmDeps, call: LlmCall, request: ChatInput): AsyncGenerator<LlmStreamEvent> {
  const settings = await effectiveLlmSettings(deps.config, call.tenantId);
  const clock = new CallClock(deps, call);
  const opened = await withFallback(settings, clock, async (target, fallbackFrom) => {
    const a: Attempt = { deps, clock, target, operation: 'stream', fallbackFrom };
    const key = answerKey(call.tenantId, target, request);
    const hit = await cachedAnswer(a, key, () => true);
    if (hit) return { kind: 'cached' as const, hit };
    const provider = await ready(a, settings);
    const started = performance.now();
    const events = provider.streamChat({ ...request, model: target.model }, clock.providerOptions())[Symbol.asyncIterator]();
    // The first event proves the provider answers; until then a failure may still fall back.
    const { result } = await metered(a, 1, () => events.next());
    const first = result.done ? undefined : result.value;
    return { kind: 'streaming' as const, a, key, started, events, first };
  });
  if (opened.kind === 'cached') {
    yield { type: 'delta', text: opened.hit.text };
    yield { type: 'done', answer: opened.hit };
    return;
  }
  const { a, key, started, events } = opened;
  let event = opened.first;
  while (event !== undefined) {
    if (event.type === 'delta') {
      yield event;
    } else {
      const latencyMs = performance.now() - started;
      const costUsd = await recordSuccess(a, event.result.usage, latencyMs, 1);
      await storeAnswer(a, key, event.result);
      yield { type: 'done', answer: answerOf(event.result, a, { cached: false, costUsd, latencyMs }) };
      return;
    }
    const next = await metered(a, 1, () => events.next());
    event = next.result.done ? undefined : next.result.value;
  }
  throw new LlmProviderError(a.target.provider, 'server_error', `${a.target.provider} ended the stream without finishing the answer.`);
}

export interface StructuredRequest<S extends ZodType> {
  /** Names the object (JSON-schema output modes require a name). */
  name: string;
  schema: S;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
}

/** The first JSON object in a model's text (models wrap JSON in fences or prose despite instructions). */
function parseJsonObject(text: string): unknown {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end < start) throw new SyntaxError('no JSON object in the answer');
  return JSON.parse(text.slice(start, end + 1));
}

function validated<S extends ZodType>(schema: S, text: string): { ok: true; value: z.output<S> } | { ok: false; problem: string } {
  let json: unknown;
  try {
    json = parseJsonObject(text);
  } catch (err) {
    return { ok: false, problem: `The answer is not valid JSON (${(err as Error).message}).` };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, problem: parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
}

/**
 * Structured output: a zod schema in, a validated object out. An answer that does not validate
 * gets one repair attempt (the model sees its answer and what is wrong with it); a second
 * failure is a non-retryable `invalid_output`. Only validated answers are cached.
 */
export async function structuredCompletion<S extends ZodType>(
  deps: LlmDeps,
  call: LlmCall,
  request: StructuredRequest<S>,
): Promise<{ value: z.output<S>; answer: LlmAnswer; repaired: boolean }> {
  const json = { name: request.name, schema: toJSONSchema(request.schema) as Record<string, unknown> };
  const input: ChatInput = { messages: request.messages, json, temperature: request.temperature, maxTokens: request.maxTokens };
  const accept = (r: ChatResult) => validated(request.schema, r.text).ok;
  const first = await complete(deps, call, input, 'structured', accept);
  const firstCheck = validated(request.schema, first.text);
  if (firstCheck.ok) return { value: firstCheck.value, answer: first, repaired: false };

  const repair: ChatInput = {
    ...input,
    messages: [
      ...request.messages,
      { role: 'assistant', content: first.text },
      { role: 'user', content: `That answer does not match the required JSON schema: ${firstCheck.problem}. Answer again with only the corrected JSON object.` },
    ],
  };
  const second = await complete(deps, call, repair, 'structured', accept);
  const secondCheck = validated(request.schema, second.text);
  if (secondCheck.ok) return { value: secondCheck.value, answer: second, repaired: true };
  throw new LlmProviderError(second.provider, 'invalid_output', `${second.provider} answered twice with output that does not match the "${request.name}" schema: ${secondCheck.problem}`);
}

/**
 * Embeddings of many texts: cached per text, the rest sent in batches the provider accepts.
 * Vectors are float32-rounded whether fresh or cached, so the two are indistinguishable.
 * Embeddings never fall back: vectors of two models do not compare.
 */
export async function embedTexts(deps: LlmDeps, call: LlmCall, texts: string[]): Promise<Embeddings> {
  const settings = await effectiveLlmSettings(deps.config, call.tenantId);
  const clock = new CallClock(deps, call);
  const target = settings.embedding;
  const a: Attempt = { deps, clock, target, operation: 'embedding', fallbackFrom: null };
  const keys = texts.map((t) => cacheKey([call.tenantId, target.provider, target.baseUrl, target.apiVersion, target.model, 'embedding', t]));
  const cached = call.cache === 'bypass' ? new Map<string, number[]>() : await readCachedVectors(deps.sequelize, keys);
  const hits = keys.filter((k) => cached.has(k)).length;
  if (hits > 0) await recordHit(a, hits);

  const missing = new Map<string, string>();
  keys.forEach((k, i) => {
    if (!cached.has(k)) missing.set(k, texts[i]!);
  });
  const fresh = new Map<string, number[]>();
  let costUsd = 0;
  if (missing.size > 0) {
    const provider = await ready(a, settings);
    const pending = [...missing];
    for (let i = 0; i < pending.length; i += provider.maxEmbeddingBatch) {
      const batch = pending.slice(i, i + provider.maxEmbeddingBatch);
      if (i > 0) await ready(a, settings);
      const { result, latencyMs } = await metered(a, batch.length, () =>
        provider.embed({ model: target.model, inputs: batch.map(([, text]) => text) }, clock.providerOptions()),
      );
      costUsd += await recordSuccess(a, { promptTokens: result.usage.promptTokens, completionTokens: 0 }, latencyMs, batch.length);
      const entries = batch.map(([key], j) => ({ key, vector: toFloat32(result.vectors[j]!) }));
      for (const e of entries) fresh.set(e.key, e.vector);
      if (call.cache !== 'bypass') {
        await writeCachedVectors(deps.sequelize, entries, { tenantId: call.tenantId, provider: target.provider, model: target.model }, deps.config.LLM_CACHE_TTL_SECONDS);
      }
    }
  }
  const vectors = keys.map((k) => (cached.get(k) ?? fresh.get(k))!);
  return { vectors, provider: target.provider, model: target.model, dimensions: vectors[0]?.length ?? 0, cachedCount: hits, costUsd };
}

export interface ProviderStatus {
  role: ProviderTarget['role'];
  provider: string;
  model: string;
  status: 'ok' | 'failed';
  latencyMs: number;
  error: string | null;
}

/** Whether each configured provider answers with its credentials (a cheap call, never a completion). */
export async function probeProviders(deps: LlmDeps, call: LlmCall): Promise<ProviderStatus[]> {
  const settings = await effectiveLlmSettings(deps.config, call.tenantId);
  const clock = new CallClock(deps, { ...call, mode: 'interactive' });
  const targets = [settings.chat, settings.embedding, ...(settings.fallback ? [settings.fallback] : [])];
  return Promise.all(
    targets.map(async (target): Promise<ProviderStatus> => {
      const started = performance.now();
      const status = (s: 'ok' | 'failed', error: string | null): ProviderStatus => ({
        role: target.role,
        provider: target.provider,
        model: target.model,
        status: s,
        latencyMs: Math.round(performance.now() - started),
        error,
      });
      try {
        const { provider } = await openProvider(deps, call, target);
        await provider.probe(clock.providerOptions());
        return status('ok', null);
      } catch (err) {
        // A provider that fails and a key that does not resolve are both answers here, not errors.
        if (err instanceof LlmProviderError || err instanceof AppError) return status('failed', err.message);
        throw err;
      }
    }),
  );
}
