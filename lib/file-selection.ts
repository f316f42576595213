import { constants, type Dirent } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import ignore, { type Ignore } from 'ignore';

/**
 * Which files of a checked-out tree a scan analyzes, and why each other file is passed over.
 *
 * Rules, in the order they apply to each path:
 * 1. ignore patterns: every `.gitignore` in the tree (a nested one applies to its subtree and
 *    takes precedence over its parents, as in git), then the project's own patterns, which take
 *    precedence over the tree's (the project owner decides what is scanned; a repository cannot
 *    re-include what the project excluded) → `ignored`;
 * 2. vendored and generated paths by name (node_modules, dist, lockfiles, minified bundles, …)
 *    → `vendored` / `generated`;
 * 3. symlinks, never followed (one could point outside the tree) → `symlink`;
 * 4. binary by extension → `binary` (not read);
 * 5. larger than `maxFileBytes` → `too-large` (not read);
 * 6. the first 8 KiB read: binary content → `binary`, a generated-code marker → `generated`;
 * 7. once `maxFiles` files are selected, every later file that gets past step 4 → `limit`.
 *
 * An ignored, vendored or generated directory is skipped whole, as one entry whose path ends
 * with `/`: its content is never walked (node_modules alone can hold 100k files), and as in git a
 * file inside an ignored directory cannot be re-included.
 *
 * The walk visits paths in sorted order (code-unit order of the relative paths), so the
 * selection, and which files the limit cuts, is the same on every run.
 */

export type Language =
  | 'javascript'
  | 'typescript'
  | 'python'
  | 'java'
  | 'go'
  | 'php'
  | 'ruby'
  | 'shell'
  | 'c'
  | 'cpp'
  | 'csharp'
  | 'kotlin'
  | 'rust'
  | 'yaml'
  | 'json'
  | 'terraform'
  | 'dockerfile'
  | 'text'
  | 'other';

export interface SelectedFile {
  /** Relative to the root, with forward slashes. */
  path: string;
  language: Language;
  bytes: number;
}

export interface SkippedFile {
  /** Relative to the root, with forward slashes; a skipped directory's path ends with `/`. */
  path: string;
  reason: 'ignored' | 'vendored' | 'generated' | 'binary' | 'too-large' | 'symlink' | 'limit';
}

export interface SelectionOptions {
  maxFileBytes: number;
  maxFiles: number;
  /** The project's own ignore list, in gitignore syntax, relative to the root. */
  ignorePatterns?: string[];
}

export interface Selection {
  files: SelectedFile[];
  /** The first MAX_LISTED_SKIPPED skipped paths; `skippedCount` counts them all. */
  skipped: SkippedFile[];
  skippedCount: Record<SkippedFile['reason'], number>;
}

/** Bounds memory on huge trees: the rest are only counted. */
export const MAX_LISTED_SKIPPED = 1000;
/** How much of each file is read for the binary, generated-marker and shebang checks. */
const HEAD_BYTES = 8 * 1024;
/** Files read at once: enough to keep the disk busy, few enough to stay far from the fd limit. */
const READ_CONCURRENCY = 32;
/** A `.gitignore` larger than this is not a real one; it is disregarded rather than loaded. */
const MAX_GITIGNORE_BYTES = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Names

const vendoredDirectories = new Set(['node_modules', 'bower_components', 'jspm_packages', 'vendor', '.venv', 'venv', '.git', '.hg', '.svn']);
const generatedDirectories = new Set(['dist', 'build', 'out', 'target', 'coverage', '__pycache__', '.next', '.nuxt']);

const lockfiles = new Set([
  'package-lock.json',
  'npm-shrinkwrap.json',
  'yarn.lock',
  'pnpm-lock.yaml',
  'bun.lockb',
  'cargo.lock',
  'poetry.lock',
  'pipfile.lock',
  'uv.lock',
  'composer.lock',
  'gemfile.lock',
  'go.sum',
  'packages.lock.json',
]);
const generatedSuffixes = ['.min.js', '.min.mjs', '.min.cjs', '.min.css', '.map'];

