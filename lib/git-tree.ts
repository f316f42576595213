import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { FileHead, SourceTree, TreeEntry } from './source-tree';

/**
 * A commit of a fetched repository (lib/git-fetch.ts), read straight from its object store: the
 * listing from `git ls-tree`, contents from one long-lived `git cat-file --batch`. Nothing is
 * checked out — writing tens of thousands of files to disk cost a large scan more than analyzing
 * them, and a tree that is never written cannot plant anything on the worker's disk. Symlinks
 * are listed as such (never read), submodules not at all (they are not fetched).
 */

const OBJECT_ID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

interface GitFile {
  objectId: string;
  bytes: number;
  type: 'file' | 'symlink';
  /** False when the path is not UTF-8: listed by its name with U+FFFD, which is not its own. */
  nameIsUtf8: boolean;
}

interface Listing {
  directories: Map<string, Map<string, TreeEntry>>;
  files: Map<string, GitFile>;
}

/** Read-only git in the repository: no system or user config, no hooks, no fsmonitor, no repository discovery. */
function localGit(gitDir: string): { env: NodeJS.ProcessEnv; config: string[] } {
  return {
    env: {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: gitDir,
      XDG_CONFIG_HOME: gitDir,
      GIT_DIR: gitDir,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      LC_ALL: 'C',
    },
    config: ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false'],
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodePath(bytes: Buffer): { path: string; nameIsUtf8: boolean } {
  try {
    return { path: utf8.decode(bytes), nameIsUtf8: true };
  } catch {
    return { path: bytes.toString('utf8'), nameIsUtf8: false };
  }
}

/** Builds the listing from the records of `git ls-tree -r -l -z --full-tree`: "<mode> <type> <object> <size>\t<path>" per blob or submodule. */
class ListingBuilder {
  readonly listing: Listing = { directories: new Map([['', new Map<string, TreeEntry>()]]), files: new Map() };

  add(record: Buffer): void {
    const tab = record.indexOf(9);
    if (tab < 0) return;
    const [mode, type, objectId, size] = record.toString('latin1', 0, tab).trim().split(/\s+/);
    // Submodules (type commit) are not fetched: nothing of them is in the tree.
    if (type !== 'blob' || objectId === undefined || !OBJECT_ID.test(objectId)) return;
    const { directories, files } = this.listing;
    const { path, nameIsUtf8 } = decodePath(record.subarray(tab + 1));
    const parts = path.split('/');
    let directory = '';
    for (const part of parts.slice(0, -1)) {
      const child = `${directory}${part}/`;
      if (!directories.has(child)) {
        directories.set(child, new Map());
        directories.get(directory)?.set(part, { name: part, type: 'directory' });
      }
      directory = child;
    }
    const fileType = mode === '120000' ? 'symlink' : 'file';
    const name = parts[parts.length - 1] ?? '';
    directories.get(directory)?.set(name, { name, type: fileType });
    files.set(path, { objectId, bytes: Number(size), type: fileType, nameIsUtf8 });
  }
}

/** The commit's listing, parsed as git streams it (a tree of 100k files lists about 10 MB). */
function listTree(gitDir: string, commit: string): Promise<Listing> {
  const { env, config } = localGit(gitDir);
  return new Promise((resolve, reject) => {
    const child = spawn('git', [...config, 'ls-tree', '-r', '-l', '-z', '--full-tree', commit], { cwd: gitDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const builder = new ListingBuilder();
    let rest = Buffer.alloc(0);
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const data = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk;
      let start = 0;
      for (let end = data.indexOf(0, start); end >= 0; end = data.indexOf(0, start)) {
        builder.add(data.subarray(start, end));
        start = end + 1;
      }
      rest = Buffer.from(data.subarray(start));
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
    child.on('error', (err) => reject(new Error(`git ls-tree could not be started: ${err.message}`)));
    child.on('close', (code) => (code === 0 ? resolve(builder.listing) : reject(new Error(`git ls-tree failed: ${stderr.trim()}`))));
  });
}

interface Waiter {
  resolve: (content: Buffer) => void;
  reject: (error: Error) => void;
  /** Bytes of the object wanted: the rest is skipped as it streams past, never held. */
  limit: number;
}

/**
 * Reads answered in order by one `git cat-file --batch`, whose output is parsed as it streams in:
 * each object's bytes are copied once, into a buffer of the size wanted.
 */
class ObjectReader {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private readonly waiting: Waiter[] = [];
  /** A header line not yet complete. */
  private partialHeader = Buffer.alloc(0);
  /** The object streaming in: what is kept of it, and its bytes still to come (with the trailing line feed). */
  private body: { waiter: Waiter | undefined; type: string; objectId: string; content: Buffer; filled: number; remaining: number } | null = null;
  private failure: Error | null = null;
  private stderr = '';
  private readonly closed: Promise<void>;

  constructor(gitDir: string) {
    const { env, config } = localGit(gitDir);
    this.child = spawn('git', [...config, 'cat-file', '--batch'], { cwd: gitDir, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (chunk: Buffer) => this.receive(chunk));
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-2000)));
    // A write after git died fails with EPIPE; the close below rejects what waits.
    this.child.stdin.on('error', () => undefined);
    this.closed = new Promise((resolve) => {
      this.child.on('error', (err) => this.fail(new Error(`git cat-file could not be started: ${err.message}`)));
      this.child.on('close', () => {
        this.fail(new Error(`git cat-file ended${this.stderr ? `: ${this.stderr.trim()}` : ''}`));
        resolve();
      });
    });
  }

  /** The blob's bytes, or its first `limit` bytes. */
  read(objectId: string, limit = Number.POSITIVE_INFINITY): Promise<Buffer> {
    if (!OBJECT_ID.test(objectId)) return Promise.reject(new Error(`"${objectId}" is not a git object id`));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject, limit });
      this.child.stdin.write(`${objectId}\n`);
    });
  }

  async close(): Promise<void> {
    this.child.stdin.end();
    await this.closed;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.body?.waiter?.reject(this.failure);
    this.body = null;
    for (let waiter = this.waiting.shift(); waiter; waiter = this.waiting.shift()) waiter.reject(this.failure);
  }

  private receive(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      const body = this.body;
      if (body) {
        const take = Math.min(body.remaining, chunk.length - offset);
        const copied = Math.min(take, body.content.length - body.filled);
        if (copied > 0) body.filled += chunk.copy(body.content, body.filled, offset, offset + copied);
        body.remaining -= take;
        offset += take;
        if (body.remaining === 0) {
          this.body = null;
          if (body.type === 'blob') body.waiter?.resolve(body.content);
          else body.waiter?.reject(new Error(`git object ${body.objectId} is a ${body.type}, not a file`));
        }
        continue;
      }
      const lineEnd = chunk.indexOf(10, offset);
      if (lineEnd < 0) {
        this.partialHeader = Buffer.concat([this.partialHeader, chunk.subarray(offset)]);
        return;
      }
      const header = Buffer.concat([this.partialHeader, chunk.subarray(offset, lineEnd)]).toString('latin1');
      this.partialHeader = Buffer.alloc(0);
      offset = lineEnd + 1;
      // "<object> <type> <size>", or "<object> missing"
      const [objectId = '', type = '', size] = header.split(' ');
      const waiter = this.waiting.shift();
      if (size === undefined || !/^\d+$/.test(size)) {
        waiter?.reject(new Error(`git object ${objectId} is ${type || 'unreadable'}`));
        continue;
      }
      const bytes = Number(size);
      this.body = { waiter, type, objectId, content: Buffer.allocUnsafe(Math.min(bytes, waiter?.limit ?? 0)), filled: 0, remaining: bytes + 1 };
    }
  }
}

