import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { AppError, ValidationError } from '../../lib/errors';

/**
 * Reads a `multipart/form-data` body for a route that takes an upload (see `UploadSpec` in
 * api/route.ts): one file part (or up to `maxFiles`), each streamed to a file in a directory the
 * caller owns and removes, its bytes counted (and hashed) while they arrive, so a client that lies
 * about sizes cannot get past the limits; and a few small text fields. Every failure is a typed
 * error, rendered by the problem middleware: 413 beyond a file's or the upload's limit, 415 for a
 * file of another media type (or one the route's `fileLimit` refuses), 400 for a malformed form,
 * an unexpected file field, too many files, or oversized or too many fields.
 */

/** A text field may hold this many bytes; forms here carry short options (`mode`, `ref`), not documents. */
export const FORM_FIELD_MAX_BYTES = 8 * 1024;
const FORM_MAX_FIELDS = 20;

export interface UploadedFile {
  /** Where the part was written: a temporary file, removed once the route's handler returns. */
  path: string;
  /** The file name the client gave, reduced to its last path segment; a label, never a path to use. */
  fileName: string;
  /** The media type the part declared (lower case, one of the route's). */
  mediaType: string;
  bytes: number;
  /** SHA-256 of the content, hex. */
  sha256: string;
}

export interface ReceivedForm {
  /** The file parts, in the order they were sent (none when the form had none). */
  files: UploadedFile[];
  /** The text fields, by name (the last value of a repeated name). */
  fields: Record<string, string>;
}

export interface MultipartRules {
  /** The only form field that may carry files. */
  fileField: string;
  /** The size limit in bytes of all files together (of the file, when there is one). */
  maxBytes: number;
  /** How many file parts the field may carry. */
  maxFiles: number;
  /** Media types a file part may declare; absent, `fileLimit` decides. */
  mediaTypes?: readonly string[];
  /** Refuses a part by its name and media type before its bytes are read (it throws), or gives its own size limit. */
  fileLimit?: (part: { fileName: string; mediaType: string }) => number;
}

const malformed = (reason: string) => new AppError(400, 'malformed-multipart', `The multipart/form-data body could not be read: ${reason}`);

/** Keeps the last segment of a client's file name, without control characters: it is only ever shown. */
function displayableFileName(raw: string | undefined): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is removed
  const name = (raw ?? '').split(/[\\/]/).pop()?.replace(/[\u0000-\u001f\u007f]/g, '').trim() ?? '';
  return name === '' ? 'upload' : name.slice(0, 255);
}

const tooLarge = (what: string, limit: number) => new AppError(413, 'payload-too-large', `${what} exceeds ${limit} bytes.`, { limit });

