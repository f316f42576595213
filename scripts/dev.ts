/**
 * `npm run dev`: embedded Postgres + Temporal dev server (state in .data/), migrations, then the
 * worker and the API. Ctrl-C stops everything it started; a second run reuses the data.
 *
 * Environment: DATABASE_URL (use that Postgres instead of the embedded one),
 * EMBEDDED_POSTGRES_PORT (5433), TEMPORAL_ADDRESS (127.0.0.1:7233; when set and answering, that
 * server is reused), TEMPORAL_UI_PORT (8233), TEMPORAL_NAMESPACE (default), API_PORT (3000),
 * TEMPORAL_CLI_PATH (set by scripts/run.mjs). JWT_SECRET and the vault key, when unset, are generated
 * into .data/ by the app's own configuration (lib/config.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { persistentDevSecret } from '../lib/config';
import {
  ensureSearchAttributes,
  isPortOpen,
  isTemporalReachable,
  parseHostPort,
  spawnManaged,
  startEmbeddedPostgres,
  startTemporalDevServer,
  type ManagedProcess,
} from './services';

const repoRoot = path.resolve(__dirname, '..');
const dataDir = path.join(repoRoot, '.data');

function log(message: string): void {
  process.stderr.write(`[dev] ${message}\n`);
}

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0 || value > 65_535) throw new Error(`${name}=${raw} is not a port number`);
  return value;
}

/** Things to stop on the way out. */
const stopOnShutdown: Array<{ name: string; stop(): Promise<unknown> }> = [];
let shutdownStartedAt: number | undefined;
let shutdownDone: Promise<never> | undefined;
const isShuttingDown = (): boolean => shutdownStartedAt !== undefined;

/** Stops everything started so far, then exits; later calls join the first one. */
function shutdown(exitCode: number): Promise<never> {
  shutdownDone ??= (async () => {
    shutdownStartedAt = Date.now();
    log('stopping …');
    // API and worker first (they still talk to Temporal and Postgres while draining), then the servers.
    const isApp = (entry: { name: string }) => entry.name === 'api' || entry.name === 'worker';
    for (const group of [stopOnShutdown.filter(isApp), stopOnShutdown.filter((entry) => !isApp(entry))]) {
      await Promise.all(group.map((entry) => entry.stop().catch((error: unknown) => log(`stopping ${entry.name}: ${String(error)}`))));
    }
    // The 'exit' hook in services.ts kills whatever was still starting.
    process.exit(exitCode);
  })();
  return shutdownDone;
}

function onStopSignal(signal: NodeJS.Signals, exitCode: number): void {
  // One Ctrl-C may arrive twice within milliseconds (npm forwards it to run.mjs, which relays
  // it here; or the terminal reached us directly): only a later one means "stop waiting".
  if (shutdownStartedAt !== undefined) {
    if (Date.now() - shutdownStartedAt > 1_000) {
      log(`${signal} again: exiting without waiting`);
      process.exit(exitCode);
    }
    return;
  }
  void shutdown(exitCode);
}
process.on('SIGINT', () => onStopSignal('SIGINT', 130));
process.on('SIGTERM', () => onStopSignal('SIGTERM', 143));
process.on('SIGHUP', () => onStopSignal('SIGHUP', 129));

// run.mjs starts us in our own session; should it die without relaying a signal (SIGKILL, on
// systems without a parent-death signal), we are re-parented: stop everything then too.
const launcherPid = process.ppid;
setInterval(() => {
  if (process.ppid !== launcherPid && !isShuttingDown()) {
    log('the launcher is gone');
    void shutdown(129);
  }
}, 1_000).unref();

function tsxProcess(name: string, scriptAndArgs: string[], env: NodeJS.ProcessEnv): ManagedProcess {
  // `node --import tsx` is a single process, unlike the tsx CLI, so signals reach the app itself.
  return spawnManaged(name, process.execPath, ['--import', 'tsx', ...scriptAndArgs], { cwd: repoRoot, env });
}

async function startPostgres(): Promise<string> {
  if (process.env.DATABASE_URL) {
    log('using DATABASE_URL from the environment');
    return process.env.DATABASE_URL;
  }
  const port = intFromEnv('EMBEDDED_POSTGRES_PORT', 5433);
  const started = Date.now();
  const postgres = await startEmbeddedPostgres({
    dataDir: path.join(dataDir, 'postgres'),
    port,
    user: 'auditflow',
    password: persistentDevSecret(path.join(dataDir, 'postgres-password'), () => randomBytes(24).toString('base64url')),
    database: 'auditflow',
    logFile: path.join(dataDir, 'postgres.log'),
  });
  stopOnShutdown.push({ name: 'postgres', stop: () => postgres.stop() });
  log(`Postgres ready on 127.0.0.1:${port} (${Date.now() - started} ms)`);
  return postgres.url;
}

