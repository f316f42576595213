import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type BucketLocationConstraint,
} from '@aws-sdk/client-s3';
import type { Config } from './config';

/**
 * Blobs (uploaded archives, reports) behind one interface: a directory under the data dir by
 * default, an S3-compatible bucket when S3_ENDPOINT is set (several machines share it).
 * Workflows carry only keys; the bytes move between the store and an activity's disk.
 */

export interface StoredBlob {
  key: string;
  bytes: number;
  /** Hex sha256 of the content. */
  sha256: string;
}

export interface BlobStore {
  readonly kind: 'local' | 's3';
  /** Streams the body into the store (never holding a whole stream in memory) and replaces any blob under `key`. */
  put(key: string, body: Buffer | NodeJS.ReadableStream, options?: { contentType?: string }): Promise<StoredBlob>;
  /** @throws BlobNotFoundError when there is no blob under `key`. */
  get(key: string): Promise<NodeJS.ReadableStream>;
  /** Writes the blob to `file` (whose directory must exist); `file` appears only once complete. */
  getToFile(key: string, file: string): Promise<void>;
  exists(key: string): Promise<boolean>;
  /** Idempotent: deleting an absent key is not an error. */
  delete(key: string): Promise<void>;
  /**
   * Deletes the blobs whose keys start with `prefix` (a plain string prefix, as in S3), at most
   * `limit` of them (all when left out, so a caller can delete in bounded batches), and says how
   * many went.
   */
  deletePrefix(prefix: string, limit?: number): Promise<number>;
  /** How many blobs have keys starting with `prefix`. */
  countPrefix(prefix: string): Promise<number>;
}

export class BlobNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`No blob under key "${key}".`);
    this.name = 'BlobNotFoundError';
  }
}

export class InvalidBlobKeyError extends Error {
  constructor(readonly key: string, reason: string) {
    super(`Invalid blob key ${JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key)}: ${reason}.`);
    this.name = 'InvalidBlobKeyError';
  }
}

export type BlobStoreConfig = Pick<
  Config,
  'AUDITFLOW_DATA_DIR' | 'S3_ENDPOINT' | 'S3_BUCKET' | 'S3_REGION' | 'S3_ACCESS_KEY_ID' | 'S3_SECRET_ACCESS_KEY' | 'S3_FORCE_PATH_STYLE'
>;

/** The S3 store when S3_ENDPOINT is set, otherwise the local directory `<AUDITFLOW_DATA_DIR>/blobs`. */
export function createBlobStore(config: BlobStoreConfig): BlobStore {
  if (config.S3_ENDPOINT === undefined) return new LocalBlobStore(path.join(config.AUDITFLOW_DATA_DIR, 'blobs'));
  return new S3BlobStore(config.S3_ENDPOINT, config);
}

// ---------------------------------------------------------------------------------------------
// Keys

const MAX_KEY_LENGTH = 512;
const KEY_CHARACTERS = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

/**
 * Keys are relative paths of non-empty segments, none `.` or `..`: the same key then names the
 * same file on disk as in a bucket, and no key can reach outside the local store's directory.
 * Prefixes follow the same rules but may end with `/`.
 */
function checkKey(key: string, { isPrefix = false } = {}): void {
  if (key.length === 0) throw new InvalidBlobKeyError(key, 'it is empty');
  if (key.length > MAX_KEY_LENGTH) throw new InvalidBlobKeyError(key, `it is longer than ${MAX_KEY_LENGTH} characters`);
  if (!KEY_CHARACTERS.test(key)) throw new InvalidBlobKeyError(key, 'it must start with a letter or digit and contain only letters, digits and . _ / -');
  const segments = (isPrefix && key.endsWith('/') ? key.slice(0, -1) : key).split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) throw new InvalidBlobKeyError(key, 'it has an empty, "." or ".." segment');
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/** A pass-through stream that hashes and counts what flows through it. */
function measuringStream(): { stream: Transform; result: () => { bytes: number; sha256: string } } {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer | string, _encoding, callback) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      hash.update(buffer);
      bytes += buffer.length;
      callback(null, buffer);
    },
  });
  return { stream, result: () => ({ bytes, sha256: hash.digest('hex') }) };
}