const binaryExtensions = new Set(
  [
    // images, fonts, media
    'png', 'jpg', 'jpeg', 'gif', 'bmp', 'ico', 'icns', 'webp', 'tif', 'tiff', 'psd', 'avif', 'heic',
    'woff', 'woff2', 'ttf', 'otf', 'eot',
    'mp3', 'mp4', 'm4a', 'wav', 'ogg', 'flac', 'avi', 'mov', 'mkv', 'webm',
    // archives, documents
    'zip', 'gz', 'tgz', 'bz2', 'xz', 'zst', '7z', 'rar', 'tar', 'jar', 'war', 'ear', 'whl', 'egg', 'nupkg', 'gem',
    'pdf', 'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'odt', 'ods',
    // compiled code, databases
    'exe', 'dll', 'so', 'dylib', 'o', 'obj', 'a', 'lib', 'class', 'pyc', 'pyo', 'wasm', 'node', 'bin',
    'sqlite', 'sqlite3', 'db',
  ],
);

/** Extension (lower case, no dot) → language. */
const languageByExtension: Record<string, Language> = {
  js: 'javascript', mjs: 'javascript', cjs: 'javascript', jsx: 'javascript',
  ts: 'typescript', mts: 'typescript', cts: 'typescript', tsx: 'typescript',
  py: 'python', pyw: 'python', pyi: 'python',
  java: 'java',
  go: 'go',
  php: 'php', phtml: 'php',
  rb: 'ruby', rake: 'ruby', gemspec: 'ruby',
  sh: 'shell', bash: 'shell', zsh: 'shell', ksh: 'shell',
  c: 'c', h: 'c',
  cpp: 'cpp', cc: 'cpp', cxx: 'cpp', hpp: 'cpp', hh: 'cpp', hxx: 'cpp',
  cs: 'csharp',
  kt: 'kotlin', kts: 'kotlin',
  rs: 'rust',
  yml: 'yaml', yaml: 'yaml',
  json: 'json',
  tf: 'terraform', tfvars: 'terraform',
  dockerfile: 'dockerfile',
  txt: 'text', md: 'text', markdown: 'text', rst: 'text', adoc: 'text',
};

/** Whole file names (lower case) → language, for files known by name rather than extension. */
const languageByName: Record<string, Language> = {
  dockerfile: 'dockerfile',
  containerfile: 'dockerfile',
  gemfile: 'ruby',
  rakefile: 'ruby',
  '.bashrc': 'shell',
  '.bash_profile': 'shell',
  '.zshrc': 'shell',
  '.profile': 'shell',
};

/** Interpreter named by a shebang (version suffix removed) → language. */
const languageByInterpreter: Record<string, Language> = {
  python: 'python',
  node: 'javascript',
  nodejs: 'javascript',
  bun: 'javascript',
  deno: 'typescript',
  'ts-node': 'typescript',
  tsx: 'typescript',
  sh: 'shell',
  bash: 'shell',
  dash: 'shell',
  zsh: 'shell',
  ksh: 'shell',
  ruby: 'ruby',
  php: 'php',
};

/** The language of a file, from its name, else from the shebang in `firstLine`. */
export function languageOf(filePath: string, firstLine?: string): Language {
  const name = path.posix.basename(filePath.replaceAll('\\', '/')).toLowerCase();
  const dot = name.lastIndexOf('.');
  const known = languageByName[name] ?? (dot > 0 ? languageByExtension[name.slice(dot + 1)] : undefined);
  if (known) return known;
  if (name.startsWith('dockerfile.')) return 'dockerfile'; // Dockerfile.prod, Dockerfile.dev
  return (firstLine !== undefined && languageOfShebang(firstLine)) || 'other';
}

/** `#!/usr/bin/python3.11`, `#!/usr/bin/env -S node --flag`, `#! /bin/sh -e` → a language, or null. */
function languageOfShebang(firstLine: string): Language | null {
  if (!firstLine.startsWith('#!')) return null;
  const words = firstLine.slice(2).trim().split(/\s+/);
  let program = path.posix.basename(words[0] ?? '');
  if (program === 'env') {
    // The first word after `env` that is neither an option (`-S`) nor a VAR=value assignment.
    program = words.slice(1).find((word) => !word.startsWith('-') && !word.includes('=')) ?? '';
  }
  return languageByInterpreter[program.replace(/[\d.]+$/, '')] ?? null;
}

function reasonForDirectoryName(name: string): SkippedFile['reason'] | null {
  if (vendoredDirectories.has(name)) return 'vendored';
  if (generatedDirectories.has(name)) return 'generated';
  return null;
}

function reasonForFileName(name: string): SkippedFile['reason'] | null {
  const lower = name.toLowerCase();
  if (lower === '.git') return 'vendored'; // a worktree's pointer file
  if (lockfiles.has(lower) || generatedSuffixes.some((suffix) => lower.endsWith(suffix))) return 'generated';
  return null;
}

