import { constants as fsConstants } from 'node:fs';
import { mkdir, open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import yauzl, { type Entry, type ZipFile } from 'yauzl';

/**
 * Safe extraction of an uploaded ZIP (issue 6, criterion 2). Streaming (yauzl, one entry at a
 * time); every entry name is validated by us (no `..`, absolute paths, drive letters, backslash
 * tricks) and only regular files and directories are created, mode 0644/0755. Sizes in headers
 * are only used to fail fast: inflated bytes are counted while inflating, against the caps and
 * the declared size. Every `.git` entry at any depth (a directory, or a file that could redirect
 * git elsewhere) is dropped: git never runs on an upload, and no repository metadata (config,
 * hooks) survives extraction.
 *
 * On error, whatever was already written stays in `dest`: the caller extracts into its own
 * temporary directory and removes it in every case.
 */

export type ArchiveRejectionCode =
  | 'path-traversal'
  | 'absolute-path'
  | 'drive-letter'
  | 'symlink'
  | 'hardlink'
  | 'special-file'
  | 'duplicate-entry'
  | 'too-many-entries'
  | 'too-large'
  | 'ratio'
  | 'corrupt'
  | 'encrypted'
  | 'unsupported-compression';

export class ArchiveRejectedError extends Error {
  constructor(
    readonly code: ArchiveRejectionCode,
    message: string,
    /** The entry at fault, when there is one. */
    readonly entry?: string,
  ) {
    super(message);
    this.name = 'ArchiveRejectedError';
  }
}

export interface ZipLimits {
  /** `ZIP_MAX_ENTRIES`: entries in the central directory, files and directories alike. */
  maxEntries: number;
  /** `ZIP_MAX_INFLATED_BYTES`: total inflated bytes, declared and actual. */
  maxInflatedBytes: number;
  /** `ZIP_MAX_COMPRESSION_RATIO`: inflated / compressed, per entry and for the whole archive. */
  maxCompressionRatio: number;
  /** A single entry larger than this rejects the archive; unset, file selection skips big files instead. */
  maxFileBytes?: number;
}

/**
 * Inflated bytes allowed whatever the ratio, so small, very compressible files (a run of zeros,
 * a generated table) pass: the ratio cap only applies above this size.
 */
export const RATIO_FLOOR_BYTES = 1024 * 1024;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const FLAG_ENCRYPTED = 0x1;
const FLAG_STRONG_ENCRYPTION = 0x40;
const FLAG_UTF8 = 0x800;
const EXTRA_UNICODE_PATH = 0x7075;
const EXTRA_PKWARE_UNIX = 0x000d;

interface CheckedEntry {
  /** Normalised relative path ('/'-separated, no empty or '.' segments); '' for the root. */
  name: string;
  segments: string[];
  isDirectory: boolean;
  /** Under a `.git` directory (or one itself): dropped. */
  isGitMetadata: boolean;
}

/**
 * Reads the central directory only (no inflating): validates every entry's name, type,
 * encryption and compression method and the declared sizes against the limits, for a fast 413
 * or 422 at upload. Declared sizes can lie: `extractZip` counts the real bytes.
 */
export async function inspectZip(archive: string, limits: ZipLimits): Promise<{ entries: number; declaredBytes: number }> {
  const { size: archiveBytes } = await stat(archive);
  return withZip(archive, limits, async (zip) => {
    const budget = new DeclaredBudget(limits, archiveBytes);
    const paths = new PathRegistry();
    let entries = 0;
    for await (const entry of entriesOf(zip)) {
      entries += 1;
      const checked = checkEntry(entry);
      if (checked.isGitMetadata) continue;
      paths.add(checked);
      if (!checked.isDirectory) budget.add(entry, checked.name);
    }
    return { entries, declaredBytes: budget.declaredBytes };
  });
}

/**
 * Extracts `archive` into `dest` (created if absent; must not contain symlinks, e.g. a fresh
 * temporary directory). Files get mode 0644, directories 0755 (less the umask), whatever the
 * archive says.
 * Rejects the whole archive (`ArchiveRejectedError`) at the first hostile or broken entry.
 */
export async function extractZip(
  archive: string,
  dest: string,
  limits: ZipLimits,
  signal?: AbortSignal,
): Promise<{ files: number; bytes: number; droppedGitEntries: number }> {
  signal?.throwIfAborted();
  const { size: archiveBytes } = await stat(archive);
  await mkdir(dest, { recursive: true, mode: 0o755 });
  const root = await realpath(dest);
  return withZip(archive, limits, async (zip) => {
    const budget = new DeclaredBudget(limits, archiveBytes);
    const paths = new PathRegistry();
    const counter = { total: 0 };
    let files = 0;
    let droppedGitEntries = 0;
    for await (const entry of entriesOf(zip)) {
      signal?.throwIfAborted();
      const checked = checkEntry(entry);
      if (checked.isGitMetadata) {
        droppedGitEntries += 1;
        continue;
      }
      paths.add(checked);
      const target = path.join(root, ...checked.segments);
      if (target !== root && !target.startsWith(root + path.sep)) {
        throw new ArchiveRejectedError('path-traversal', `The entry "${checked.name}" would be written outside the destination.`, checked.name);
      }
      if (checked.isDirectory) {
        await mkdir(target, { recursive: true, mode: 0o755 }).catch(rethrowAsConflict(checked.name));
        continue;
      }
      budget.add(entry, checked.name);
      await mkdir(path.dirname(target), { recursive: true, mode: 0o755 }).catch(rethrowAsConflict(checked.name));
      await writeEntry(zip, entry, checked.name, target, limits, archiveBytes, counter, signal);
      files += 1;
    }
    return { files, bytes: counter.total, droppedGitEntries };
  });
}

/** Opens the archive lazily, checks the entry count, runs `body`, and always closes the file. */
async function withZip<T>(archive: string, limits: ZipLimits, body: (zip: ZipFile) => Promise<T>): Promise<T> {
  let zip: ZipFile;
  try {
    // decodeStrings: false — yauzl would reject bad names with generic errors; we decode and judge them ourselves.
    zip = await yauzl.openPromise(archive, { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: false });
  } catch (err) {
    throw asCorrupt(err);
  }
  zip.on('error', () => undefined); // errors reach us through eachEntry(); this only guards late ones
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new ArchiveRejectedError('too-many-entries', `The archive has ${zip.entryCount} entries; the limit is ${limits.maxEntries} (ZIP_MAX_ENTRIES).`);
    }
    return await body(zip);
  } finally {
    zip.close();
  }
}

