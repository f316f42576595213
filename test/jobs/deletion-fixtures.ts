import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import type { Sequelize } from 'sequelize';
import { Job } from '../../db';

/**
 * Fixtures for tests that need a project deletion to stop at a known point: data in a known
 * deletion order, and a row lock that makes one batch wait for as long as the test wants.
 */

/**
 * Finished jobs of a project, as its data for deletion to remove, created a second apart so the
 * deletion order (oldest first) is known. Returns their ids in that order.
 */
export async function seedFinishedJobs(tenantId: string, projectId: string, count: number): Promise<string[]> {
  const first = Date.now() - (count + 60) * 1000;
  const rows = Array.from({ length: count }, (_, i) => {
    const id = randomUUID();
    return {
      id,
      tenantId,
      projectId,
      kind: 'deleteProject',
      workflowId: `seed-${id}`,
      title: 'seeded',
      requestedBy: 'system',
      status: 'completed' as const,
      createdAt: new Date(first + i * 1000),
    };
  });
  await Job.bulkCreate(rows);
  const ids = rows.map((r) => r.id);
  // The deleter's own order (oldest first): what a test locks must be where it thinks it is.
  const stored = await Job.findAll({ attributes: ['id'], where: { id: ids }, order: [['createdAt', 'ASC']] });
  if (stored.map((j) => j.id).join() !== ids.join()) throw new Error('seeded jobs are not stored in creation order');
  return ids;
}

export interface RowLock {
  /** The backend holding the lock: a batch waiting for it shows up in `pg_blocking_pids`. */
  pid: number;
  /** Rolls back and disconnects; safe to call twice. */
  release(): Promise<void>;
}

/**
 * Holds `SELECT … FOR UPDATE` on one job row in an open transaction of a connection of its own:
 * the deletion batch that reaches this row waits until `release()`, the batches before it go through.
 */
export async function lockJobRow(jobId: string): Promise<RowLock> {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  await client.query('BEGIN');
  const locked = await client.query('SELECT id FROM jobs WHERE id = $1 FOR UPDATE', [jobId]);
  if (locked.rowCount !== 1) throw new Error(`job ${jobId} not found to lock`);
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  let released: Promise<void> | undefined;
  return {
    pid: rows[0]?.pid ?? 0,
    release() {
      released ??= client.query('ROLLBACK').then(
        () => client.end(),
        () => client.end(),
      );
      return released;
    },
  };
}

/** How many other backends are waiting for a lock `pid` holds (read live, outside any transaction). */
export async function backendsBlockedBy(sequelize: Sequelize, pid: number): Promise<number> {
  const [rows] = await sequelize.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))', { replacements: { pid } });
  return (rows as { n: number }[])[0]?.n ?? 0;
}

/** Polls `check` until it returns a value other than undefined/false; fails with `what` after `timeoutMs`. */
export async function waitUntil<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
