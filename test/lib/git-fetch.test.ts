import type * as ChildProcessModule from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { fetchGitRepository, GitFetchError, type GitFetchErrorCode, type GitFetchOptions } from '../../lib/git-fetch';
import { gitTree } from '../../lib/git-tree';
import { checkRemoteUrl, type CheckedSource } from '../../lib/net-guard';
import { makeRepository, startCanary, startGitServer, type Canary, type GitServer, type MadeRepository } from '../harness/git-server';

// The real module object (not an interop copy), so a spy sees the calls lib/git-fetch makes.
const childProcess = jest.requireActual<typeof ChildProcessModule>('node:child_process');

const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const loopback = { allowedHosts: ['127.0.0.1'], fileRoots: [] as string[] };

let dir: string;
let reposRoot: string;
let server: GitServer;
let canary: Canary;
let app: MadeRepository;
let destCount = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'git-fetch-'));
  reposRoot = path.join(dir, 'repos');
  canary = await startCanary();
  app = await makeRepository(
    reposRoot,
    'app.git',
    { 'README.md': '# app\n', 'src/index.js': 'console.log("main");\n' },
    { branches: { feature: { 'src/feature.js': 'export const feature = true;\n' } }, tags: ['v1.0.0'], symlinks: { 'passwd-link': '/etc/passwd' } },
  );
  server = await startGitServer(reposRoot);
});

afterAll(async () => {
  jest.restoreAllMocks();
  await server.close();
  await canary.close();
  await rm(dir, { recursive: true, force: true });
});

const nextDest = () => path.join(dir, `dest-${++destCount}`);
const options = (extra: Partial<GitFetchOptions> = {}): GitFetchOptions => ({ dest: nextDest(), timeoutMs: 30_000, maxBytes: 50 * 1024 * 1024, maxEntries: 1000, ...extra });

/** A file of the fetched commit, read from the repository's object store (nothing is checked out). */
async function fileAt(gitDir: string, commit: string, file: string): Promise<string> {
  const tree = gitTree(gitDir, commit);
  try {
    return (await tree.read({ path: file })).toString('utf8');
  } finally {
    await tree.close();
  }
}
const remote = (url: string) => checkRemoteUrl(url, loopback);

async function failure(promise: Promise<unknown>): Promise<GitFetchError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof GitFetchError) return err;
    throw err;
  }
  throw new Error('the fetch succeeded');
}