async function* entriesOf(zip: ZipFile): AsyncGenerator<Entry> {
  const iterator = zip.eachEntry();
  while (true) {
    let next: IteratorResult<Entry>;
    try {
      next = await iterator.next();
    } catch (err) {
      throw asCorrupt(err);
    }
    if (next.done === true) return;
    yield next.value;
  }
}

/** Sums declared sizes and checks them (and the declared ratios) before anything is inflated. */
class DeclaredBudget {
  declaredBytes = 0;
  constructor(
    private readonly limits: ZipLimits,
    private readonly archiveBytes: number,
  ) {}

  add(entry: Entry, name: string): void {
    const declared = entry.uncompressedSize;
    this.declaredBytes += declared;
    if (this.limits.maxFileBytes !== undefined && declared > this.limits.maxFileBytes) {
      throw new ArchiveRejectedError('too-large', `The entry "${name}" declares ${declared} bytes; the limit per file is ${this.limits.maxFileBytes}.`, name);
    }
    if (this.declaredBytes > this.limits.maxInflatedBytes) {
      throw totalTooLarge(this.limits.maxInflatedBytes);
    }
    if (declared > ratioAllowance(entry.compressedSize, this.limits.maxCompressionRatio)) {
      throw entryRatio(name, this.limits.maxCompressionRatio);
    }
    if (this.declaredBytes > ratioAllowance(this.archiveBytes, this.limits.maxCompressionRatio)) {
      throw archiveRatio(this.limits.maxCompressionRatio);
    }
  }
}

/**
 * Paths seen so far: a second entry for the same file, a file where a directory was (or the
 * reverse) is refused up front, so extraction never depends on what is already on disk.
 */
class PathRegistry {
  private readonly files = new Set<string>();
  private readonly directories = new Set<string>();

