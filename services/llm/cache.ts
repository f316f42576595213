import { createHash } from 'node:crypto';
import { QueryTypes, type Sequelize } from 'sequelize';
import type { ChatResult } from '../../lib/llm';

/**
 * The gateway's answer cache in Postgres. Keys are digests over the tenant and everything that
 * shapes an answer (provider, endpoint, model, parameters, messages), so an entry is never
 * served to another tenant. Expired entries are ignored and replaced; `purgeExpiredLlmCache` removes them.
 */

export function cacheKey(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

interface CacheOwner {
  tenantId: string;
  provider: string;
  model: string;
}

export async function readCachedAnswer(sequelize: Sequelize, key: string): Promise<ChatResult | null> {
  const rows = await sequelize.query<{ response: ChatResult }>(
    'UPDATE llm_cache SET hits = hits + 1 WHERE key = :key AND expires_at > now() RETURNING response',
    { replacements: { key }, type: QueryTypes.SELECT },
  );
  return rows[0]?.response ?? null;
}

export async function writeCachedAnswer(sequelize: Sequelize, key: string, owner: CacheOwner, operation: string, answer: ChatResult, ttlSeconds: number): Promise<void> {
  if (ttlSeconds === 0) return;
  await sequelize.query(
    `INSERT INTO llm_cache (key, tenant_id, operation, provider, model, response, expires_at)
     VALUES (:key, :tenantId, :operation, :provider, :model, :response, now() + make_interval(secs => :ttl))
     ON CONFLICT (key) DO UPDATE SET response = EXCLUDED.response, expires_at = EXCLUDED.expires_at, created_at = now(), hits = 0`,
    { replacements: { key, ...owner, operation, response: JSON.stringify(answer), ttl: ttlSeconds } },
  );
}

/** Embeddings are stored as float4 bytes; the gateway rounds fresh vectors the same way, so hit and miss agree. */
export const toFloat32 = (v: number[]): number[] => Array.from(Float32Array.from(v));

export async function readCachedVectors(sequelize: Sequelize, keys: string[]): Promise<Map<string, number[]>> {
  if (keys.length === 0) return new Map();
  const rows = await sequelize.query<{ key: string; vector: Buffer }>(
    'UPDATE llm_cache SET hits = hits + 1 WHERE key = ANY(ARRAY[:keys]::text[]) AND expires_at > now() AND vector IS NOT NULL RETURNING key, vector',
    { replacements: { keys }, type: QueryTypes.SELECT },
  );
  return new Map(rows.map((r) => [r.key, Array.from(new Float32Array(r.vector.buffer.slice(r.vector.byteOffset, r.vector.byteOffset + r.vector.byteLength)))]));
}

export async function writeCachedVectors(sequelize: Sequelize, entries: Array<{ key: string; vector: number[] }>, owner: CacheOwner, ttlSeconds: number): Promise<void> {
  if (ttlSeconds === 0 || entries.length === 0) return;
  await sequelize.query(
    `INSERT INTO llm_cache (key, tenant_id, operation, provider, model, vector, expires_at)
     SELECT k, :tenantId, 'embedding', :provider, :model, v, now() + make_interval(secs => :ttl)
     FROM unnest(ARRAY[:keys]::text[], ARRAY[:vectors]::bytea[]) AS e(k, v)
     ON CONFLICT (key) DO UPDATE SET vector = EXCLUDED.vector, expires_at = EXCLUDED.expires_at, created_at = now(), hits = 0`,
    {
      replacements: {
        ...owner,
        ttl: ttlSeconds,
        keys: entries.map((e) => e.key),
        vectors: entries.map((e) => Buffer.from(Float32Array.from(e.vector).buffer)),
      },
    },
  );
}

/** Deletes expired entries; returns how many went. */
export async function purgeExpiredLlmCache(sequelize: Sequelize): Promise<number> {
  const [, meta] = await sequelize.query('DELETE FROM llm_cache WHERE expires_at <= now()');
  return (meta as { rowCount?: number }).rowCount ?? 0;
}
