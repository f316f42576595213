import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BlobNotFoundError, createBlobStore, InvalidBlobKeyError, type BlobStore, type BlobStoreConfig } from '../../lib/blob-store';
import { startS3StandIn, type S3StandIn } from '../harness/s3';

/** One behavioural suite, run against the local directory store and the S3 store (against s3rver). */

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/** `total` random bytes in 64 KiB chunks, generated as they are read (never one big buffer in the stream). */
function randomStream(total: number, seen: Buffer[]): Readable {
  return Readable.from(
    (function* () {
      for (let sent = 0; sent < total; sent += 64 * 1024) {
        const chunk = randomBytes(Math.min(64 * 1024, total - sent));
        seen.push(chunk);
        yield chunk;
      }
    })(),
  );
}

/** A stream that yields some bytes, then fails: an upload interrupted half-way. */
function failingStream(): Readable {
  return Readable.from(
    (function* () {
      yield randomBytes(256 * 1024);
      throw new Error('connection reset by peer');
    })(),
  );
}

/** Every file below `dir` (relative paths), or [] when it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

interface StoreUnderTest {
  store: BlobStore;
  dataDir: string;
  close(): Promise<void>;
}

const baseConfig = (dataDir: string): BlobStoreConfig => ({
  AUDITFLOW_DATA_DIR: dataDir,
  S3_ENDPOINT: undefined,
  S3_BUCKET: 'auditflow-test',
  S3_REGION: 'us-east-1',
  S3_ACCESS_KEY_ID: undefined,
  S3_SECRET_ACCESS_KEY: undefined,
  S3_FORCE_PATH_STYLE: true,
});

const stores: Array<[BlobStore['kind'], () => Promise<StoreUnderTest>]> = [
  [
    'local',
    async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'auditflow-blobs-'));
      return { store: createBlobStore(baseConfig(dataDir)), dataDir, close: () => rm(dataDir, { recursive: true, force: true }) };
    },
  ],
  [
    's3',
    async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'auditflow-blobs-'));
      const s3: S3StandIn = await startS3StandIn();
      const store = createBlobStore({
        ...baseConfig(dataDir),
        S3_ENDPOINT: s3.endpoint,
        S3_ACCESS_KEY_ID: s3.accessKeyId,
        S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      });
      return {
        store,
        dataDir,
        async close() {
          await s3.close();
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    },
  ],
];

describe.each(stores)('%s blob store', (kind, start) => {
  let subject: StoreUnderTest;
  let store: BlobStore;
  let scratch: string;
  beforeAll(async () => {
    subject = await start();
    store = subject.store;
    scratch = await mkdtemp(path.join(tmpdir(), 'auditflow-blob-files-'));
  });
  afterAll(async () => {
    await subject.close();
    await rm(scratch, { recursive: true, force: true });
  });

  // Each test under its own prefix, so they cannot see each other's blobs.
  let testNumber = 0;
  let ns: string;
  beforeEach(() => {
    ns = `t${++testNumber}`;
  });

  it(`is the ${kind} store`, () => {
    expect(store.kind).toBe(kind);
  });

  it('stores a Buffer and reads it back, reporting its size and sha256', async () => {
    const body = Buffer.from('{"report": true}\n');
    await expect(store.put(`${ns}/report.json`, body, { contentType: 'application/json' })).resolves.toEqual({
      key: `${ns}/report.json`,
      bytes: body.length,
      sha256: sha256(body),
    });
    expect((await readAll(await store.get(`${ns}/report.json`))).equals(body)).toBe(true);
  });

  it('streams a multi-MiB upload in and out, hashing it on the way', async () => {
    const sent: Buffer[] = [];
    const total = 5 * 1024 * 1024 + 123;
    const stored = await store.put(`${ns}/uploads/archive.zip`, randomStream(total, sent), { contentType: 'application/zip' });
    const content = Buffer.concat(sent);
    expect(stored).toEqual({ key: `${ns}/uploads/archive.zip`, bytes: total, sha256: sha256(content) });
    const back = await readAll(await store.get(`${ns}/uploads/archive.zip`));
    expect(back.length).toBe(total);
    expect(sha256(back)).toBe(stored.sha256);
  });

  it('stores an empty blob', async () => {
    await expect(store.put(`${ns}/empty`, Readable.from([]))).resolves.toEqual({ key: `${ns}/empty`, bytes: 0, sha256: sha256(Buffer.alloc(0)) });
    expect((await readAll(await store.get(`${ns}/empty`))).length).toBe(0);
  });

  it('replaces the blob under a key that is put again', async () => {
    await store.put(`${ns}/a`, Buffer.from('first'));
    await store.put(`${ns}/a`, Readable.from([Buffer.from('second')]));
    expect((await readAll(await store.get(`${ns}/a`))).toString()).toBe('second');
  });

  it('writes a blob to a file, and leaves no file behind for a missing key', async () => {
    const body = randomBytes(300 * 1024);
    await store.put(`${ns}/blob.bin`, body);
    const file = path.join(scratch, `${ns}-copy.bin`);
    await store.getToFile(`${ns}/blob.bin`, file);
    expect((await readFile(file)).equals(body)).toBe(true);

    await expect(store.getToFile(`${ns}/absent.bin`, path.join(scratch, `${ns}-absent.bin`))).rejects.toThrow(BlobNotFoundError);
    expect((await readdir(scratch)).filter((name) => name.startsWith(ns))).toEqual([`${ns}-copy.bin`]);
  });

  it('says whether a key exists; a prefix of other keys is not a blob', async () => {
    await store.put(`${ns}/dir/file`, Buffer.from('x'));
    expect(await store.exists(`${ns}/dir/file`)).toBe(true);
    expect(await store.exists(`${ns}/dir`)).toBe(false);
    expect(await store.exists(`${ns}/dir/other`)).toBe(false);
  });

  it('refuses to get a missing key with BlobNotFoundError', async () => {
    await expect(store.get(`${ns}/missing`)).rejects.toThrow(BlobNotFoundError);
    await store.put(`${ns}/dir/file`, Buffer.from('x'));
    await expect(store.get(`${ns}/dir`)).rejects.toThrow(BlobNotFoundError);
  });

  it('deletes idempotently', async () => {
    await store.put(`${ns}/gone`, Buffer.from('bye'));
    await store.delete(`${ns}/gone`);
    expect(await store.exists(`${ns}/gone`)).toBe(false);
    await expect(store.get(`${ns}/gone`)).rejects.toThrow(BlobNotFoundError);
    await expect(store.delete(`${ns}/gone`)).resolves.toBeUndefined();
    await expect(store.delete(`${ns}/never/was`)).resolves.toBeUndefined();
  });

  it('deletes exactly the keys that start with a prefix, and says how many', async () => {
    const keys = ['p/a/1', 'p/a/2', 'p/a/sub/deeper/3', 'p/ab/4', 'p/abc', 'p/b/5', 'pa/6', 'q/p/a/7'].map((k) => `${ns}/${k}`);
    for (const key of keys) await store.put(key, Buffer.from(key));

    await expect(store.deletePrefix(`${ns}/p/a/`)).resolves.toBe(3);
    const present = async () => (await Promise.all(keys.map(async (key) => ((await store.exists(key)) ? key : null)))).filter((k) => k !== null);
    expect(await present()).toEqual(['p/ab/4', 'p/abc', 'p/b/5', 'pa/6', 'q/p/a/7'].map((k) => `${ns}/${k}`));

    // A plain string prefix, as in S3: "p/a" also covers "p/ab/…" and "p/abc".
    await expect(store.deletePrefix(`${ns}/p/a`)).resolves.toBe(2);
    expect(await present()).toEqual(['p/b/5', 'pa/6', 'q/p/a/7'].map((k) => `${ns}/${k}`));

    await expect(store.deletePrefix(`${ns}/p/a`)).resolves.toBe(0);
    await expect(store.deletePrefix(`${ns}/nothing-here/`)).resolves.toBe(0);
    await expect(store.deletePrefix(`${ns}/`)).resolves.toBe(3);
    expect(await present()).toEqual([]);
    if (kind === 'local') expect(await readdir(path.join(subject.dataDir, 'blobs'))).not.toContain(ns); // emptied directories go too
  });

  it('counts the keys under a prefix, and deletes them in batches of at most `limit`', async () => {
    for (let i = 0; i < 5; i++) await store.put(`${ns}/batch/${i}`, Buffer.from(String(i)));
    await store.put(`${ns}/other`, Buffer.from('stays'));
    await expect(store.countPrefix(`${ns}/batch/`)).resolves.toBe(5);
    await expect(store.deletePrefix(`${ns}/batch/`, 2)).resolves.toBe(2);
    await expect(store.countPrefix(`${ns}/batch/`)).resolves.toBe(3);
    await expect(store.deletePrefix(`${ns}/batch/`, 2)).resolves.toBe(2);
    await expect(store.deletePrefix(`${ns}/batch/`, 2)).resolves.toBe(1);
    await expect(store.deletePrefix(`${ns}/batch/`, 2)).resolves.toBe(0);
    await expect(store.countPrefix(`${ns}/batch/`)).resolves.toBe(0);
    await expect(store.countPrefix(`${ns}/`)).resolves.toBe(1);
    await expect(store.deletePrefix(`${ns}/`, 0)).rejects.toThrow(RangeError);
  });

  it('deletes a prefix holding more keys than one listing page', async () => {
    const count = 1005; // S3 lists at most 1,000 keys per page
    const keys = Array.from({ length: count }, (_, i) => `${ns}/many/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => store.put(key, Buffer.from('.'))));
    await expect(store.countPrefix(`${ns}/many/`)).resolves.toBe(count);
    await expect(store.deletePrefix(`${ns}/many/`)).resolves.toBe(count);
    expect(await store.exists(keys[0] ?? '')).toBe(false);
    expect(await store.exists(keys[count - 1] ?? '')).toBe(false);
  });

  it('accepts a key of the maximum length', async () => {
    const key = `${ns}/${'k'.repeat(200)}/${'e'.repeat(200)}/`.padEnd(512, 'y');
    expect(key.length).toBe(512);
    await store.put(key, Buffer.from('long'));
    expect(await store.exists(key)).toBe(true);
  });

  const invalidKeys: Array<[string, string]> = [
    ['a parent segment', '../x'],
    ['an absolute path', '/abs'],
    ['a parent segment inside', 'a/../b'],
    ['a trailing parent segment', 'a/..'],
    ['a current-directory segment', 'a/./b'],
    ['an empty key', ''],
    ['a key over 512 characters', `a/${'x'.repeat(511)}`],
    ['an empty segment', 'a//b'],
    ['a trailing slash', 'a/b/'],
    ['a leading dot', '.hidden'],
    ['a space', 'a b'],
    ['a backslash', 'a\\..\\b'],
    ['a NUL byte', 'a\0b'],
  ];
  it.each(invalidKeys)('refuses %s as a key (%j) in every operation', async (_what, key) => {
    await expect(store.put(key, Buffer.from('x'))).rejects.toThrow(InvalidBlobKeyError);
    await expect(store.put(key, Readable.from([Buffer.from('x')]))).rejects.toThrow(InvalidBlobKeyError);
    await expect(store.get(key)).rejects.toThrow(InvalidBlobKeyError);
    await expect(store.getToFile(key, path.join(scratch, 'never'))).rejects.toThrow(InvalidBlobKeyError);
    await expect(store.exists(key)).rejects.toThrow(InvalidBlobKeyError);
    await expect(store.delete(key)).rejects.toThrow(InvalidBlobKeyError);
  });

  it.each([['../'], ['/'], [''], ['a/../'], ['a//']])('refuses %j as a prefix', async (prefix) => {
    await expect(store.deletePrefix(prefix)).rejects.toThrow(InvalidBlobKeyError);
    await expect(store.countPrefix(prefix)).rejects.toThrow(InvalidBlobKeyError);
  });

  it('leaves nothing under the key when an upload stream fails half-way', async () => {
    await expect(store.put(`${ns}/broken`, failingStream())).rejects.toThrow('connection reset by peer');
    expect(await store.exists(`${ns}/broken`)).toBe(false);
  });

  // Runs last: every test above has put, failed or copied through the temporary files.
  it('leaves no temporary files behind', async () => {
    expect(await filesUnder(path.join(subject.dataDir, 'blobs', '.incoming'))).toEqual([]);
    expect(await filesUnder(path.join(subject.dataDir, 'tmp'))).toEqual([]);
    expect((await readdir(scratch)).filter((name) => name.endsWith('.partial'))).toEqual([]);
    if (kind === 'local') {
      // Every blob file is a key some test put and did not delete.
      const blobFiles = (await filesUnder(path.join(subject.dataDir, 'blobs'))).map((f) => f.split(path.sep).join('/'));
      expect(blobFiles.every((f) => /^t\d+\//.test(f))).toBe(true);
    }
  });
});