describe('fetchGitRepository over smart HTTP (git http-backend on 127.0.0.1)', () => {
  test('clones the default branch at depth 1, without tags, and reports the commit and size', async () => {
    const opts = options();
    const result = await fetchGitRepository(await remote(`${server.url}/app.git`), opts);
    expect(result.commit).toBe(app.commit);
    expect(result.bytes).toBeGreaterThan(0);
    expect(await fileAt(opts.dest, result.commit, 'src/index.js')).toContain('main');
    expect(await readFile(path.join(opts.dest, 'shallow'), 'utf8')).toContain(app.commit);
    expect(await readdir(path.join(opts.dest, 'refs/tags'))).toEqual([]);
    // No hook samples or other template files are copied in.
    await expect(readdir(path.join(opts.dest, 'hooks'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  test('checks nothing out: the destination is a bare repository, and a symlink is listed as a link that is never read', async () => {
    const opts = options();
    const { commit } = await fetchGitRepository(await remote(`${server.url}/app.git`), opts);
    expect(await readdir(opts.dest)).not.toEqual(expect.arrayContaining(['src', 'README.md', 'passwd-link']));
    expect(await readFile(path.join(opts.dest, 'config'), 'utf8')).toMatch(/bare = true/);
    const tree = gitTree(opts.dest, commit);
    try {
      expect(await tree.list('')).toContainEqual({ name: 'passwd-link', type: 'symlink' });
      expect(await tree.head('passwd-link', 100, 100)).toEqual({ type: 'symlink' });
      await expect(tree.read({ path: 'passwd-link' })).rejects.toThrow('symbolic link');
    } finally {
      await tree.close();
    }
  });

  test('clones a branch and a tag by name', async () => {
    const branch = options({ ref: 'feature' });
    expect((await fetchGitRepository(await remote(`${server.url}/app.git`), branch)).commit).toBe(app.branchCommits.feature);
    expect(await fileAt(branch.dest, app.branchCommits.feature!, 'src/feature.js')).toContain('feature');
    expect((await fetchGitRepository(await remote(`${server.url}/app.git`), options({ ref: 'v1.0.0' }))).commit).toBe(app.commit);
  });

  test('fetches a commit by its full sha', async () => {
    const sha = app.branchCommits.feature!;
    const opts = options({ ref: sha.toUpperCase() });
    expect((await fetchGitRepository(await remote(`${server.url}/app.git`), opts)).commit).toBe(sha);
    expect(await fileAt(opts.dest, sha, 'src/feature.js')).toContain('feature');
  });

  test('connects to the pinned address without resolving the host name again', async () => {
    // git.example.test does not resolve anywhere: the clone works only through http.curloptResolve.
    const port = Number(new URL(server.url).port);
    const pinned: CheckedSource = { kind: 'remote', url: new URL(`http://git.example.test:${port}/app.git`), host: 'git.example.test', port, address: '127.0.0.1' };
    expect((await fetchGitRepository(pinned, options())).commit).toBe(app.commit);
  });

  test('reports a missing repository or branch as not-found', async () => {
    expect((await failure(fetchGitRepository(await remote(`${server.url}/missing.git`), options()))).code).toBe('not-found');
    expect((await failure(fetchGitRepository(await remote(`${server.url}/app.git`), options({ ref: 'no-such-branch' })))).code).toBe('not-found');
  });

  test.each(['-x', '--upload-pack=touch /tmp/x', 'a..b', 'feature/../main', '.hidden', 'main.lock', 'ref with space', 'HEAD@{1}', 'a:b', ''])(
    'refuses the ref %j before running git',
    async (ref) => {
      const spawn = jest.spyOn(childProcess, 'spawn');
      try {
        expect((await failure(fetchGitRepository(await remote(`${server.url}/app.git`), options({ ref })))).code).toBe<GitFetchErrorCode>('invalid-ref');
        expect(spawn).not.toHaveBeenCalled();
      } finally {
        spawn.mockRestore();
      }
    },
  );

  test('does not recurse into submodules (the submodule URL is never contacted)', async () => {
    const gitmodules = `[submodule "vendor/lib"]\n\tpath = vendor/lib\n\turl = ${canary.url}/lib.git\n`;
    await makeRepository(reposRoot, 'with-submodule.git', { '.gitmodules': gitmodules, 'main.js': 'x\n' }, { gitlinks: { 'vendor/lib': app.commit } });
    const opts = options();
    const { commit } = await fetchGitRepository(await remote(`${server.url}/with-submodule.git`), opts);
    const tree = gitTree(opts.dest, commit);
    try {
      // The submodule is not in the tree at all (nor its directory).
      expect(await tree.list('')).toEqual(expect.arrayContaining([{ name: '.gitmodules', type: 'file' }, { name: 'main.js', type: 'file' }]));
      expect(await tree.list('')).toHaveLength(2);
    } finally {
      await tree.close();
    }
    expect(canary.hits()).toBe(0);
  });
});

describe('tokens', () => {
  let guarded: GitServer;
  beforeAll(async () => {
    guarded = await startGitServer(reposRoot, { requireToken: TOKEN });
  });
  afterAll(() => guarded.close());

  test('travel as an Authorization header (bearer or basic x-access-token), never in argv or the URL', async () => {
    const spawn = jest.spyOn(childProcess, 'spawn');
    try {
      const source = await remote(`${guarded.url}/app.git`);
      expect((await fetchGitRepository(source, options({ token: TOKEN }))).commit).toBe(app.commit);
      expect((await fetchGitRepository(source, options({ token: TOKEN, tokenScheme: 'basic-x-access-token' }))).commit).toBe(app.commit);
      expect(guarded.authorizations).toContain(`Bearer ${TOKEN}`);
      expect(guarded.authorizations).toContain(`Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`);
      expect(guarded.requests.every((r) => !r.includes(TOKEN))).toBe(true);

      // Our git commands (the server's `git http-backend` processes are spawned in this process too).
      const gitCalls = spawn.mock.calls.filter(([command, args]) => command === 'git' && !(args ?? []).includes('http-backend'));
      expect(gitCalls.length).toBeGreaterThanOrEqual(4);
      for (const [, args, spawnOptions] of gitCalls) {
        expect(JSON.stringify(args)).not.toContain(TOKEN);
        expect(JSON.stringify(args)).not.toContain(Buffer.from(`x-access-token:${TOKEN}`).toString('base64'));
        expect((spawnOptions as { env?: NodeJS.ProcessEnv }).env?.GIT_CONFIG_KEY_0).toBe('http.extraHeader');
      }
    } finally {
      spawn.mockRestore();
    }
  });

  test('a missing or wrong token fails with auth-failed, and the error never shows the token', async () => {
    const source = await remote(`${guarded.url}/app.git`);
    expect((await failure(fetchGitRepository(source, options()))).code).toBe('auth-failed');
    const wrong = await failure(fetchGitRepository(source, options({ token: `${TOKEN}-wrong` })));
    expect(wrong.code).toBe('auth-failed');
    expect(`${wrong.message} ${wrong.stderrTail} ${wrong.stack ?? ''}`).not.toContain(TOKEN);
  });
});

describe('limits', () => {
  test('redirects are not followed: the other host never sees a connection', async () => {
    const target = await startCanary();
    const redirecting = await startGitServer(reposRoot, { redirectTo: target.url });
    try {
      const error = await failure(fetchGitRepository(await remote(`${redirecting.url}/app.git`), options()));
      expect(error.code).toBe('failed');
      expect(error.message).toMatch(/redirect/);
      expect(redirecting.hits).toBeGreaterThan(0);
      expect(target.hits()).toBe(0);
    } finally {
      await redirecting.close();
      await target.close();
    }
  });

  test('a repository over the size cap fails with too-large', async () => {
    // 3 MB of incompressible content against a 1 MB cap.
    await makeRepository(reposRoot, 'big.git', { 'blob.bin': randomBytes(3 * 1024 * 1024).toString('base64') });
    const error = await failure(fetchGitRepository(await remote(`${server.url}/big.git`), options({ maxBytes: 1024 * 1024 })));
    expect(error.code).toBe('too-large');
  });

  test('a tree with more files than the cap fails with too-large, naming the limit', async () => {
    await makeRepository(reposRoot, 'many.git', Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`f${i}.txt`, `${i}\n`])));
    const error = await failure(fetchGitRepository(await remote(`${server.url}/many.git`), options({ maxEntries: 4 })));
    expect(error.code).toBe('too-large');
    expect(error.message).toContain('holds 5 files, more than the 4 allowed (SCAN_MAX_TREE_ENTRIES)');
    expect((await fetchGitRepository(await remote(`${server.url}/many.git`), options({ maxEntries: 5 }))).commit).toMatch(/^[0-9a-f]{40}$/);
  });

  test('a server that never answers fails with timeout', async () => {
    const silent = await startCanary();
    try {
      const error = await failure(fetchGitRepository(await remote(`${silent.url}/app.git`), options({ timeoutMs: 1000 })));
      expect(error.code).toBe('timeout');
      expect(silent.hits()).toBeGreaterThan(0);
    } finally {
      await silent.close();
    }
  });

  test('an abort signal stops the fetch', async () => {
    const silent = await startCanary();
    try {
      const controller = new AbortController();
      const fetching = fetchGitRepository(await remote(`${silent.url}/app.git`), options({ signal: controller.signal }));
      setTimeout(() => controller.abort(), 300);
      await expect(fetching).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      await silent.close();
    }
  });
});

describe('file:// sources', () => {
  test('clones a repository under an allowed root', async () => {
    const source = await checkRemoteUrl(pathToFileURL(app.bareDir).href, { allowedHosts: [], fileRoots: [reposRoot] });
    expect(source.kind).toBe('file');
    const opts = options();
    expect((await fetchGitRepository(source, opts)).commit).toBe(app.commit);
    expect(await fileAt(opts.dest, app.commit, 'README.md')).toBe('# app\n');
  });
});
