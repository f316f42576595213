import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';

/**
 * The files a scan reads, whatever holds them: a directory on disk (an extracted upload, below)
 * or a commit in a git repository, read from its object store without a checkout
 * (lib/git-tree.ts). Paths are relative with forward slashes; a directory is named '' (the
 * root) or by a path ending with '/'.
 */

export interface TreeEntry {
  name: string;
  type: 'directory' | 'file' | 'symlink' | 'other';
}

/** What a listed file turned out to be: a regular file's size and first bytes, unless it is larger than asked. */
export type FileHead =
  /** `objectId`: the git blob, so that `read` finds it again without the listing. */
  | { type: 'file'; bytes: number; head: Buffer; objectId?: string }
  | { type: 'too-large'; bytes: number }
  | { type: 'symlink' }
  /** Not a regular file any more (a FIFO, socket or device is no text to analyze). */
  | { type: 'other'; bytes: number }
  /** Listed but cannot be opened by its name (one that is not UTF-8, no permission): reading it fails too. */
  | { type: 'unreadable' };

export interface TreeFile {
  path: string;
  /** As `head` gave it (git trees): read without looking the path up. */
  objectId?: string | null;
}

export interface SourceTree {
  list(directory: string): Promise<TreeEntry[]>;
  /** Never follows a symlink; reads at most `headBytes`, and nothing of a file over `maxBytes`. */
  head(file: string, headBytes: number, maxBytes: number): Promise<FileHead>;
  /** The whole file; errors name it by its path in the tree, never by where the tree is kept. */
  read(file: TreeFile): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Errors opening a listed file which say that it cannot be read, not that the walk went wrong: a
 * name that is not UTF-8 (the listing cannot name it back: ENOENT), or no permission.
 */
const unreadableFileErrors = new Set(['ENOENT', 'EACCES', 'EPERM']);

/** A directory on disk. Files are opened without following symlinks, so one swapped in after the listing is refused. */
export function directoryTree(root: string): SourceTree {
  const absoluteRoot = path.resolve(root);
  const inside = (relative: string) => {
    const full = path.resolve(absoluteRoot, relative);
    if (full !== absoluteRoot && !full.startsWith(absoluteRoot + path.sep)) throw new Error(`${relative} is outside the tree`);
    return full;
  };
  // O_NONBLOCK: should the path have become a FIFO, opening it must not hang the scan.
  const openFile = (relative: string) => open(inside(relative), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  return {
    async list(directory) {
      return (await readdir(inside(directory), { withFileTypes: true })).map((entry) => ({
        name: entry.name,
        type: entry.isDirectory() ? 'directory' : entry.isSymbolicLink() ? 'symlink' : entry.isFile() ? 'file' : 'other',
      }));
    },
    async head(file, headBytes, maxBytes) {
      const handle = await openFile(file).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (code === 'ELOOP') return 'symlink' as const;
        if (unreadableFileErrors.has(code)) return 'unreadable' as const;
        throw err;
      });
      if (handle === 'symlink' || handle === 'unreadable') return { type: handle };
      try {
        const stats = await handle.stat();
        if (!stats.isFile()) return { type: 'other', bytes: stats.size };
        if (stats.size > maxBytes) return { type: 'too-large', bytes: stats.size };
        const buffer = Buffer.alloc(Math.min(headBytes, stats.size));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        return { type: 'file', bytes: stats.size, head: buffer.subarray(0, bytesRead) };
      } finally {
        await handle.close();
      }
    },
    async read(file) {
      try {
        const handle = await openFile(file.path);
        try {
          return await handle.readFile();
        } finally {
          await handle.close();
        }
      } catch (err) {
        // The message names the file by its path in the tree, not by where this worker keeps trees.
        throw new Error((err as Error).message.split(`${absoluteRoot}${path.sep}`).join(''), { cause: err });
      }
    },
    async close() {},
  };
}
