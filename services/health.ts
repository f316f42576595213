import { Connection } from '@temporalio/client';
import { withinDeadline } from '../lib/deadline';
import type { Sequelize } from 'sequelize';

export type CheckStatus = 'healthy' | 'unhealthy';
export interface CheckResult {
  status: CheckStatus;
  latencyMs: number;
  error?: string;
}
export interface Readiness {
  status: 'healthy' | 'degraded' | 'unhealthy';
  checks: Record<string, CheckResult>;
}

async function timed(probe: () => Promise<unknown>, timeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  try {
    await withinDeadline(probe(), timeoutMs);
    return { status: 'healthy', latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    return { status: 'unhealthy', latencyMs: Math.round(performance.now() - started), error: (err as Error).message };
  }
}

/**
 * Readiness of what the API cannot work without. The database and Temporal are both critical:
 * either failing makes the instance unhealthy (later checks, like the vector store, may only degrade it).
 */
export async function checkReadiness(deps: { sequelize: Sequelize; temporalAddress: string }, timeoutMs = 2000): Promise<Readiness> {
  const critical = {
    database: () => deps.sequelize.query('SELECT 1'),
    temporal: () => probeTemporal(deps.temporalAddress, timeoutMs),
  };
  const entries = await Promise.all(Object.entries(critical).map(async ([name, probe]) => [name, await timed(probe, timeoutMs)] as const));
  const checks = Object.fromEntries(entries);
  const status = entries.every(([, r]) => r.status === 'healthy') ? 'healthy' : 'unhealthy';
  return { status, checks };
}

/**
 * A connection of its own, without the SDK's retry interceptor: a probe must fail fast, and a
 * retrying call on the shared connection would outlive its timeout.
 */
async function probeTemporal(address: string, timeoutMs: number): Promise<void> {
  const connection = await Connection.connect({ address, connectTimeout: timeoutMs, interceptors: [] });
  try {
    await connection.workflowService.getSystemInfo({});
  } finally {
    await connection.close();
  }
}
