import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { freePort, startTemporalDevServer, type RunningTemporal } from '../../scripts/services';

/** A Temporal dev server for benchmarks that run workflows (not a benchmark itself: .ci/run runs only bench/*.ts). */

const repoRoot = path.resolve(__dirname, '../..');

const works = (cli: string) => spawnSync(cli, ['--version'], { stdio: 'ignore', timeout: 30_000 }).status === 0;

/**
 * The Temporal CLI where scripts/run.mjs finds or installs it: $TEMPORAL_CLI_PATH, `temporal` on
 * PATH, then `.tools/venv/bin/temporal` (pip wheel) or `.tools/bin/temporal` (go install). A
 * bench runs as `node --import tsx bench/x.ts`, without run.mjs, so it looks in the same places
 * (`npm test`, run before the benches in CI, installs it when missing).
 */
export function findTemporalCli(): string {
  const exe = process.platform === 'win32' ? 'temporal.exe' : 'temporal';
  const onPath = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter(Boolean)
    .map((dir) => path.join(dir, exe))
    .filter((file) => statSync(file, { throwIfNoEntry: false })?.isFile() === true);
  const candidates = [
    process.env.TEMPORAL_CLI_PATH,
    ...onPath,
    path.join(repoRoot, '.tools', 'venv', process.platform === 'win32' ? 'Scripts' : 'bin', exe),
    path.join(repoRoot, '.tools', 'bin', exe),
  ].filter((c): c is string => c !== undefined && c !== '' && existsSync(c));
  const found = candidates.find(works);
  if (!found) throw new Error('Temporal CLI not found ($TEMPORAL_CLI_PATH, PATH, .tools/): run `npm test` once (scripts/run.mjs installs it) or put `temporal` on PATH.');
  return found;
}

/** Runs `bench` against a Temporal dev server on free ports, its state under `dir`, stopped afterwards. */
export async function withBenchTemporal<T>(dir: string, bench: (temporal: RunningTemporal) => Promise<T>): Promise<T> {
  const temporal = await startTemporalDevServer({
    cliPath: findTemporalCli(),
    dbFile: path.join(dir, 'temporal.db'),
    port: await freePort(),
    uiPort: await freePort(),
    logFile: path.join(dir, 'temporal.log'),
  });
  try {
    return await bench(temporal);
  } finally {
    await temporal.stop();
  }
}
