import type * as ChildProcessModule from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { crc32, deflateRawSync } from 'node:zlib';
import { ArchiveRejectedError, extractZip, inspectZip, type ArchiveRejectionCode, type ZipLimits } from '../../lib/zip-extract';

/** The parts of yazl (a real ZIP writer, no type package installed) these tests use. */
interface YazlZipFile {
  addBuffer(data: Buffer, name: string, options?: { mode?: number; compress?: boolean }): void;
  addEmptyDirectory(name: string, options?: { mode?: number }): void;
  end(): void;
  outputStream: Readable;
}
const yazl = createRequire(__filename)('yazl') as { ZipFile: new () => YazlZipFile };

// The real module object, so a spy sees any child process lib/zip-extract could start.
const childProcess = jest.requireActual<typeof ChildProcessModule>('node:child_process');

const limits: ZipLimits = { maxEntries: 1000, maxInflatedBytes: 64 * 1024 * 1024, maxCompressionRatio: 200 };
let dir: string;
let caseCount = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'zip-extract-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A fresh case directory; the destination is nested two levels down so `..` escapes stay observable. */
async function newCase(): Promise<{ caseDir: string; dest: string; archive: string }> {
  const caseDir = path.join(dir, `case-${++caseCount}`);
  await mkdir(caseDir);
  return { caseDir, dest: path.join(caseDir, 'a', 'b', 'out'), archive: path.join(caseDir, 'archive.zip') };
}

async function yazlArchive(file: string, build: (zip: YazlZipFile) => void): Promise<void> {
  const zip = new yazl.ZipFile();
  build(zip);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
  await writeFile(file, Buffer.concat(chunks));
}

interface RawEntry {
  name: string;
  data?: Buffer;
  /** 0 stored, 8 deflated (default), or anything else to test unsupported methods. */
  method?: number;
  /** Overrides the uncompressed size written in both headers (a lying header). */
  declaredSize?: number;
  /** Unix st_mode stored in the upper half of the external attributes. */
  unixMode?: number;
  flags?: number;
  extra?: Buffer;
  /** Overrides the CRC-32. */
  crc?: number;
}

/**
 * Writes a ZIP by hand (local headers, data, central directory, end record) so tests can build
 * what no well-behaved writer produces: `..` names, symlinks, lying sizes, encryption flags.
 */
