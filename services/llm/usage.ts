import { QueryTypes, type Sequelize } from 'sequelize';
import type { LlmOperation } from '../../db';
import { AppError } from '../../lib/errors';

/**
 * What the gateway spent: a usage row per provider call or cache hit, the tenant's running
 * monthly spend beside them (one row to read for a budget check), and the aggregates the API shows.
 */

export interface UsageRecord {
  tenantId: string;
  projectId: string | null;
  jobId: string | null;
  operation: LlmOperation;
  provider: string;
  model: string;
  promptTokens: number;
  completionTokens: number;
  items: number;
  costUsd: number;
  latencyMs: number;
  cached: boolean;
  fallbackFrom: string | null;
  outcome: 'ok' | 'failed';
  error: string | null;
}

/** The first day (UTC) of the month `at` falls in, as `YYYY-MM-DD`. */
export function monthOf(at: Date): string {
  return `${at.getUTCFullYear()}-${String(at.getUTCMonth() + 1).padStart(2, '0')}-01`;
}

/**
 * Writes the usage row and adds its cost to the month's spend, in one statement (so both land or
 * neither does, in one round trip: this runs on every model call).
 */
export async function recordUsage(sequelize: Sequelize, record: UsageRecord): Promise<void> {
  await sequelize.query(
    `WITH usage AS (
       INSERT INTO llm_usage (tenant_id, project_id, job_id, operation, provider, model, prompt_tokens, completion_tokens, items,
                              cost_usd, latency_ms, cached, fallback_from, outcome, error)
       VALUES (:tenantId, :projectId, :jobId, :operation, :provider, :model, :promptTokens, :completionTokens, :items,
               :costUsd, :latencyMs, :cached, :fallbackFrom, :outcome, :error)
       RETURNING tenant_id, cost_usd, created_at
     )
     INSERT INTO llm_monthly_spend (tenant_id, month, cost_usd)
     SELECT tenant_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date, cost_usd FROM usage WHERE cost_usd > 0
     ON CONFLICT (tenant_id, month) DO UPDATE SET cost_usd = llm_monthly_spend.cost_usd + EXCLUDED.cost_usd`,
    { replacements: { ...record, latencyMs: Math.round(record.latencyMs) } },
  );
}

/** What the tenant has spent on models this calendar month (UTC), in US dollars. */
export async function spentThisMonth(sequelize: Sequelize, tenantId: string, now = new Date()): Promise<number> {
  const rows = await sequelize.query<{ cost: string }>('SELECT cost_usd AS cost FROM llm_monthly_spend WHERE tenant_id = :tenantId AND month = :month', {
    replacements: { tenantId, month: monthOf(now) },
    type: QueryTypes.SELECT,
  });
  return Number(rows[0]?.cost ?? 0);
}

export class LlmBudgetExhaustedError extends AppError {
  constructor(budgetUsd: number, spentUsd: number, resetsAt: Date) {
    super(
      402,
      'llm-budget-exhausted',
      `This tenant's monthly LLM budget of $${budgetUsd.toFixed(2)} is spent ($${spentUsd.toFixed(4)} this month): new model calls are refused until ${resetsAt.toISOString().slice(0, 10)}, or until an admin raises the budget.`,
      { budgetUsd, spentUsd, resetsAt: resetsAt.toISOString() },
    );
  }
}

/** Refuses, with a problem saying so, once the month's spend has reached the budget (none: never). */
export async function assertLlmBudgetLeft(sequelize: Sequelize, tenantId: string, monthlyBudgetUsd: number | null): Promise<void> {
  if (monthlyBudgetUsd === null) return;
  const spent = await spentThisMonth(sequelize, tenantId);
  if (spent >= monthlyBudgetUsd) {
    const now = new Date();
    throw new LlmBudgetExhaustedError(monthlyBudgetUsd, spent, new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)));
  }
}

export const usageDimensions = ['day', 'provider', 'model', 'project'] as const;
export type UsageDimension = (typeof usageDimensions)[number];

export interface UsageQuery {
  from: Date;
  to: Date;
  groupBy: UsageDimension[];
  projectId?: string;
}

export interface UsageGroup {
  day?: string;
  provider?: string;
  model?: string;
  projectId?: string | null;
  calls: number;
  cachedCalls: number;
  failedCalls: number;
  items: number;
  /** Texts or prompts answered from the cache, and those a provider answered. */
  cacheHits: number;
  cacheMisses: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  averageLatencyMs: number;
}

const dimensionSql: Record<UsageDimension, string> = {
  day: "to_char(date_trunc('day', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day",
  provider: 'provider',
  model: 'model',
  project: 'project_id AS "projectId"',
};
const groupSql: Record<UsageDimension, string> = { day: '1', provider: 'provider', model: 'model', project: 'project_id' };

/** The tenant's usage between two instants, summed per the requested dimensions (none: one total row). */
export async function aggregateUsage(sequelize: Sequelize, tenantId: string, q: UsageQuery): Promise<UsageGroup[]> {
  const dims = usageDimensions.filter((d) => q.groupBy.includes(d));
  const select = dims.map((d) => dimensionSql[d]);
  // Positional GROUP BY for the day expression; the others group by column.
  const group = dims.map((d, i) => (d === 'day' ? String(i + 1) : groupSql[d]));
  const rows = await sequelize.query<Record<string, string | number | null>>(
    `SELECT ${[...select, ''].join(', ')}
       count(*) FILTER (WHERE NOT cached) AS calls,
       count(*) FILTER (WHERE cached) AS "cachedCalls",
       count(*) FILTER (WHERE outcome = 'failed') AS "failedCalls",
       coalesce(sum(items), 0) AS items,
       coalesce(sum(items) FILTER (WHERE cached), 0) AS "cacheHits",
       coalesce(sum(items) FILTER (WHERE NOT cached AND outcome = 'ok'), 0) AS "cacheMisses",
       coalesce(sum(prompt_tokens), 0) AS "promptTokens",
       coalesce(sum(completion_tokens), 0) AS "completionTokens",
       coalesce(sum(cost_usd), 0) AS "costUsd",
       coalesce(avg(latency_ms) FILTER (WHERE NOT cached), 0) AS "averageLatencyMs"
     FROM llm_usage
     WHERE tenant_id = :tenantId AND created_at >= :from AND created_at < :to ${q.projectId ? 'AND project_id = :projectId' : ''}
     ${group.length ? `GROUP BY ${group.join(', ')} ORDER BY ${group.join(', ')}` : ''}`,
    { replacements: { tenantId, from: q.from, to: q.to, projectId: q.projectId ?? null }, type: QueryTypes.SELECT },
  );
  const numbers = ['calls', 'cachedCalls', 'failedCalls', 'items', 'cacheHits', 'cacheMisses', 'promptTokens', 'completionTokens', 'costUsd'] as const;
  return rows.map((r) => {
    const g: UsageGroup = { calls: 0, cachedCalls: 0, failedCalls: 0, items: 0, cacheHits: 0, cacheMisses: 0, promptTokens: 0, completionTokens: 0, costUsd: 0, averageLatencyMs: Math.round(Number(r.averageLatencyMs)) };
    for (const n of numbers) g[n] = Number(r[n]);
    if (dims.includes('day')) g.day = String(r.day);
    if (dims.includes('provider')) g.provider = String(r.provider);
    if (dims.includes('model')) g.model = String(r.model);
    if (dims.includes('project')) g.projectId = r.projectId === null ? null : String(r.projectId);
    return g;
  });
}