/** Passes bytes through, counting and hashing them, and fails beyond the file's limit or the upload's (`total`, shared by its files). */
class Meter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');

  constructor(
    private readonly fileName: string,
    private readonly limit: number,
    private readonly total: { bytes: number; limit: number },
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.total.bytes += chunk.length;
    if (this.bytes > this.limit) return done(tooLarge(`The uploaded file "${this.fileName}"`, this.limit));
    if (this.total.bytes > this.total.limit) return done(tooLarge('The uploaded files together', this.total.limit));
    this.hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Parses the request's multipart body, writing the file parts to `<dir>/upload-<n>`. Settles only
 * once nothing writes into `dir` any more, so the caller may remove it at once, whatever happened.
 */
export function receiveMultipart(req: IncomingMessage, rules: MultipartRules, dir: string): Promise<ReceivedForm> {
  return new Promise<ReceivedForm>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        // RFC 7578: file names are sent as UTF-8, not in the Latin-1 busboy assumes by default.
        defParamCharset: 'utf8',
        limits: {
          fileSize: rules.maxBytes,
          files: rules.maxFiles,
          fields: FORM_MAX_FIELDS,
          fieldSize: FORM_FIELD_MAX_BYTES,
          parts: FORM_MAX_FIELDS + rules.maxFiles,
        },
      });
    } catch (err) {
      reject(malformed((err as Error).message));
      return;
    }

    const fields: Record<string, string> = {};
    const files: UploadedFile[] = [];
    // Each settles (never rejects) when its file part is on disk or abandoned.
    const writes: Promise<void>[] = [];
    const total = { bytes: 0, limit: rules.maxBytes };
    let failed = false;

    /** Stops reading the form; rejects once the file write, if one is under way, has stopped. */
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      // What the client still sends is read and dropped, so it gets to read our answer.
      req.resume();
      // Not from inside busboy's own callback (it goes on using the part it is emitting): once it
      // returns. Destroying ends the file parts being written, if any, which settles their writes.
      setImmediate(() => parser.destroy());
      const settle = () => reject(err);
      void Promise.all(writes).then(settle, settle);
    };

    parser.on('file', (name, stream, info) => {
      /** A part we do not keep: its bytes are dropped, and so is the error it ends with when the parser is destroyed. */
      const discard = () => stream.on('error', () => undefined).resume();
      if (failed) {
        discard();
        return;
      }
      if (name !== rules.fileField) {
        discard();
        fail(new ValidationError('Invalid request body.', [{ path: `body.${name}`, message: `is not a file field of this route: send the file as "${rules.fileField}"` }]));
        return;
      }
      const mediaType = info.mimeType.toLowerCase();
      if (rules.mediaTypes && !rules.mediaTypes.includes(mediaType)) {
        discard();
        fail(new AppError(415, 'unsupported-media-type', `The file part "${name}" is ${mediaType}; this route accepts ${rules.mediaTypes.join(', ')}.`));
        return;
      }
      const fileName = displayableFileName(info.filename);
      let limit = rules.maxBytes;
      try {
        if (rules.fileLimit) limit = Math.min(limit, rules.fileLimit({ fileName, mediaType }));
      } catch (err) {
        discard();
        fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      stream.on('limit', () => fail(tooLarge(rules.maxFiles === 1 ? 'The uploaded file' : 'The uploaded files together', rules.maxBytes)));
      const index = writes.length;
      const target = path.join(dir, `upload-${index}`);
      const meter = new Meter(fileName, limit, total);
      writes.push(
        pipeline(stream, meter, createWriteStream(target, { flags: 'wx' })).then(
          () => {
            files[index] = { path: target, fileName, mediaType, bytes: meter.bytes, sha256: meter.digest() };
          },
          (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
        ),
      );
    });

    parser.on('field', (name, value, info) => {
      if (name === rules.fileField) {
        fail(new ValidationError('Invalid request body.', [{ path: `body.${name}`, message: 'must be a file part (with a filename), not a text field' }]));
      } else if (info.nameTruncated || info.valueTruncated) {
        fail(new ValidationError('Invalid request body.', [{ path: `body.${name}`, message: `must be at most ${FORM_FIELD_MAX_BYTES} bytes` }]));
      } else {
        fields[name] = value;
      }
    });
    parser.on('filesLimit', () =>
      fail(new ValidationError('Invalid request body.', [{ path: `body.${rules.fileField}`, message: rules.maxFiles === 1 ? 'send exactly one file' : `send at most ${rules.maxFiles} files` }])),
    );
    const tooManyFields = () => fail(new ValidationError('Invalid request body.', [{ path: 'body', message: `has more than ${FORM_MAX_FIELDS} fields` }]));
    parser.on('fieldsLimit', tooManyFields);
    parser.on('partsLimit', tooManyFields);
    parser.on('error', (err: Error) => fail(malformed(err.message)));
    parser.on('close', () => {
      void Promise.all(writes).then(() => {
        if (!failed) resolve({ files, fields });
      });
    });
    // A client that goes away mid-upload: the form ends short (busboy reports it), or the socket errs.
    req.on('error', (err: Error) => fail(malformed(err.message)));
    req.pipe(parser);
  });
}
