import path from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { inOrder } from './in-order';
import type { SourceTree, TreeEntry } from './source-tree';

/**
 * Which files of a tree (lib/source-tree.ts) a scan analyzes, and why each other file is passed over.
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
  /** The git blob, in a git tree: reading it again needs no listing. */
  objectId?: string;
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
/** Files read at once: enough to keep the disk (or git) busy, few enough to stay far from the fd limit. */
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
  objectId?: string;
}

/**
 * A file's size and first bytes decide. One that is listed but cannot be opened (a name that is
 * not UTF-8, no permission) is selected all the same (size unknown), so that its analysis fails
 * and the scan reports it as a warning instead of failing whole.
 */
async function inspectFile(tree: SourceTree, relativePath: string, maxFileBytes: number): Promise<FileVerdict> {
  const file = await tree.head(relativePath, HEAD_BYTES, maxFileBytes);
  switch (file.type) {
    case 'symlink':
      return { reason: 'symlink', bytes: 0, firstLine: '' };
    case 'unreadable':
      return { reason: null, bytes: 0, firstLine: '' };
    case 'other':
      return { reason: 'binary', bytes: file.bytes, firstLine: '' };
    case 'too-large':
      return { reason: 'too-large', bytes: file.bytes, firstLine: '' };
  }
  if (looksBinary(file.head)) return { reason: 'binary', bytes: file.bytes, firstLine: '' };
  const lines = file.head.toString('utf8').split('\n', MARKER_LINES);
  if (lines.some((line) => generatedMarkers.some((marker) => line.includes(marker)))) return { reason: 'generated', bytes: file.bytes, firstLine: '' };
  return { reason: null, bytes: file.bytes, firstLine: (lines[0] ?? '').replace(/\r$/, ''), objectId: file.objectId };
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
const sortKey = (entry: TreeEntry) => (entry.type === 'directory' ? `${entry.name}/` : entry.name);
const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A `.gitignore`'s text; null for one that is not a regular file or larger than any real one (disregarded). */
async function readGitignore(tree: SourceTree, relativePath: string): Promise<string | null> {
  const file = await tree.head(relativePath, MAX_GITIGNORE_BYTES, MAX_GITIGNORE_BYTES);
  return file.type === 'file' ? file.head.toString('utf8') : null;
}

/** Yields files to inspect and paths skipped by name, in sorted order, never descending into skipped directories. */
async function* walk(tree: SourceTree, projectRules: Ignore | null): AsyncGenerator<WalkItem> {
  const stack: WalkItem[] = [{ kind: 'directory', relativePath: '', scopes: [] }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (item.kind !== 'directory') {
      yield item;
      continue;
    }
    const entries = await tree.list(item.relativePath);
    let scopes = item.scopes;
    const gitignore = entries.find((entry) => entry.name === '.gitignore' && entry.type === 'file');
    if (gitignore) {
      const text = await readGitignore(tree, `${item.relativePath}.gitignore`);
      if (text !== null) scopes = [...scopes, { base: item.relativePath, rules: ignore({ ignorecase: false }).add(text) }];
    }
    // The project's patterns apply last, so they win over every .gitignore.
    const allScopes = projectRules ? [...scopes, { base: '', rules: projectRules }] : scopes;

    const children: WalkItem[] = [];
    for (const entry of entries.sort((a, b) => byCodeUnits(sortKey(a), sortKey(b)))) {
      const relativePath = item.relativePath + entry.name;
      if (entry.type === 'directory') {
        const reason = isIgnored(`${relativePath}/`, allScopes) ? 'ignored' : reasonForDirectoryName(entry.name);
        children.push(reason ? { kind: 'skip', relativePath: `${relativePath}/`, reason } : { kind: 'directory', relativePath: `${relativePath}/`, scopes });
        continue;
      }
      const reason = isIgnored(relativePath, allScopes)
        ? 'ignored'
        : (reasonForFileName(entry.name) ?? (entry.type === 'symlink' ? 'symlink' : hasBinaryExtension(entry.name) ? 'binary' : null));
      children.push(reason ? { kind: 'skip', relativePath, reason } : { kind: 'file', relativePath });
    }
    for (const child of children.reverse()) stack.push(child);
  }
}

export async function selectFiles(tree: SourceTree, options: SelectionOptions): Promise<Selection> {
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

  const inspected = inOrder(walk(tree, projectRules), READ_CONCURRENCY, async (item) => ({
    item,
    verdict: item.kind === 'file' && !full ? await inspectFile(tree, item.relativePath, options.maxFileBytes) : null,
  }));
  for await (const { item, verdict } of inspected) {
    if (item.kind === 'skip') skip(item.relativePath, item.reason);
    else if (item.kind !== 'file') continue;
    else if (full || !verdict) skip(item.relativePath, 'limit');
    else if (verdict.reason) skip(item.relativePath, verdict.reason);
    else {
      files.push({ path: item.relativePath, language: languageOf(item.relativePath, verdict.firstLine), bytes: verdict.bytes, objectId: verdict.objectId });
      full = files.length >= options.maxFiles;
    }
  }
  return { files, skipped, skippedCount };
}