/** The commit's tree in the repository at `gitDir` (a bare repository, as lib/git-fetch leaves it). */
export function gitTree(gitDir: string, commit: string): SourceTree {
  if (!OBJECT_ID.test(commit)) throw new Error(`"${commit}" is not a commit id`);
  let listing: Promise<Listing> | undefined;
  let reader: ObjectReader | undefined;
  const listed = () => {
    listing ??= listTree(gitDir, commit);
    return listing;
  };
  const objects = () => (reader ??= new ObjectReader(gitDir));
  const fileOf = async (file: string): Promise<GitFile> => {
    const found = (await listed()).files.get(file);
    if (!found) throw new Error(`${file}: no such file in the tree`);
    return found;
  };
  return {
    async list(directory) {
      const entries = (await listed()).directories.get(directory);
      if (!entries) throw new Error(`${directory}: no such directory in the tree`);
      return [...entries.values()];
    },
    async head(file, headBytes, maxBytes): Promise<FileHead> {
      const found = await fileOf(file);
      if (found.type === 'symlink') return { type: 'symlink' };
      if (!found.nameIsUtf8) return { type: 'unreadable' };
      if (found.bytes > maxBytes) return { type: 'too-large', bytes: found.bytes };
      return { type: 'file', bytes: found.bytes, head: await objects().read(found.objectId, headBytes), objectId: found.objectId };
    },
    async read(file) {
      if (file.objectId) return objects().read(file.objectId);
      const found = await fileOf(file.path);
      if (found.type === 'symlink') throw new Error(`${file.path} is a symbolic link, which is never followed`);
      // Its contents are there, but a name with U+FFFD in it is not the file's own: two files could share it.
      if (!found.nameIsUtf8) throw new Error(`${file.path}: the file's name is not UTF-8, so it cannot be named faithfully`);
      return objects().read(found.objectId);
    },
    async close() {
      await reader?.close();
    },
  };
}