function hasBinaryExtension(name: string): boolean {
  const dot = name.lastIndexOf('.');
  return dot > 0 && binaryExtensions.has(name.slice(dot + 1).toLowerCase());
}

// ---------------------------------------------------------------------------------------------
// Content

/** How many leading lines may carry a generated-code marker (a license header may come first). */
const MARKER_LINES = 10;
const generatedMarkers = ['@generated', 'DO NOT EDIT', '<auto-generated'];

/**
 * Binary as git decides it (a NUL byte in the first 8,000 bytes), or when more than a tenth of
 * the bytes are control characters that text does not use.
 */
function looksBinary(head: Buffer): boolean {
  if (head.includes(0)) return true;
  let control = 0;
  for (const byte of head) {
    // Tab, line feed, form feed, carriage return, escape (ANSI colours) and backspace occur in text.
    if (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0c && byte !== 0x0d && byte !== 0x1b && byte !== 0x08) control++;
  }
  return control * 10 > head.length;
}

interface FileVerdict {
  reason: SkippedFile['reason'] | null;
  bytes: number;
  firstLine: string;
}

/**
 * Errors opening a file that listed in its directory which say the file cannot be read, not that
 * the walk went wrong: a name that is not UTF-8 (the listing cannot name it back: ENOENT), or no
 * permission. Such a file is selected all the same (size unknown), so that its analysis fails and
 * the scan reports it as a warning instead of failing whole.
 */
const unreadableFileErrors = new Set(['ENOENT', 'EACCES', 'EPERM']);