  add(entry: CheckedEntry): void {
    const { name, segments } = entry;
    for (let i = 1; i < segments.length; i++) {
      const ancestor = segments.slice(0, i).join('/');
      if (this.files.has(ancestor)) throw collision(name);
      this.directories.add(ancestor);
    }
    if (name === '') return;
    if (entry.isDirectory) {
      if (this.files.has(name)) throw collision(name);
      this.directories.add(name);
    } else {
      if (this.files.has(name) || this.directories.has(name)) throw collision(name);
      this.files.add(name);
    }
  }
}

function collision(name: string): ArchiveRejectedError {
  return new ArchiveRejectedError('duplicate-entry', `The entry "${name}" collides with an earlier entry.`, name);
}

/** Validates one central-directory entry: name, type, encryption, compression method. */
function checkEntry(entry: Entry): CheckedEntry {
  const raw = entryName(entry);
  if (raw.includes('\0')) throw new ArchiveRejectedError('corrupt', 'An entry name contains a NUL character.');
  // Backslashes are separators for Windows-made archives: treat them as such, then judge the path.
  const name = raw.replace(/\\/g, '/');
  if (/^[A-Za-z]:/.test(name)) throw new ArchiveRejectedError('drive-letter', `The entry "${raw}" names a drive letter.`, raw);
  if (name.startsWith('/')) throw new ArchiveRejectedError('absolute-path', `The entry "${raw}" is an absolute path.`, raw);
  const parts = name.split('/');
  if (parts.includes('..')) throw new ArchiveRejectedError('path-traversal', `The entry "${raw}" climbs out of the archive ("..").`, raw);

  if ((entry.generalPurposeBitFlag & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) !== 0) {
    throw new ArchiveRejectedError('encrypted', `The entry "${raw}" is encrypted: upload an unencrypted archive.`, raw);
  }
  const mode = entry.externalFileAttributes >>> 16; // Unix st_mode, when the producer stored one
  const type = mode & S_IFMT;
  if (type === S_IFLNK) throw new ArchiveRejectedError('symlink', `The entry "${raw}" is a symbolic link.`, raw);
  if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) {
    throw new ArchiveRejectedError('special-file', `The entry "${raw}" is a device, FIFO or socket.`, raw);
  }
  // PKWARE's Unix extra field carries a link target after its 12 fixed bytes: a hard (or symbolic) link.
  if (entry.extraFields.some((f) => f.id === EXTRA_PKWARE_UNIX && f.data.length > 12)) {
    throw new ArchiveRejectedError('hardlink', `The entry "${raw}" is a link to another file.`, raw);
  }
  const isDirectory = name.endsWith('/') || type === S_IFDIR;
  if (!isDirectory && entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
    throw new ArchiveRejectedError('unsupported-compression', `The entry "${raw}" uses compression method ${entry.compressionMethod}; only stored and deflated entries are supported.`, raw);
  }
  const segments = parts.filter((p) => p !== '' && p !== '.');
  // Case-insensitively: ".GIT" is ".git" on case-insensitive file systems.
  const isGitMetadata = segments.some((s) => s.toLowerCase() === '.git');
  return { name: segments.join('/'), segments, isDirectory, isGitMetadata };
}

/** The entry's name: Info-ZIP Unicode Path field when valid, else UTF-8 (flag 11) or CP437. */
function entryName(entry: Entry): string {
  for (const field of entry.extraFields) {
    if (field.id !== EXTRA_UNICODE_PATH || field.data.length < 6 || field.data[0] !== 1) continue;
    if (field.data.readUInt32LE(1) !== crc32(entry.fileNameRaw)) continue; // stale: the spec says ignore it
    return field.data.subarray(5).toString('utf8');
  }
  if ((entry.generalPurposeBitFlag & FLAG_UTF8) !== 0) return entry.fileNameRaw.toString('utf8');
  return decodeCp437(entry.fileNameRaw);
}

const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

function decodeCp437(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) out += byte < 0x80 ? String.fromCharCode(byte) : CP437_HIGH[byte - 0x80];
  return out;
}