function rawZip(entries: RawEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const data = entry.data ?? Buffer.alloc(0);
    const method = entry.method ?? 8;
    const compressed = method === 8 ? deflateRawSync(data) : data;
    const name = Buffer.from(entry.name, 'utf8');
    const extra = entry.extra ?? Buffer.alloc(0);
    const crc = entry.crc ?? crc32(data);
    const size = entry.declaredSize ?? data.length;
    const flags = (entry.flags ?? 0) | 0x800;

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(compressed.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    locals.push(local, name, extra, compressed);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(compressed.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE(((entry.unixMode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name, extra);
    offset += 30 + name.length + extra.length + compressed.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

async function rejection(promise: Promise<unknown>): Promise<ArchiveRejectedError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ArchiveRejectedError) return err;
    throw err;
  }
  throw new Error('the archive was accepted');
}

/** Every path under `root`, relative, sorted. */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map((e) => e.split(path.sep).join('/')).sort();
}

const exists = (file: string) => access(file).then(() => true, () => false);

describe('extractZip', () => {
  test('extracts a normal archive with files at 0644 and directories at 0755, whatever the archive says', async () => {
    const { dest, archive } = await newCase();
    await yazlArchive(archive, (zip) => {
      zip.addBuffer(Buffer.from('console.log(1);\n'), 'src/index.js', { mode: 0o100755 });
      zip.addBuffer(Buffer.from('#!/bin/sh\necho hi\n'), 'bin/run.sh', { mode: 0o104777 });
      zip.addBuffer(Buffer.alloc(10_000, 'a'), 'data/big.txt', { compress: true });
      zip.addBuffer(Buffer.from('node_modules\n'), '.gitignore', { compress: false });
      zip.addEmptyDirectory('empty/', { mode: 0o40777 });
    });
    const result = await extractZip(archive, dest, limits);
    expect(result).toEqual({ files: 4, bytes: 16 + 18 + 10_000 + 13, droppedGitEntries: 0 });
    expect(await tree(dest)).toEqual(['.gitignore', 'bin', 'bin/run.sh', 'data', 'data/big.txt', 'empty', 'src', 'src/index.js']);
    expect(await readFile(path.join(dest, 'src/index.js'), 'utf8')).toBe('console.log(1);\n');
    for (const file of ['src/index.js', 'bin/run.sh', 'data/big.txt', '.gitignore']) {
      expect(((await stat(path.join(dest, file))).mode & 0o7777).toString(8)).toBe('644');
    }
    // 0755 less the umask: never the archive's 0777.
    expect((await stat(path.join(dest, 'empty'))).mode & 0o7777 & ~0o755).toBe(0);
    await expect(inspectZip(archive, limits)).resolves.toEqual({ entries: 5, declaredBytes: 16 + 18 + 10_000 + 13 });
  });

  test('treats backslashes as separators and drops "." and empty segments', async () => {
    const { dest, archive } = await newCase();
    await writeFile(archive, rawZip([{ name: 'win\\dir\\file.txt', data: Buffer.from('w') }, { name: './a//b.txt', data: Buffer.from('b') }]));
    await extractZip(archive, dest, limits);
    expect(await tree(dest)).toEqual(['a', 'a/b.txt', 'win', 'win/dir', 'win/dir/file.txt']);
  });

  const absolute = `/tmp/auditflow-abs-${randomBytes(6).toString('hex')}`;
  test.each<[string, RawEntry[], ArchiveRejectionCode]>([
    ['../evil', [{ name: '../evil', data: Buffer.from('x') }], 'path-traversal'],
    ['nested ..', [{ name: 'ok/../../evil', data: Buffer.from('x') }], 'path-traversal'],
    ['backslash ..', [{ name: '..\\evil', data: Buffer.from('x') }], 'path-traversal'],
    ['.. directory', [{ name: '../', unixMode: 0o40755 }], 'path-traversal'],
    ['absolute path', [{ name: absolute, data: Buffer.from('x') }], 'absolute-path'],
    ['UNC path', [{ name: '\\\\server\\share\\evil', data: Buffer.from('x') }], 'absolute-path'],
    ['drive letter', [{ name: 'C:\\x', data: Buffer.from('x') }], 'drive-letter'],
    ['drive-relative', [{ name: 'c:evil', data: Buffer.from('x') }], 'drive-letter'],
    ['symlink', [{ name: 'link', data: Buffer.from('/etc/passwd'), unixMode: 0o120777 }], 'symlink'],
    ['symlink then write through it', [{ name: 'd', data: Buffer.from('..'), unixMode: 0o120777 }, { name: 'd/evil', data: Buffer.from('x') }], 'symlink'],
    ['hardlink', [{ name: 'link', extra: unixExtraWithLink('/etc/shadow'), data: Buffer.from('') }], 'hardlink'],
    ['FIFO', [{ name: 'pipe', unixMode: 0o010644 }], 'special-file'],
    ['device', [{ name: 'dev', unixMode: 0o020644 }], 'special-file'],
    ['encrypted', [{ name: 'secret.txt', data: Buffer.from('x'), flags: 0x1 }], 'encrypted'],
    ['unsupported method', [{ name: 'x.bz2', data: Buffer.from('x'), method: 12 }], 'unsupported-compression'],
    ['duplicate', [{ name: 'x', data: Buffer.from('1') }, { name: 'x', data: Buffer.from('2') }], 'duplicate-entry'],
    ['file then directory', [{ name: 'x', data: Buffer.from('1') }, { name: 'x/y', data: Buffer.from('2') }], 'duplicate-entry'],
    ['NUL in name', [{ name: 'a\0b', data: Buffer.from('x') }], 'corrupt'],
  ])('rejects %s and writes nothing outside dest', async (_label, entries, code) => {
    const { caseDir, dest, archive } = await newCase();
    await writeFile(archive, rawZip(entries));
    expect((await rejection(extractZip(archive, dest, limits))).code).toBe(code);
    const expected = (p: string) => ['archive.zip', 'a', 'a/b', 'a/b/out'].includes(p) || p.startsWith('a/b/out/');
    expect((await tree(caseDir)).filter((p) => !expected(p))).toEqual([]);
    expect(await exists(absolute)).toBe(false);
    // The upload-time check sees the same problem in the central directory alone.
    expect((await rejection(inspectZip(archive, limits))).code).toBe(code);
  });

  test('rejects an archive with more entries than allowed, at upload and at extraction', async () => {
    const { dest, archive } = await newCase();
    await writeFile(archive, rawZip(Array.from({ length: 6 }, (_, i) => ({ name: `f${i}.txt`, data: Buffer.from('x') }))));
    const few = { ...limits, maxEntries: 5 };
    expect((await rejection(inspectZip(archive, few))).code).toBe('too-many-entries');
    expect((await rejection(extractZip(archive, dest, few))).code).toBe('too-many-entries');
    expect(await exists(path.join(dest, 'f0.txt'))).toBe(false);
  });

  describe('zip bombs', () => {
    const zeros = Buffer.alloc(50 * 1024 * 1024); // deflates to ~50 KB: ratio ~1000
    let honest: string;
    let lying: string;
    beforeAll(async () => {
      const { archive } = await newCase();
      honest = archive;
      await writeFile(honest, rawZip([{ name: 'zeros.bin', data: zeros }]));
      lying = path.join(dir, 'lying.zip');
      // The headers claim 4 KB (an innocent ratio); the data inflates to 50 MB.
      await writeFile(lying, rawZip([{ name: 'small.txt', data: zeros, declaredSize: 4096, crc: 0 }]));
    });

    test('honest sizes: refused at upload and before inflating, by ratio or by total size', async () => {
      expect((await rejection(inspectZip(honest, limits))).code).toBe('ratio');
      const { dest } = await newCase();
      expect((await rejection(extractZip(honest, dest, limits))).code).toBe('ratio');
      expect(await exists(path.join(dest, 'zeros.bin'))).toBe(false);
      const lenient = { ...limits, maxCompressionRatio: 100_000, maxInflatedBytes: 10 * 1024 * 1024 };
      expect((await rejection(inspectZip(honest, lenient))).code).toBe('too-large');
      expect((await rejection(extractZip(honest, dest, lenient))).code).toBe('too-large');
    });

    test('lying sizes pass the upload check, and inflating stops as soon as the real bytes exceed them', async () => {
      await expect(inspectZip(lying, limits)).resolves.toEqual({ entries: 1, declaredBytes: 4096 });
      const { dest } = await newCase();
      const error = await rejection(extractZip(lying, dest, limits));
      expect(error.code).toBe('too-large');
      expect(error.entry).toBe('small.txt');
      // Stopped within a chunk or two of the lie, far from 50 MB.
      expect((await stat(path.join(dest, 'small.txt'))).size).toBeLessThan(1024 * 1024);
    });

    test('many honest entries: the running total is capped before each entry is inflated', async () => {
      const { dest, archive } = await newCase();
      const chunk = randomBytes(256 * 1024); // incompressible: no ratio trip
      await writeFile(archive, rawZip(Array.from({ length: 8 }, (_, i) => ({ name: `part${i}.bin`, data: chunk, method: 0 }))));
      const capped = { ...limits, maxInflatedBytes: 1024 * 1024 };
      expect((await rejection(inspectZip(archive, capped))).code).toBe('too-large');
      expect((await rejection(extractZip(archive, dest, capped))).code).toBe('too-large');
      expect(await tree(dest)).toEqual(['part0.bin', 'part1.bin', 'part2.bin', 'part3.bin']);
    });

    test('overlapping entries (one compressed kernel shared by many names) trip the whole-archive ratio', async () => {
      const { dest, archive } = await newCase();
      // Each entry alone passes a 2000:1 cap; together they claim ~25000 times the archive's size.
      await writeFile(archive, overlapping(Buffer.alloc(2 * 1024 * 1024), 100));
      const lenient = { ...limits, maxCompressionRatio: 2000, maxInflatedBytes: 1024 * 1024 * 1024 };
      expect(await rejection(inspectZip(archive, lenient))).toMatchObject({ code: 'ratio', entry: undefined });
      expect(await rejection(extractZip(archive, dest, lenient))).toMatchObject({ code: 'ratio', entry: undefined });
    });

    test('a small, very compressible file under the ratio floor passes', async () => {
      const { dest, archive } = await newCase();
      await writeFile(archive, rawZip([{ name: 'sparse.bin', data: Buffer.alloc(512 * 1024) }]));
      await expect(extractZip(archive, dest, limits)).resolves.toMatchObject({ files: 1, bytes: 512 * 1024 });
    });
  });

  test('drops every .git directory (a planted core.fsmonitor never runs) and starts no process', async () => {
    const { dest, archive } = await newCase();
    const marker = path.join(dir, `fsmonitor-ran-${randomBytes(4).toString('hex')}`);
    const config = `[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = touch ${marker}\n`;
    await yazlArchive(archive, (zip) => {
      zip.addBuffer(Buffer.from('ref: refs/heads/main\n'), '.git/HEAD');
      zip.addBuffer(Buffer.from(config), '.git/config');
      zip.addBuffer(Buffer.from(`#!/bin/sh\ntouch ${marker}\n`), '.git/hooks/post-checkout', { mode: 0o100755 });
      zip.addBuffer(Buffer.from(config), 'vendor/lib/.git/config');
      zip.addBuffer(Buffer.from(config), '.GIT/config');
      zip.addEmptyDirectory('.git/objects/');
      zip.addBuffer(Buffer.from('x = 1\n'), 'app.py');
      zip.addBuffer(Buffer.from('dist\n'), '.gitignore');
      zip.addBuffer(Buffer.from('[submodule "x"]\n'), '.gitmodules');
    });
    const spies = (['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork'] as const).map((name) => jest.spyOn(childProcess, name));
    try {
      const result = await extractZip(archive, dest, limits);
      expect(result).toMatchObject({ files: 3, droppedGitEntries: 6 });
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    expect(await tree(dest)).toEqual(['.gitignore', '.gitmodules', 'app.py']);
    expect(await exists(marker)).toBe(false);
  });

  test.each<[string, (zip: Buffer) => Buffer]>([
    ['random bytes', () => randomBytes(2048)],
    ['a truncated archive', (zip) => zip.subarray(0, zip.length - 30)],
    ['a damaged stored file (CRC)', (zip) => flipByteAt(zip, zip.indexOf('stored-content') + 3)],
    ['a damaged deflate stream', (zip) => flipByteAt(zip, zip.indexOf('deflated.txt') + 'deflated.txt'.length + 2)],
    ['an empty file', () => Buffer.alloc(0)],
  ])('rejects %s as corrupt', async (_label, damage) => {
    const { dest, archive } = await newCase();
    const good = rawZip([
      { name: 'stored.txt', data: Buffer.from('stored-content-here'), method: 0 },
      { name: 'deflated.txt', data: Buffer.from('some deflated content, long enough to have a body '.repeat(20)) },
    ]);
    await writeFile(archive, damage(good));
    expect((await rejection(extractZip(archive, dest, limits))).code).toBe('corrupt');
  });

  test('an abort signal stops the extraction', async () => {
    const { dest, archive } = await newCase();
    await writeFile(archive, rawZip([{ name: 'a.txt', data: Buffer.from('a') }]));
    const controller = new AbortController();
    controller.abort();
    await expect(extractZip(archive, dest, limits, controller.signal)).rejects.toMatchObject({ name: 'AbortError' });
  });
});

/** PKWARE Unix extra field (0x000d): atime, mtime, uid, gid, then the link target. */
function unixExtraWithLink(target: string): Buffer {
  const link = Buffer.from(target);
  const header = Buffer.alloc(4 + 12);
  header.writeUInt16LE(0x000d, 0);
  header.writeUInt16LE(12 + link.length, 2);
  return Buffer.concat([header, link]);
}

/** A ZIP whose `count` central-directory entries all point at the same local entry. */
function overlapping(data: Buffer, count: number): Buffer {
  const single = rawZip([{ name: 'k000', data }]);
  const endAt = single.length - 22;
  const directoryAt = single.readUInt32LE(endAt + 16);
  const record = single.subarray(directoryAt, endAt);
  const records = Array.from({ length: count }, (_, i) => {
    const copy = Buffer.from(record);
    copy.write(`k${String(i).padStart(3, '0')}`, 46, 'utf8'); // same name length, new name
    return copy;
  });
  const directory = Buffer.concat(records);
  const end = Buffer.from(single.subarray(endAt));
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(directory.length, 12);
  return Buffer.concat([single.subarray(0, directoryAt), directory, end]);
}

function flipByteAt(buffer: Buffer, at: number): Buffer {
  const copy = Buffer.from(buffer);
  copy[at] = (copy[at] ?? 0) ^ 0xff;
  return copy;
}
