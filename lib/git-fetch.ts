import { spawn } from 'node:child_process';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { CheckedSource } from './net-guard';

/**
 * Shallow, hardened git clone of a source that `checkRemoteUrl` has approved (issue 6,
 * criterion 2), into a bare repository: nothing is checked out, a scan reads the commit from the
 * object store (lib/git-tree.ts). git runs with no inherited environment, no system or global
 * config, hooks and fsmonitor off, only the scheme in use allowed (so `ext::` or submodule URLs
 * cannot run anything), redirects off, and the checked address pinned with `http.curloptResolve`
 * (no second DNS lookup). A token travels as an `Authorization` header set through
 * `GIT_CONFIG_COUNT` environment variables: never on the command line, never in the URL.
 *
 * Only clone/init/fetch, `rev-parse` and `ls-tree` ever run in the destination, all with the
 * same hardening. The caller owns `dest` (a fresh or absent directory) and removes it on error.
 */

export type GitFetchErrorCode = 'invalid-ref' | 'timeout' | 'too-large' | 'not-found' | 'auth-failed' | 'failed';

export class GitFetchError extends Error {
  constructor(
    readonly code: GitFetchErrorCode,
    message: string,
    /** The end of git's stderr, token redacted. */
    readonly stderrTail = '',
  ) {
    super(stderrTail ? `${message}\n${stderrTail}` : message);
    this.name = 'GitFetchError';
  }
}

export interface GitFetchOptions {
  /** Branch, tag or full commit sha; the remote's HEAD when absent. */
  ref?: string;
  /** Where the bare repository goes: absent or empty. */
  dest: string;
  /** Sent as an `Authorization` header (never in argv or the URL). */
  token?: string;
  /** `bearer` (default): `Bearer <token>`; `basic-x-access-token`: Basic `x-access-token:<token>` (GitHub, GitLab). */
  tokenScheme?: 'bearer' | 'basic-x-access-token';
  /** For the whole fetch, all git commands together. */
  timeoutMs: number;
  /** Cap on the repository's size: its objects on disk and the files of the commit's tree. */
  maxBytes: number;
  /** Cap on the files (and links) of the commit's tree, whose listing a scan holds in memory. */
  maxEntries: number;
  signal?: AbortSignal;
}

const WATCHDOG_INTERVAL_MS = 250;
const STDERR_TAIL_CHARS = 2000;
const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;

