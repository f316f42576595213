import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { selectFiles } from '../../lib/file-selection';
import { directoryTree } from '../../lib/source-tree';

/**
 * A large source tree nobody here wrote, for the scan benchmark (not a benchmark itself:
 * .ci/run runs only bench/*.ts): packages of the project's own node_modules, copied under
 * `copy-<n>/` (n > 1 when one copy holds fewer selectable files than asked for), committed to a
 * git repository that a scan fetches through a `file://` URL.
 *
 * Left out of the copy, because a scan of the repository and a scan of the working tree would
 * see them differently or not at all: symbolic links (a clone checks them out as small text
 * files, core.symlinks=false), nested `.git` directories, and files over `maxFileBytes` (never
 * analyzed: `too-large`; mostly native binaries, which would only make git slow).
 */

const execFileAsync = promisify(execFile);
const repoRoot = path.resolve(__dirname, '../..');

export interface Corpus {
  /** The git working tree (also what the in-process baseline reads). */
  root: string;
  /** `file://` URL of the repository. */
  url: string;
  /** Regular files and their bytes in the committed tree. */
  files: number;
  bytes: number;
  /** Files a scan selects, as predicted from node_modules (the scan counts its own). */
  selectable: number;
  /** Packages copied, and how many copies of node_modules (the last one partial) that took. */
  packages: number;
  copies: number;
}

/** Top-level packages of node_modules (`name` or `@scope/name`); hidden entries (`.bin`, `.cache`) left out. */
async function packagesOf(nodeModules: string): Promise<string[]> {
  const units: string[] = [];
  for (const entry of await readdir(nodeModules, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || !entry.isDirectory()) continue;
    if (entry.name.startsWith('@')) {
      for (const inner of await readdir(path.join(nodeModules, entry.name), { withFileTypes: true })) {
        if (inner.isDirectory()) units.push(`${entry.name}/${inner.name}`);
      }
    } else {
      units.push(entry.name);
    }
  }
  return units;
}

const packageOf = (relative: string) => {
  const parts = relative.split('/');
  return parts[0]?.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? '');
};

async function git(cwd: string, ...args: string[]): Promise<string> {
  const env = {
    PATH: process.env.PATH,
    HOME: cwd,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Bench',
    GIT_AUTHOR_EMAIL: 'bench@example.test',
    GIT_COMMITTER_NAME: 'Bench',
    GIT_COMMITTER_EMAIL: 'bench@example.test',
  };
  return (await execFileAsync('git', args, { cwd, env, maxBuffer: 64 * 1024 * 1024 })).stdout.trim();
}

/**
 * Copies packages of node_modules into `<dest>` (in a fixed shuffled order, node_modules over again when
 * one copy is not enough) until a scan would select at least `selectable` files, then commits
 * the tree (every file, `.gitignore`d or not: selection applies the ignore files itself) and
 * packs the repository, as a hosting server keeps it.
 */
export async function buildNodeModulesCorpus(opts: { dest: string; selectable: number; maxFileBytes: number }): Promise<Corpus> {
  const nodeModules = path.join(repoRoot, 'node_modules');
  const selection = await selectFiles(directoryTree(nodeModules), { maxFileBytes: opts.maxFileBytes, maxFiles: 10_000_000 });
  const selectableIn = new Map<string, number>();
  for (const file of selection.files) selectableIn.set(packageOf(file.path), (selectableIn.get(packageOf(file.path)) ?? 0) + 1);
  if (selection.files.length === 0) throw new Error(`${nodeModules} holds no file a scan would select`);
  // In an order that mixes the alphabet (a small corpus is then a sample of many kinds of package, not of @aws-sdk).
  const units = (await packagesOf(nodeModules))
    .map((unit) => ({ unit, key: createHash('sha256').update(unit).digest('hex') }))
    .sort((a, b) => (a.key < b.key ? -1 : 1))
    .map((u) => u.unit);

  await mkdir(opts.dest, { recursive: true });
  let selectable = 0;
  let files = 0;
  let bytes = 0;
  let packages = 0;
  let copies = 0;
  const keep = async (source: string): Promise<boolean> => {
    const stats = await lstat(source);
    if (stats.isSymbolicLink()) return false;
    if (stats.isDirectory()) return path.basename(source) !== '.git';
    if (!stats.isFile() || stats.size > opts.maxFileBytes) return false;
    files += 1;
    bytes += stats.size;
    return true;
  };
  while (selectable < opts.selectable) {
    copies += 1;
    for (const unit of units) {
      if (selectable >= opts.selectable) break;
      await cp(path.join(nodeModules, unit), path.join(opts.dest, `copy-${copies}`, unit), { recursive: true, filter: keep, errorOnExist: true });
      selectable += selectableIn.get(unit) ?? 0;
      packages += 1;
    }
  }

  await git(opts.dest, 'init', '--quiet', '--initial-branch=main', '.');
  await git(opts.dest, 'add', '--all', '--force', '.');
  await git(opts.dest, 'commit', '--quiet', '--no-verify', '-m', 'node_modules corpus');
  await git(opts.dest, 'repack', '-a', '-d', '--quiet');
  return { root: opts.dest, url: pathToFileURL(opts.dest).href, files, bytes, selectable, packages, copies };
}
