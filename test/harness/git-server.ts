import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * A real git host on 127.0.0.1 for the scan tests: smart HTTP through `git http-backend` (CGI,
 * one process per request), serving the bare repositories under `reposRoot` by path
 * (`<url>/<name>.git`). Also a repository factory and a connection-counting canary.
 */

const execFileAsync = promisify(execFile);

export interface GitServerOptions {
  /** Answer 401 unless the request carries `Authorization: Bearer <token>` or Basic `x-access-token:<token>`. */
  requireToken?: string;
  /** Answer every request with a 302 to this base URL (the request path appended). */
  redirectTo?: string;
}

export interface GitServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Requests received so far. */
  readonly hits: number;
  /** `<METHOD> <path and query> auth=<yes|no>` per request: the Authorization header's presence, never its value. */
  requests: string[];
  /** Authorization header values seen (for token tests). */
  authorizations: string[];
  close(): Promise<void>;
}

export async function startGitServer(reposRoot: string, options: GitServerOptions = {}): Promise<GitServer> {
  const home = await mkdtemp(path.join(tmpdir(), 'auditflow-git-server-home-'));
  const requests: string[] = [];
  const authorizations: string[] = [];
  const expected =
    options.requireToken === undefined
      ? undefined
      : new Set([`Bearer ${options.requireToken}`, `Basic ${Buffer.from(`x-access-token:${options.requireToken}`).toString('base64')}`]);

  const server = http.createServer((req, res) => {
    const target = new URL(req.url ?? '/', 'http://git.invalid');
    let pathInfo: string;
    try {
      pathInfo = decodeURIComponent(target.pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const authorization = req.headers.authorization;
    requests.push(`${req.method ?? 'GET'} ${target.pathname}${target.search} auth=${authorization === undefined ? 'no' : 'yes'}`);
    if (authorization !== undefined) authorizations.push(authorization);

    if (options.redirectTo !== undefined) {
      res.writeHead(302, { Location: `${options.redirectTo}${target.pathname}${target.search}` }).end();
      return;
    }
    if (expected !== undefined && (authorization === undefined || !expected.has(authorization))) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end('authentication required\n');
      return;
    }
    serveCgi(req, res, { reposRoot, home, pathInfo, query: target.search.replace(/^\?/, '') });
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    get hits() {
      return requests.length;
    },
    requests,
    authorizations,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** Runs `git http-backend` as a CGI script for one request (RFC 3875 variables, body on stdin). */
function serveCgi(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  { reposRoot, home, pathInfo, query }: { reposRoot: string; home: string; pathInfo: string; query: string },
): void {
  const header = (name: string) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value.join(', ') : (value ?? '');
  };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_PROJECT_ROOT: reposRoot,
    GIT_HTTP_EXPORT_ALL: '1',
    // Like GitHub and GitLab: a client may fetch any commit reachable from a ref by its id.
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'uploadpack.allowReachableSHA1InWant',
    GIT_CONFIG_VALUE_0: 'true',
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: req.method ?? 'GET',
    PATH_INFO: pathInfo,
    QUERY_STRING: query,
    CONTENT_TYPE: header('content-type'),
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    HTTP_CONTENT_ENCODING: header('content-encoding'),
    HTTP_GIT_PROTOCOL: header('git-protocol'),
  };
  if (req.headers['content-length'] !== undefined) env.CONTENT_LENGTH = header('content-length');

  const cgi = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  req.pipe(cgi.stdin);
  cgi.stdin.on('error', () => undefined); // the backend may exit before reading everything
  let stderr = '';
  cgi.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  let head = Buffer.alloc(0);
  let headersSent = false;
  cgi.stdout.on('data', (chunk: Buffer) => {
    if (headersSent) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const crlf = head.indexOf('\r\n\r\n');
    const lf = head.indexOf('\n\n');
    const end = crlf !== -1 && (lf === -1 || crlf < lf) ? { at: crlf, length: 4 } : lf !== -1 ? { at: lf, length: 2 } : undefined;
    if (end === undefined) return;
    let status = 200;
    for (const line of head.subarray(0, end.at).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 200;
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    headersSent = true;
    res.write(head.subarray(end.at + end.length));
  });
  cgi.on('close', (code) => {
    if (!headersSent) {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`git http-backend failed (${code}): ${stderr}`);
      return;
    }
    res.end();
  });
}

export interface MadeRepository {
  bareDir: string;
  /** The commit of the default branch (main). */
  commit: string;
  /** The commit of each extra branch. */
  branchCommits: Record<string, string>;
}

export interface MakeRepositoryOptions {
  /** Extra branches, each one commit on top of main adding or changing these files. */
  branches?: Record<string, Record<string, string>>;
  /** Gitlinks (submodule entries) at these paths, pointing at these commit ids. */
  gitlinks?: Record<string, string>;
  /** Lightweight tags on main's commit. */
  tags?: string[];
  /** Symbolic links on main (path → link target). */
  symlinks?: Record<string, string>;
  /**
   * The paths in `files` are byte strings (each character code one byte, as latin1), for names
   * that are not UTF-8 (git checks them out byte for byte).
   */
  byteNames?: boolean;
}

/**
 * The environment of the git commands that build the test repositories: no system or user
 * configuration, a fixed author and committer, and a fixed date when given.
 */
export function testGitEnv(home: string, date?: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Test',
    GIT_AUTHOR_EMAIL: 'test@example.test',
    GIT_COMMITTER_NAME: 'Test',
    GIT_COMMITTER_EMAIL: 'test@example.test',
    ...(date === undefined ? {} : { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date }),
  };
}

/** Writes `files` under `work`, making directories as needed; with `byteNames`, their paths are byte strings. */
async function writeTree(work: string, files: Record<string, string>, byteNames = false): Promise<void> {
  const at = (file: string) => (byteNames ? Buffer.concat([Buffer.from(`${work}/`), Buffer.from(file, 'latin1')]) : path.join(work, file));
  for (const [file, content] of Object.entries(files)) {
    await mkdir(at(path.posix.dirname(file)), { recursive: true });
    await writeFile(at(file), content);
  }
}

/** Runs git in `work` with `env`; answers its trimmed standard output. */
function gitIn(work: string, env: NodeJS.ProcessEnv) {
  return async (...args: string[]) => (await execFileAsync('git', args, { cwd: work, env, maxBuffer: 64 * 1024 * 1024 })).stdout.trim();
}

/** Creates `<root>/<name>` (use a `.git` suffix) as a bare repository whose main branch has one commit with `files`. */
export async function makeRepository(root: string, name: string, files: Record<string, string>, options: MakeRepositoryOptions = {}): Promise<MadeRepository> {
  const work = await mkdtemp(path.join(tmpdir(), 'auditflow-repo-work-'));
  const git = gitIn(work, testGitEnv(work, '2024-01-01T00:00:00Z'));
  try {
    await git('init', '--quiet', '--initial-branch=main', '.');
    await writeTree(work, files, options.byteNames);
    for (const [at, target] of Object.entries(options.symlinks ?? {})) await symlink(target, path.join(work, at));
    await git('add', '--all');
    for (const [at, commit] of Object.entries(options.gitlinks ?? {})) {
      await git('update-index', '--add', '--cacheinfo', `160000,${commit},${at}`);
    }
    await git('commit', '--quiet', '--allow-empty', '-m', 'initial');
    const commit = await git('rev-parse', 'HEAD');
    for (const tag of options.tags ?? []) await git('tag', tag);
    const branchCommits: Record<string, string> = {};
    for (const [branch, changes] of Object.entries(options.branches ?? {})) {
      await git('checkout', '--quiet', '-b', branch, 'main');
      await writeTree(work, changes, options.byteNames);
      await git('add', '--all');
      await git('commit', '--quiet', '-m', `on ${branch}`);
      branchCommits[branch] = await git('rev-parse', 'HEAD');
    }
    await git('checkout', '--quiet', 'main');
    const bareDir = path.join(root, name);
    await mkdir(root, { recursive: true });
    await git('clone', '--quiet', '--bare', '--no-local', work, bareDir);
    return { bareDir, commit, branchCommits };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Pushes one commit to the main branch of the bare repository `bareDir` (dated a day after
 * `makeRepository`'s): each path written, or deleted when its content is null.
 */
export async function pushCommit(bareDir: string, changes: Record<string, string | null>): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), 'auditflow-repo-push-'));
  const git = gitIn(work, testGitEnv(work, '2024-01-02T00:00:00Z'));
  try {
    await git('clone', '--quiet', '--no-local', bareDir, '.');
    for (const [file, content] of Object.entries(changes)) {
      if (content === null) await rm(path.join(work, file));
      else await writeTree(work, { [file]: content });
    }
    await git('add', '--all');
    await git('commit', '--quiet', '-m', 'change');
    await git('push', '--quiet', 'origin', 'HEAD:main');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface Canary {
  port: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** Connections accepted so far. */
  hits(): number;
  close(): Promise<void>;
}

/**
 * A TCP listener on 127.0.0.1 that counts connections and never answers: the target of hostile
 * URLs (any hit is a failure) and a server that hangs (timeouts).
 */
export async function startCanary(): Promise<Canary> {
  let hits = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    hits += 1;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    hits: () => hits,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