export async function fetchGitRepository(source: CheckedSource, options: GitFetchOptions): Promise<{ commit: string; bytes: number }> {
  options.signal?.throwIfAborted();
  const ref = options.ref === undefined ? undefined : validateRef(options.ref);
  const url = source.kind === 'remote' ? source.url.href : pathToFileURL(source.path).href;
  const scheme = source.kind === 'remote' ? source.url.protocol.slice(0, -1) : 'file';
  const authorization = source.kind === 'remote' && options.token !== undefined ? authorizationHeader(options.token, options.tokenScheme ?? 'bearer') : undefined;
  // The token, the header value and its base64 credentials: whatever form git could echo.
  const secrets = [options.token, authorization, authorization?.split(' ')[1]].filter((s): s is string => s !== undefined && s !== '');

  // An empty HOME (and cwd) so no user config, credential store or enclosing repository is read.
  const home = await mkdtemp(path.join(tmpdir(), 'auditflow-git-home-'));
  const dest = path.resolve(options.dest);
  try {
    const run = runner({
      home,
      config: hardenedConfig(source, scheme),
      env: gitEnvironment(home, scheme, authorization),
      deadline: Date.now() + options.timeoutMs,
      timeoutMs: options.timeoutMs,
      dest,
      maxBytes: options.maxBytes,
      secrets,
      signal: options.signal,
    });
    const shallow = ['--depth', '1', '--no-tags', '--no-recurse-submodules'];
    let target: string;
    if (ref !== undefined && FULL_SHA.test(ref)) {
      // A commit is fetched by id (servers allow reachable shas: GitHub, GitLab, protocol v2).
      await run(['init', '--quiet', '--bare', '--template=', '--', dest], home);
      await run(['fetch', '--quiet', ...shallow, '--', url, ref.toLowerCase()], dest);
      target = ref.toLowerCase();
    } else {
      const branch = ref === undefined ? [] : ['--branch', ref];
      await run(['clone', '--quiet', '--bare', '--template=', ...shallow, '--single-branch', ...branch, '--', url, dest], home);
      target = 'HEAD';
    }
    const commit = (await run(['rev-parse', '--verify', `${target}^{commit}`], dest)).trim();
    // The files' sizes come from the tree (its blob sizes): what a scan may read, though never written out.
    const tree = blobsOf(await run(['ls-tree', '-r', '-l', '--full-tree', '-z', commit], dest));
    if (tree.entries > options.maxEntries) {
      throw new GitFetchError('too-large', `The repository's tree holds ${tree.entries} files, more than the ${options.maxEntries} allowed (SCAN_MAX_TREE_ENTRIES).`);
    }
    const bytes = (await directorySize(dest)) + tree.bytes;
    if (bytes > options.maxBytes) throw tooLarge(options.maxBytes);
    return { commit, bytes };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/** How many blobs `git ls-tree -r -l -z` lists, and their total size (submodule links have none). */
function blobsOf(listing: string): { entries: number; bytes: number } {
  let entries = 0;
  let bytes = 0;
  for (const entry of listing.split('\0')) {
    // "<mode> <type> <object> <size>\t<path>"
    const size = entry.split('\t', 1)[0]?.trim().split(/\s+/)[3];
    if (size !== undefined && /^\d+$/.test(size)) {
      entries += 1;
      bytes += Number(size);
    }
  }
  return { entries, bytes };
}

/**
 * Accepts what `git check-ref-format --branch` would, minus anything that could be read as an
 * option or a revision expression: `[A-Za-z0-9._/-]`, no leading `-`, no `..`, `//`, `@{`, no
 * component starting with `.` or ending with `.lock`, no trailing `/` or `.`.
 */
export function isValidRef(ref: string): boolean {
  return (
    ref.length > 0 &&
    ref.length <= 255 &&
    /^[A-Za-z0-9._/-]+$/.test(ref) &&
    !ref.startsWith('-') &&
    !ref.startsWith('/') &&
    !ref.endsWith('/') &&
    !ref.endsWith('.') &&
    !ref.includes('..') &&
    !ref.includes('//') &&
    ref.split('/').every((part) => !part.startsWith('.') && !part.endsWith('.lock'))
  );
}

function validateRef(ref: string): string {
  if (!isValidRef(ref)) throw new GitFetchError('invalid-ref', `"${ref}" is not a valid branch, tag or commit name.`);
  return ref;
}

function authorizationHeader(token: string, scheme: 'bearer' | 'basic-x-access-token'): string {
  if (/[\r\n]/.test(token)) throw new GitFetchError('auth-failed', 'The token contains a line break.');
  return scheme === 'bearer' ? `Bearer ${token}` : `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
}

/** `-c` options for every git command we run. */
function hardenedConfig(source: CheckedSource, scheme: string): string[] {
  const settings = [
    'core.hooksPath=/dev/null',
    'core.fsmonitor=false',
    'protocol.allow=never',
    `protocol.${scheme}.allow=always`,
    'http.followRedirects=false',
    // No proxy: the connection must go to the pinned address.
    'http.proxy=',
    'credential.helper=',
    'core.askPass=',
    'submodule.recurse=false',
    'fetch.recurseSubmodules=false',
    'advice.detachedHead=false',
    'init.defaultBranch=main',
  ];
  // An IP literal needs no resolution; a name is pinned to the address checked by net-guard.
  if (source.kind === 'remote' && source.host !== source.address) {
    const address = source.address.includes(':') ? `[${source.address}]` : source.address;
    settings.push(`http.curloptResolve=${source.host}:${source.port}:${address}`);
  }
  return settings.flatMap((s) => ['-c', s]);
}

/** A fresh environment: nothing of the worker's (proxies, GIT_DIR, GIT_SSH_COMMAND, tokens) leaks in. */
function gitEnvironment(home: string, scheme: string, authorization: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: home,
    LC_ALL: 'C', // English messages: errors are classified from stderr
    GIT_CEILING_DIRECTORIES: path.dirname(home),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_PROTOCOL_FROM_USER: '0',
    GIT_ALLOW_PROTOCOL: scheme,
    GIT_LFS_SKIP_SMUDGE: '1',
  };
  if (authorization !== undefined) {
    // Environment-borne config: visible to git and its helpers only, never in /proc/<pid>/cmdline.
    Object.assign(env, { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'http.extraHeader', GIT_CONFIG_VALUE_0: `Authorization: ${authorization}` });
  }
  return env;
}

interface RunnerContext {
  home: string;
  config: string[];
  env: NodeJS.ProcessEnv;
  deadline: number;
  timeoutMs: number;
  dest: string;
  maxBytes: number;
  secrets: string[];
  signal: AbortSignal | undefined;
}

/** Returns a function running one git command (stdout on success), all sharing one deadline. */
function runner(ctx: RunnerContext): (args: string[], cwd: string) => Promise<string> {
  return (args, cwd) =>
    new Promise<string>((resolve, reject) => {
      if (ctx.signal?.aborted === true) return reject(abortReason(ctx.signal));
      const remaining = ctx.deadline - Date.now();
      if (remaining <= 0) return reject(timedOut(ctx.timeoutMs));
      // detached: git gets its own process group, so killing it also stops remote-https and index-pack.
      const child = spawn('git', [...ctx.config, ...args], { cwd, env: ctx.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let stopReason: 'timeout' | 'too-large' | 'aborted' | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      let finished = false;

      const stop = (reason: NonNullable<typeof stopReason>) => {
        if (stopReason !== undefined || finished) return;
        stopReason = reason;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      };
      const timer = setTimeout(() => stop('timeout'), remaining);
      const onAbort = () => stop('aborted');
      ctx.signal?.addEventListener('abort', onAbort, { once: true });

      // Size watchdog: one walk at a time, the next one scheduled after the previous finished and
      // spaced by a multiple of its duration, so walking a repository with many loose objects never
      // competes with git for most of the time (it spends at most a fifth of the wall clock walking).
      const watch = (pause: number) => {
        watchdog = setTimeout(() => {
          const started = Date.now();
          const next = () => watch(Math.max(WATCHDOG_INTERVAL_MS, 4 * (Date.now() - started)));
          directorySize(ctx.dest).then(
            (bytes) => {
              if (bytes > ctx.maxBytes) stop('too-large');
              else if (!finished) next();
            },
            () => !finished && next(),
          );
        }, pause);
      };
      watch(WATCHDOG_INTERVAL_MS);

      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-8 * STDERR_TAIL_CHARS);
      });
      const settle = (error: Error | undefined) => {
        finished = true;
        clearTimeout(timer);
        clearTimeout(watchdog);
        ctx.signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve(stdout);
      };
      child.on('error', (err) => settle(new GitFetchError('failed', `git could not be started: ${err.message}`)));
      child.on('close', (code) => {
        if (stopReason === 'aborted') return settle(abortReason(ctx.signal));
        if (stopReason === 'timeout') return settle(timedOut(ctx.timeoutMs));
        if (stopReason === 'too-large') return settle(tooLarge(ctx.maxBytes));
        if (code === 0) return settle(undefined);
        settle(classify(args[0] ?? 'git', redact(stderr, ctx.secrets)));
      });
    });
}

function classify(command: string, stderr: string): GitFetchError {
  const tail = stderr.trim().slice(-STDERR_TAIL_CHARS);
  if (/Authentication failed|could not read (Username|Password)|terminal prompts disabled|returned error: 40[13]\b/i.test(stderr)) {
    return new GitFetchError('auth-failed', 'The git server refused the credentials (or needs some): check the project\'s token.', tail);
  }
  if (/not found|returned error: 404\b|does not appear to be a git repository|couldn't find remote ref|not our ref|Could not find remote branch|did not match any|no such ref|unadvertised object|upload-pack: not our ref/i.test(stderr)) {
    return new GitFetchError('not-found', 'The repository, branch, tag or commit was not found.', tail);
  }
  if (/returned error: 30[12378]\b/.test(stderr)) {
    return new GitFetchError('failed', 'The git server answered with a redirect, which is not followed: use the final repository URL.', tail);
  }
  return new GitFetchError('failed', `git ${command} failed.`, tail);
}

function redact(text: string, secrets: string[]): string {
  let result = text;
  for (const secret of secrets) result = result.split(secret).join('[redacted]');
  return result;
}

function timedOut(timeoutMs: number): GitFetchError {
  return new GitFetchError('timeout', `The git fetch did not finish within ${Math.round(timeoutMs / 1000)} s.`);
}

function tooLarge(maxBytes: number): GitFetchError {
  return new GitFetchError('too-large', `The repository is larger than the ${maxBytes}-byte limit (SCAN_MAX_REPOSITORY_BYTES).`);
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new DOMException('The git fetch was aborted.', 'AbortError');
}

/** Bytes of regular files under `dir` (0 while it does not exist yet); symlinks are not followed. */
async function directorySize(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await directorySize(full);
    else if (entry.isFile()) total += await lstat(full).then((s) => s.size, () => 0);
  }
  return total;
}