/** Inflates one entry into a new file, counting bytes and checking the CRC as they come. */
async function writeEntry(
  zip: ZipFile,
  entry: Entry,
  name: string,
  target: string,
  limits: ZipLimits,
  archiveBytes: number,
  counter: { total: number },
  signal: AbortSignal | undefined,
): Promise<void> {
  // O_EXCL | O_NOFOLLOW: never overwrite an earlier entry, never write through a link.
  const flags = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
  const handle = await open(target, flags, 0o644).catch(rethrowAsConflict(name));
  let source: Readable;
  try {
    await handle.chmod(0o644); // exactly 0644, whatever the umask
    source = await zip.openReadStreamPromise(entry);
  } catch (err) {
    await handle.close();
    throw asCorrupt(err);
  }
  let sourceError: unknown;
  source.on('error', (err) => (sourceError ??= err));

  const entryAllowance = ratioAllowance(entry.compressedSize, limits.maxCompressionRatio);
  const archiveAllowance = ratioAllowance(archiveBytes, limits.maxCompressionRatio);
  let bytes = 0;
  let crc = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      bytes += chunk.length;
      counter.total += chunk.length;
      crc = crc32(chunk, crc);
      if (counter.total > limits.maxInflatedBytes) return callback(totalTooLarge(limits.maxInflatedBytes));
      if (limits.maxFileBytes !== undefined && bytes > limits.maxFileBytes) {
        return callback(new ArchiveRejectedError('too-large', `The entry "${name}" inflates beyond the per-file limit of ${limits.maxFileBytes} bytes.`, name));
      }
      if (bytes > entryAllowance) return callback(entryRatio(name, limits.maxCompressionRatio));
      if (counter.total > archiveAllowance) return callback(archiveRatio(limits.maxCompressionRatio));
      if (bytes > entry.uncompressedSize) {
        // The header lied: a classic zip-bomb trick to slip past declared-size checks.
        return callback(new ArchiveRejectedError('too-large', `The entry "${name}" inflates beyond its declared ${entry.uncompressedSize} bytes.`, name));
      }
      callback(null, chunk);
    },
  });
  try {
    await pipeline(source, count, handle.createWriteStream(), signal === undefined ? {} : { signal });
  } catch (err) {
    if (err instanceof ArchiveRejectedError) throw err;
    if (signal?.aborted === true) throw signal.reason;
    if (sourceError !== undefined) throw asCorrupt(sourceError);
    throw err;
  } finally {
    await handle.close().catch(() => undefined); // closed already by the write stream on success
  }
  if (bytes !== entry.uncompressedSize) {
    throw new ArchiveRejectedError('corrupt', `The entry "${name}" inflated to ${bytes} bytes instead of the declared ${entry.uncompressedSize}.`, name);
  }
  if (crc !== entry.crc32) throw new ArchiveRejectedError('corrupt', `The entry "${name}" fails its CRC check.`, name);
}

function ratioAllowance(compressedBytes: number, maxRatio: number): number {
  return Math.max(compressedBytes * maxRatio, RATIO_FLOOR_BYTES);
}

function totalTooLarge(max: number): ArchiveRejectedError {
  return new ArchiveRejectedError('too-large', `The archive inflates beyond ${max} bytes (ZIP_MAX_INFLATED_BYTES).`);
}

function entryRatio(name: string, max: number): ArchiveRejectedError {
  return new ArchiveRejectedError('ratio', `The entry "${name}" compresses more than ${max}:1 (ZIP_MAX_COMPRESSION_RATIO): a zip bomb?`, name);
}

function archiveRatio(max: number): ArchiveRejectedError {
  return new ArchiveRejectedError('ratio', `The archive inflates to more than ${max} times its size (ZIP_MAX_COMPRESSION_RATIO): a zip bomb?`);
}

/** Errors from yauzl or zlib mean a broken archive; ours pass through. */
function asCorrupt(err: unknown): Error {
  if (err instanceof ArchiveRejectedError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/strong encryption/i.test(message)) return new ArchiveRejectedError('encrypted', 'The archive uses strong encryption: upload an unencrypted archive.');
  return new ArchiveRejectedError('corrupt', `The archive is damaged or not a ZIP file (${message}).`);
}

/** mkdir/open failures where an earlier entry already took the path (file vs directory, duplicates). */
function rethrowAsConflict(name: string): (err: NodeJS.ErrnoException) => never {
  return (err) => {
    if (err.code === 'EEXIST' || err.code === 'ENOTDIR' || err.code === 'EISDIR' || err.code === 'ELOOP') throw collision(name);
    if (err.code === 'ENAMETOOLONG') throw new ArchiveRejectedError('corrupt', `The entry "${name}" has a name too long for the file system.`, name);
    throw err;
  };
}
