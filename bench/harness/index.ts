import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Sequelize } from 'sequelize';
import { createDatabase } from '../../db';
import { migrateUp } from '../../db/migrate';
import { loadConfig, type Config } from '../../lib/config';
import { freePort, startEmbeddedPostgres } from '../../scripts/services';

/** What every benchmark shares (not a benchmark itself: .ci/run runs only bench/*.ts): a throwaway embedded Postgres, migrated, and statistics. */

export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export interface BenchServices {
  dir: string;
  config: Config;
  sequelize: Sequelize;
}

/** Runs `bench` against a fresh embedded Postgres in a temporary directory, removed afterwards. */
export async function withBenchDatabase<T>(env: Record<string, string>, bench: (services: BenchServices) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'auditflow-bench-'));
  // Run as root, embedded Postgres runs as the "postgres" user, which must be able to enter here.
  await chmod(dir, 0o755);
  const postgres = await startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres'), port: await freePort(), durable: false });
  try {
    await migrateUp(postgres.url);
    const config = loadConfig({ DATABASE_URL: postgres.url, AUDITFLOW_DATA_DIR: path.join(dir, 'data'), ...env });
    const sequelize = createDatabase(config);
    try {
      return await bench({ dir, config, sequelize });
    } finally {
      await sequelize.close();
    }
  } finally {
    await postgres.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