async function startTemporal(namespace: string): Promise<{ address: string; uiUrl: string }> {
  const cliPath = process.env.TEMPORAL_CLI_PATH || 'temporal';
  const explicitAddress = process.env.TEMPORAL_ADDRESS;
  const uiPort = intFromEnv('TEMPORAL_UI_PORT', 8233);
  const { host, port } = parseHostPort(explicitAddress || '127.0.0.1:7233', 7233);
  if (explicitAddress && (await isTemporalReachable(explicitAddress))) {
    log(`reusing the Temporal server at ${explicitAddress}`);
    await ensureSearchAttributes({ cliPath, address: explicitAddress, namespace }).catch((error: unknown) =>
      log(`warning: could not check search attributes on ${explicitAddress}: ${String(error)}`),
    );
    return { address: explicitAddress, uiUrl: process.env.TEMPORAL_UI_URL || `http://localhost:${uiPort}` };
  }
  if (!['127.0.0.1', 'localhost', '::1', '0.0.0.0'].includes(host)) {
    throw new Error(`TEMPORAL_ADDRESS=${explicitAddress} does not answer (a dev server is started only on this machine)`);
  }
  const started = Date.now();
  const temporal = await startTemporalDevServer({
    cliPath,
    dbFile: path.join(dataDir, 'temporal.db'),
    port,
    uiPort,
    namespace,
    logFile: path.join(dataDir, 'temporal.log'),
  });
  stopOnShutdown.push({ name: 'temporal', stop: () => temporal.stop() });
  log(`Temporal dev server ready on ${temporal.address} (${Date.now() - started} ms)`);
  return temporal;
}

/** Runs the migrations, then starts the worker and the API; resolves once the API listens. */
async function startApps(env: NodeJS.ProcessEnv, apiPort: number): Promise<void> {
  log('running migrations …');
  const migration = await tsxProcess('migrations', ['db/cli.ts', 'up'], env).exited;
  if (isShuttingDown()) return;
  if (migration.code !== 0) {
    log(`migrations failed (exit code ${migration.code ?? migration.signal})`);
    return shutdown(1);
  }

  for (const [name, script] of [['worker', 'workers/main.ts'], ['api', 'api/server.ts']] as const) {
    const app = tsxProcess(name, [script], env);
    stopOnShutdown.push({ name, stop: () => app.stop() });
    void app.exited.then(({ code, signal }) => {
      if (isShuttingDown()) return;
      log(`${name} exited unexpectedly (${signal ?? `exit code ${code}`})`);
      void shutdown(1);
    });
  }

  // Print the banner once the API listens, so the links work when they appear.
  const deadline = Date.now() + 120_000;
  while (!(await isPortOpen('127.0.0.1', apiPort)) && Date.now() < deadline) {
    if (isShuttingDown()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (isShuttingDown()) return;
  if (Date.now() >= deadline) log(`warning: nothing listens on port ${apiPort} yet`);
}

function printBanner(lines: Array<[string, string]>): void {
  const width = Math.max(...lines.map(([label]) => label.length));
  const body = lines.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`);
  process.stderr.write(`\n  AuditFlow is running (Ctrl-C stops everything)\n\n${body.join('\n')}\n\n`);
}

async function main(): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  const apiPort = intFromEnv('API_PORT', 3000);
  const namespace = process.env.TEMPORAL_NAMESPACE || 'default';
  if (await isPortOpen('127.0.0.1', apiPort)) throw new Error(`API port ${apiPort} is already in use (set API_PORT)`);

  // Postgres and Temporal start in parallel; if one fails, the other is stopped by shutdown().
  const [database, temporal] = await Promise.allSettled([startPostgres(), startTemporal(namespace)]);
  for (const result of [database, temporal]) {
    if (result.status === 'rejected') log(result.reason instanceof Error ? result.reason.message : String(result.reason));
  }
  if (database.status === 'rejected' || temporal.status === 'rejected') return shutdown(1);
  if (isShuttingDown()) return;

  const databaseUrl = database.value;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development',
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: temporal.value.address,
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_UI_URL: temporal.value.uiUrl,
    AUDITFLOW_DATA_DIR: dataDir,
    API_PORT: String(apiPort),
  };
  await startApps(env, apiPort);
  if (isShuttingDown()) return;

  const passwordless = URL.canParse(databaseUrl) ? new URL(databaseUrl) : undefined;
  if (passwordless) passwordless.password = '';
  printBanner([
    ['API', `http://localhost:${apiPort}/api/v1`],
    ['API docs', `http://localhost:${apiPort}/docs`],
    ['Temporal UI', temporal.value.uiUrl],
    ['Temporal', `${temporal.value.address} (namespace ${namespace})`],
    ['Postgres', passwordless?.toString() ?? '(DATABASE_URL)'],
    ['data dir', dataDir],
  ]);
}

main().catch((error: unknown) => {
  log(`failed: ${error instanceof Error ? error.message : String(error)}`);
  void shutdown(1);
});