/** Reads a file's size and first bytes (refusing to follow a symlink swapped in since the walk saw a file). */
async function inspectFile(absolute: string, maxFileBytes: number): Promise<FileVerdict> {
  // O_NONBLOCK: should the path have become a FIFO, opening it must not hang the scan.
  const handle = await open(absolute, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'ELOOP') return 'symlink' as const;
    if (unreadableFileErrors.has(code)) return 'unreadable' as const;
    throw err;
  });
  if (handle === 'symlink') return { reason: 'symlink', bytes: 0, firstLine: '' };
  if (handle === 'unreadable') return { reason: null, bytes: 0, firstLine: '' };
  try {
    const stats = await handle.stat();
    // Not a regular file any more (a FIFO, socket or device is no text to analyze).
    if (!stats.isFile()) return { reason: 'binary', bytes: stats.size, firstLine: '' };
    if (stats.size > maxFileBytes) return { reason: 'too-large', bytes: stats.size, firstLine: '' };
    const buffer = Buffer.alloc(Math.min(HEAD_BYTES, stats.size));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const head = buffer.subarray(0, bytesRead);
    if (looksBinary(head)) return { reason: 'binary', bytes: stats.size, firstLine: '' };
    const lines = head.toString('utf8').split('\n', MARKER_LINES);
    if (lines.some((line) => generatedMarkers.some((marker) => line.includes(marker)))) return { reason: 'generated', bytes: stats.size, firstLine: '' };
    return { reason: null, bytes: stats.size, firstLine: (lines[0] ?? '').replace(/\r$/, '') };
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Walk

/** The rules of one `.gitignore`, for the paths below the directory it sits in. */
interface IgnoreScope {
  /** The directory's path relative to the root, '' for the root, else ending with '/'. */
  base: string;
  rules: Ignore;
}

/** Applies the scopes from the outermost to the innermost: the last scope with a matching rule decides. */
function isIgnored(relativePath: string, scopes: readonly IgnoreScope[]): boolean {
  let ignored = false;
  for (const scope of scopes) {
    const result = scope.rules.test(relativePath.slice(scope.base.length));
    if (result.ignored) ignored = true;
    else if (result.unignored) ignored = false;
  }
  return ignored;
}

/** A directory still to be read, with the `.gitignore` scopes of it and its ancestors, outermost first. */
interface PendingDirectory {
  kind: 'directory';
  relativePath: string;
  scopes: readonly IgnoreScope[];
}
type WalkItem = PendingDirectory | { kind: 'file'; relativePath: string } | { kind: 'skip'; relativePath: string; reason: SkippedFile['reason'] };

/**
 * Sorting each directory's entries by name, with a directory's name followed by '/', makes this
 * depth-first walk visit paths in the code-unit order of the full relative paths.
 */
const sortKey = (entry: Dirent) => (entry.isDirectory() ? `${entry.name}/` : entry.name);
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function readGitignore(absolute: string): Promise<string | null> {
  const handle = await open(absolute, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const stats = await handle.stat();
    if (!stats.isFile() || stats.size > MAX_GITIGNORE_BYTES) return null;
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** Yields files to inspect and paths skipped by name, in sorted order, never descending into skipped directories. */
async function* walk(root: string, projectRules: Ignore | null): AsyncGenerator<WalkItem> {
  const stack: WalkItem[] = [{ kind: 'directory', relativePath: '', scopes: [] }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item.kind !== 'directory') {
      yield item;
      continue;
    }
    const entries = await readdir(path.join(root, item.relativePath), { withFileTypes: true });
    let scopes = item.scopes;
    const gitignore = entries.find((entry) => entry.name === '.gitignore' && entry.isFile());
    if (gitignore) {
      const text = await readGitignore(path.join(root, item.relativePath, '.gitignore'));
      if (text !== null) scopes = [...scopes, { base: item.relativePath, rules: ignore({ ignorecase: false }).add(text) }];
    }
    // The project's patterns apply last, so they win over every .gitignore.
    const allScopes = projectRules ? [...scopes, { base: '', rules: projectRules }] : scopes;

    const children: WalkItem[] = [];
    for (const entry of entries.sort((a, b) => byCodeUnits(sortKey(a), sortKey(b)))) {
      const relativePath = item.relativePath + entry.name;
      if (entry.isDirectory()) {
        const reason = isIgnored(`${relativePath}/`, allScopes) ? 'ignored' : reasonForDirectoryName(entry.name);
        children.push(reason ? { kind: 'skip', relativePath: `${relativePath}/`, reason } : { kind: 'directory', relativePath: `${relativePath}/`, scopes });
        continue;
      }
      const reason = isIgnored(relativePath, allScopes)
        ? 'ignored'
        : (reasonForFileName(entry.name) ?? (entry.isSymbolicLink() ? 'symlink' : hasBinaryExtension(entry.name) ? 'binary' : null));
      children.push(reason ? { kind: 'skip', relativePath, reason } : { kind: 'file', relativePath });
    }
    for (const child of children.reverse()) stack.push(child);
  }
}

/**
 * Runs `inspect` on up to `concurrency` items at once and yields the results in input order.
 * Each promise gets a no-op catch when it starts, so one that fails while an earlier one is
 * awaited is not an unhandled rejection; its error is thrown when its turn comes.
 */
async function* inOrder<T, R>(items: AsyncIterable<T>, concurrency: number, inspect: (item: T) => Promise<R>): AsyncGenerator<R> {
  const window: Array<Promise<R>> = [];
  for await (const item of items) {
    const pending = inspect(item);
    pending.catch(() => undefined);
    window.push(pending);
    const next = window.length >= concurrency ? window.shift() : undefined;
    if (next) yield await next;
  }
  for (let next = window.shift(); next; next = window.shift()) yield await next;
}

export async function selectFiles(root: string, options: SelectionOptions): Promise<Selection> {
  const files: SelectedFile[] = [];
  const skipped: SkippedFile[] = [];
  const skippedCount: Selection['skippedCount'] = { ignored: 0, vendored: 0, generated: 0, binary: 0, 'too-large': 0, symlink: 0, limit: 0 };
  const skip = (relativePath: string, reason: SkippedFile['reason']) => {
    skippedCount[reason]++;
    if (skipped.length < MAX_LISTED_SKIPPED) skipped.push({ path: relativePath, reason });
  };
  const projectRules = options.ignorePatterns?.length ? ignore({ ignorecase: false }).add(options.ignorePatterns) : null;
  // Set when the limit is reached: files not yet started are then not read at all.
  let full = false;

  const absoluteRoot = path.resolve(root);
  const inspected = inOrder(walk(absoluteRoot, projectRules), READ_CONCURRENCY, async (item) => ({
    item,
    verdict: item.kind === 'file' && !full ? await inspectFile(path.join(absoluteRoot, item.relativePath), options.maxFileBytes) : null,
  }));
  for await (const { item, verdict } of inspected) {
    if (item.kind === 'skip') skip(item.relativePath, item.reason);
    else if (item.kind !== 'file') continue;
    else if (full || !verdict) skip(item.relativePath, 'limit');
    else if (verdict.reason) skip(item.relativePath, verdict.reason);
    else {
      files.push({ path: item.relativePath, language: languageOf(item.relativePath, verdict.firstLine), bytes: verdict.bytes });
      full = files.length >= options.maxFiles;
    }
  }
  return { files, skipped, skippedCount };
}
