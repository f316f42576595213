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
 * api/route.ts): one file part, streamed to a file in a directory the caller owns and removes,
 * its bytes counted (and hashed) while they arrive, so a client that lies about sizes cannot get
 * past the limit; and a few small text fields. Every failure is a typed error, rendered by the
 * problem middleware: 413 beyond the file limit, 415 for a file of another media type, 400 for a
 * malformed form, an unexpected file field, or oversized or too many fields.
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
  /** The file part, or null when the form had none. */
  file: UploadedFile | null;
  /** The text fields, by name (the last value of a repeated name). */
  fields: Record<string, string>;
}

export interface MultipartRules {
  /** The only form field that may carry a file. */
  fileField: string;
  /** The file's size limit in bytes. */
  maxFileBytes: number;
  /** Media types the file part may declare. */
  mediaTypes: readonly string[];
}

const malformed = (reason: string) => new AppError(400, 'malformed-multipart', `The multipart/form-data body could not be read: ${reason}`);

/** Keeps the last segment of a client's file name, without control characters: it is only ever shown. */
function displayableFileName(raw: string | undefined): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is removed
  const name = (raw ?? '').split(/[\\/]/).pop()?.replace(/[\u0000-\u001f\u007f]/g, '').trim() ?? '';
  return name === '' ? 'upload' : name.slice(0, 255);
}

/** Passes bytes through, counting and hashing them. */
class Meter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    done(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * Parses the request's multipart body, writing the file part to `<dir>/upload`. Settles only once
 * nothing writes into `dir` any more, so the caller may remove it at once, whatever happened.
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
          fileSize: rules.maxFileBytes,
          files: 1,
          fields: FORM_MAX_FIELDS,
          fieldSize: FORM_FIELD_MAX_BYTES,
          parts: FORM_MAX_FIELDS + 1,
        },
      });
    } catch (err) {
      reject(malformed((err as Error).message));
      return;
    }

    const fields: Record<string, string> = {};
    let file: UploadedFile | null = null;
    // Settles (never rejects) when the file part, if any, is on disk or abandoned.
    let fileWritten: Promise<void> = Promise.resolve();
    let failed = false;

    /** Stops reading the form; rejects once the file write, if one is under way, has stopped. */
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      // What the client still sends is read and dropped, so it gets to read our answer.
      req.resume();
      // Not from inside busboy's own callback (it goes on using the part it is emitting): once it
      // returns. Destroying ends the file part being written, if any, which settles `fileWritten`.
      setImmediate(() => parser.destroy());
      const settle = () => reject(err);
      void fileWritten.then(settle, settle);
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
      if (!rules.mediaTypes.includes(mediaType)) {
        discard();
        fail(new AppError(415, 'unsupported-media-type', `The file part "${name}" is ${mediaType}; this route accepts ${rules.mediaTypes.join(', ')}.`));
        return;
      }
      stream.on('limit', () => fail(new AppError(413, 'payload-too-large', `The uploaded file exceeds ${rules.maxFileBytes} bytes.`, { limit: rules.maxFileBytes })));
      const target = path.join(dir, 'upload');
      const meter = new Meter();
      fileWritten = pipeline(stream, meter, createWriteStream(target, { flags: 'wx' })).then(
        () => {
          file = { path: target, fileName: displayableFileName(info.filename), mediaType, bytes: meter.bytes, sha256: meter.digest() };
        },
        (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
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
    parser.on('filesLimit', () => fail(new ValidationError('Invalid request body.', [{ path: `body.${rules.fileField}`, message: 'send exactly one file' }])));
    const tooManyFields = () => fail(new ValidationError('Invalid request body.', [{ path: 'body', message: `has more than ${FORM_MAX_FIELDS} fields` }]));
    parser.on('fieldsLimit', tooManyFields);
    parser.on('partsLimit', tooManyFields);
    parser.on('error', (err: Error) => fail(malformed(err.message)));
    parser.on('close', () => {
      void fileWritten.then(() => {
        if (!failed) resolve({ file, fields });
      });
    });
    // A client that goes away mid-upload: the form ends short (busboy reports it), or the socket errs.
    req.on('error', (err: Error) => fail(malformed(err.message)));
    req.pipe(parser);
  });
}
