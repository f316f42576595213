import { readFileSync, writeFileSync } from 'node:fs';
import type { RunningEntry } from '../../test/harness/processes';

/** A worker process's memory (Linux /proc), and its orderly stop, for benchmarks (not a benchmark itself: .ci/run runs only bench/*.ts). */

export function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Resets the process's peak RSS (VmHWM) to its current RSS; false where the kernel does not allow it. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Drains the worker as a deployment stops it (SIGTERM); kills it if it has not stopped within 30 s. */
export async function stopWorker(worker: RunningEntry): Promise<void> {
  worker.child.kill('SIGTERM');
  const killer = setTimeout(() => worker.child.kill('SIGKILL'), 30_000);
  await worker.exited;
  clearTimeout(killer);
}