/** Writes `body` to `file` (which must not exist), returning its size and sha256. */
async function writeMeasured(file: string, body: Buffer | NodeJS.ReadableStream): Promise<{ bytes: number; sha256: string }> {
  if (Buffer.isBuffer(body)) {
    await writeFile(file, body, { flag: 'wx' });
    return { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') };
  }
  const measure = measuringStream();
  await pipeline(body, measure.stream, createWriteStream(file, { flags: 'wx' }));
  return measure.result();
}

/** Copies a blob into `file` through a temporary sibling, so a failed copy never leaves a partial `file`. */
async function copyToFile(source: NodeJS.ReadableStream, file: string): Promise<void> {
  const partial = `${file}.${randomUUID()}.partial`;
  try {
    await pipeline(source, createWriteStream(partial, { flags: 'wx' }));
    await rename(partial, file);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

const errorCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

function checkLimit(limit: number): void {
  if (!(limit >= 1)) throw new RangeError(`deletePrefix: the limit must be at least 1 (got ${limit})`);
}

// ---------------------------------------------------------------------------------------------
// Local directory

/**
 * Each blob is a file at `<root>/<key>`. Writes go to `<root>/.incoming/` first (no key can name
 * it: keys start with a letter or digit) and are renamed into place once complete and flushed,
 * so a crash never leaves a partial blob under its key.
 */
class LocalBlobStore implements BlobStore {
  readonly kind = 'local' as const;
  private readonly incoming: string;

  constructor(private readonly root: string) {
    this.incoming = path.join(root, '.incoming');
  }

  private fileOf(key: string): string {
    checkKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Buffer | NodeJS.ReadableStream): Promise<StoredBlob> {
    const file = this.fileOf(key);
    await mkdir(this.incoming, { recursive: true });
    const partial = path.join(this.incoming, randomUUID());
    try {
      const measured = await writeMeasured(partial, body);
      const handle = await open(partial, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.moveIntoPlace(partial, file);
      return { key, ...measured };
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
  }

  /** Renames into place; a concurrent delete may remove the emptied parent directory in between, so that is retried. */
  private async moveIntoPlace(partial: string, file: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await mkdir(path.dirname(file), { recursive: true });
      try {
        await rename(partial, file);
        return;
      } catch (err) {
        if (errorCode(err) !== 'ENOENT' || attempt >= 3) throw err;
      }
    }
  }

  async get(key: string): Promise<NodeJS.ReadableStream> {
    const file = this.fileOf(key);
    const handle = await open(file, 'r').catch((err: unknown) => {
      if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') throw new BlobNotFoundError(key);
      throw err;
    });
    // A directory (the parent of other keys) is not a blob.
    if (!(await handle.stat()).isFile()) {
      await handle.close();
      throw new BlobNotFoundError(key);
    }
    return handle.createReadStream();
  }

  async getToFile(key: string, file: string): Promise<void> {
    await copyToFile(await this.get(key), file);
  }

  async exists(key: string): Promise<boolean> {
    const found = await stat(this.fileOf(key)).catch(() => null);
    return found?.isFile() ?? false;
  }

  async delete(key: string): Promise<void> {
    const file = this.fileOf(key);
    try {
      await unlink(file);
    } catch (err) {
      // Absent (or a directory, i.e. only a prefix of other keys): nothing to delete.
      if (['ENOENT', 'ENOTDIR', 'EISDIR', 'EPERM'].includes(errorCode(err) ?? '')) return;
      throw err;
    }
    await this.removeEmptyParents(path.dirname(file));
  }

  async deletePrefix(prefix: string, limit = Infinity): Promise<number> {
    checkKey(prefix, { isPrefix: true });
    checkLimit(limit);
    let deleted = 0;
    const directories: string[] = [];
    for await (const entry of this.entriesUnder(prefix)) {
      if (entry.isDirectory) {
        directories.push(entry.path);
        continue;
      }
      if (deleted >= limit) break;
      try {
        await unlink(entry.path);
        deleted++;
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err; // a concurrent delete got there first
      }
    }
    // Directories came parents first: remove the emptied ones children first.
    for (const dir of directories.reverse()) await rmdir(dir).catch(() => undefined);
    await this.removeEmptyParents(this.directoryOfPrefix(prefix).dir);
    return deleted;
  }

  async countPrefix(prefix: string): Promise<number> {
    checkKey(prefix, { isPrefix: true });
    let count = 0;
    for await (const entry of this.entriesUnder(prefix)) if (!entry.isDirectory) count++;
    return count;
  }

  /** A prefix splits into a directory and the start of names in it: "a/b/re" → <root>/a/b, "re". */
  private directoryOfPrefix(prefix: string): { dir: string; namePrefix: string } {
    const cut = prefix.lastIndexOf('/') + 1;
    return { dir: path.join(this.root, ...prefix.slice(0, cut).split('/').filter(Boolean)), namePrefix: prefix.slice(cut) };
  }

  /**
   * Everything whose key starts with `prefix`: directories (each before its content) and blob
   * files. Walked iteratively (trees can be deep); each directory is listed whole before its
   * entries are yielded, so the caller may delete them meanwhile.
   */
  private async *entriesUnder(prefix: string): AsyncGenerator<{ path: string; isDirectory: boolean }> {
    const listing = async (dir: string) =>
      readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
        if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return [];
        throw err;
      });
    const { dir: top, namePrefix } = this.directoryOfPrefix(prefix);
    const pending: string[] = [];
    for (const entry of await listing(top)) {
      if (!entry.name.startsWith(namePrefix)) continue;
      const entryPath = path.join(top, entry.name);
      if (entry.isDirectory()) pending.push(entryPath);
      else yield { path: entryPath, isDirectory: false };
    }
    for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
      yield { path: dir, isDirectory: true };
      for (const entry of await listing(dir)) {
        const entryPath = path.join(dir, entry.name);
        if (entry.isDirectory()) pending.push(entryPath);
        else yield { path: entryPath, isDirectory: false };
      }
    }
  }

  /** Removes `dir` and its ancestors while they are empty, stopping at the store's root. */
  private async removeEmptyParents(dir: string): Promise<void> {
    for (let current = dir; current.startsWith(this.root + path.sep); current = path.dirname(current)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (or already gone, or recreated by a concurrent put): stop
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// S3-compatible bucket

const isNotFound = (err: unknown) => err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404;

/**
 * Each blob is an object named by its key in S3_BUCKET. A streamed upload is spooled to
 * `<AUDITFLOW_DATA_DIR>/tmp/` first, because PutObject needs the length up front (a multipart
 * upload would need another package); the spool file is removed whatever happens.
 */
class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly region: string;
  private readonly spoolDir: string;
  private bucketReady: Promise<void> | null = null;

  constructor(endpoint: string, config: BlobStoreConfig) {
    this.bucket = config.S3_BUCKET;
    this.region = config.S3_REGION;
    this.spoolDir = path.join(config.AUDITFLOW_DATA_DIR, 'tmp');
    this.client = new S3Client({
      endpoint,
      region: config.S3_REGION,
      forcePathStyle: config.S3_FORCE_PATH_STYLE,
      credentials:
        config.S3_ACCESS_KEY_ID !== undefined && config.S3_SECRET_ACCESS_KEY !== undefined
          ? { accessKeyId: config.S3_ACCESS_KEY_ID, secretAccessKey: config.S3_SECRET_ACCESS_KEY }
          : undefined,
      // The SDK's default adds CRC checksums (as aws-chunked trailers on streamed bodies) that many
      // S3-compatible servers do not understand; send them only where an operation requires one.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  /** Creates the bucket on first use when it is missing (once per store; retried after a failure). */
  private ensureBucket(): Promise<void> {
    this.bucketReady ??= this.createBucketIfMissing().catch((err: unknown) => {
      this.bucketReady = null;
      throw err;
    });
    return this.bucketReady;
  }

  private async createBucketIfMissing(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      await this.client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          // us-east-1 is S3's default location and must not be named. The SDK's type lists AWS's
          // regions only; S3-compatible servers have their own names.
          CreateBucketConfiguration: this.region === 'us-east-1' ? undefined : { LocationConstraint: this.region as BucketLocationConstraint },
        }),
      );
    } catch (err) {
      // Another process created it meanwhile.
      if (!(err instanceof S3ServiceException && err.name === 'BucketAlreadyOwnedByYou')) throw err;
    }
  }

  async put(key: string, body: Buffer | NodeJS.ReadableStream, options: { contentType?: string } = {}): Promise<StoredBlob> {
    checkKey(key);
    await this.ensureBucket();
    const put = (Body: Buffer | Readable, ContentLength: number) =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body, ContentLength, ContentType: options.contentType }));
    if (Buffer.isBuffer(body)) {
      await put(body, body.length);
      return { key, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') };
    }
    // Spooled to disk (hashed on the way) so the length is known before the upload starts.
    await mkdir(this.spoolDir, { recursive: true });
    const spool = await mkdtemp(path.join(this.spoolDir, 'blob-'));
    try {
      const file = path.join(spool, 'body');
      const measured = await writeMeasured(file, body);
      const spooled = createReadStream(file);
      try {
        await put(spooled, measured.bytes);
      } finally {
        spooled.destroy(); // closes the file when the upload failed before reading it all
      }
      return { key, ...measured };
    } finally {
      await rm(spool, { recursive: true, force: true });
    }
  }

  async get(key: string): Promise<NodeJS.ReadableStream> {
    checkKey(key);
    await this.ensureBucket();
    try {
      const { Body } = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      // In Node the SDK's body is the HTTP response, a Readable.
      if (!(Body instanceof Readable)) throw new Error(`S3 returned no readable body for "${key}"`);
      return Body;
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(key);
      throw err;
    }
  }

  async getToFile(key: string, file: string): Promise<void> {
    await copyToFile(await this.get(key), file);
  }

  async exists(key: string): Promise<boolean> {
    checkKey(key);
    await this.ensureBucket();
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    await this.ensureBucket();
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async deletePrefix(prefix: string, limit = Infinity): Promise<number> {
    checkKey(prefix, { isPrefix: true });
    checkLimit(limit);
    await this.ensureBucket();
    let deleted = 0;
    let continuationToken: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: continuationToken, MaxKeys: Math.min(1000, limit - deleted) }),
      );
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key === undefined ? [] : [{ Key: object.Key }]));
      if (keys.length > 0) {
        const result = await this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys, Quiet: true } }));
        const failure = result.Errors?.[0];
        if (failure) throw new Error(`S3 could not delete "${failure.Key ?? '?'}" (${failure.Code ?? 'error'}: ${failure.Message ?? ''}) and ${(result.Errors?.length ?? 1) - 1} more`);
        deleted += keys.length;
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined && deleted < limit);
    return deleted;
  }

  async countPrefix(prefix: string): Promise<number> {
    checkKey(prefix, { isPrefix: true });
    await this.ensureBucket();
    let count = 0;
    let continuationToken: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: continuationToken }));
      count += page.Contents?.length ?? 0;
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
    return count;
  }
}
