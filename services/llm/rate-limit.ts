import { createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryTypes, type Sequelize } from 'sequelize';
import { LlmProviderError } from '../../lib/llm';

/**
 * Rate limits per provider endpoint and API key, shared by every worker and API instance: a
 * token bucket row in Postgres. Each call takes a token in one statement; a bucket may go into
 * debt, and the caller then waits its turn (debt / rate), so callers queue fairly instead of
 * polling. A caller that cannot wait that long hands its token back and fails as `rate_limited`
 * with the wait as its retry delay.
 */

export interface RateLimit {
  /** Identifies the provider endpoint and API key; the key is only ever present as a keyed digest. */
  bucket: string;
  requestsPerMinute: number;
}

/** The bucket of an endpoint and key: an HMAC (under a server secret), so the table holds nothing to test a guessed key against. */
export function rateBucket(secret: string, provider: string, endpoint: string, apiKey: string | undefined): string {
  const keyDigest = apiKey ? createHmac('sha256', secret).update(apiKey).digest('hex').slice(0, 24) : '-';
  return `${provider}|${endpoint}|${keyDigest}`;
}

/** Burst: one second's worth of requests, at least one. */
const capacityOf = (limit: RateLimit) => Math.max(1, Math.ceil(limit.requestsPerMinute / 60));

/** Takes a token, waiting up to `maxWaitMs` for it; throws `rate_limited` (retryable, with the wait) beyond that. */
export async function acquireRateLimit(sequelize: Sequelize, provider: string, limit: RateLimit, options: { maxWaitMs: number; signal?: AbortSignal }): Promise<void> {
  const perSecond = limit.requestsPerMinute / 60;
  const capacity = capacityOf(limit);
  const [row] = await sequelize.query<{ tokens: number }>(
    `INSERT INTO llm_rate_buckets AS b (key, tokens, refilled_at) VALUES (:bucket, :capacity - 1, statement_timestamp())
     ON CONFLICT (key) DO UPDATE SET
       tokens = LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM statement_timestamp() - b.refilled_at) * :perSecond) - 1,
       refilled_at = statement_timestamp()
     RETURNING tokens`,
    { replacements: { bucket: limit.bucket, capacity, perSecond }, type: QueryTypes.SELECT },
  );
  const debt = row ? -Number(row.tokens) : 0;
  if (debt <= 0) return;
  const waitMs = Math.ceil((debt / perSecond) * 1000);
  if (waitMs > options.maxWaitMs) {
    await sequelize.query('UPDATE llm_rate_buckets SET tokens = tokens + 1 WHERE key = :bucket', { replacements: { bucket: limit.bucket } });
    throw new LlmProviderError(provider, 'rate_limited', `The rate limit of ${limit.requestsPerMinute} requests per minute for ${provider} is reached; retry in ${Math.ceil(waitMs / 1000)} s.`, {
      retryAfterMs: waitMs,
    });
  }
  await sleep(waitMs, undefined, { signal: options.signal });
}
