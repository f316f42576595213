import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { TextDecoder } from 'node:util';
import type { DocumentFormat } from './formats';
import { normalizeText } from './normalize';
import type { WorkerFormat, WorkerReply } from './parse-worker';

/**
 * Document parsing (issue 7, criterion 3): bytes of a known format → normalised text with
 * markdown `#` headings, plus a title.
 *
 * Text, markdown and source files are decoded here, in the calling process. Everything that
 * needs a real parser — PDF, DOCX and HTML — runs in a child process (parse-worker.ts) started
 * with `--max-old-space-size`, under a wall-clock timeout and an RSS watchdog: a parser bomb, a
 * hang, a crash or a corrupt or encrypted file fails that one document with a
 * `DocumentParseError`, and the calling process (the Temporal worker) lives on.
 *
 * HTML runs in the child too, although htmlparser2 is a linear streaming parser: htmlparser2 is
 * ESM-only, and the Temporal test worker runs the activities inside Jest, whose module loader
 * cannot load ESM from CommonJS on Node 20. HTML from fetched URLs is untrusted input all the
 * same.
 */

export interface ParsedDocument {
  /** Normalised (normalize.ts). Markdown keeps its headings; HTML and DOCX headings become `#` lines. */
  text: string;
  title: string | null;
  format: DocumentFormat;
}

export interface ParseLimits {
  /** Wall-clock budget of the child process, start-up included. */
  timeoutMs: number;
  /** V8 heap of the child process (`--max-old-space-size`); its RSS is capped at 1.5 × this plus the runtime's own footprint. */
  maxMemoryMb: number;
}

export type DocumentParseErrorCode = 'timeout' | 'memory' | 'corrupt' | 'encrypted' | 'not-utf8' | 'binary' | 'empty' | 'crashed';

const ERROR_CODES: ReadonlySet<string> = new Set<DocumentParseErrorCode>([
  'timeout', 'memory', 'corrupt', 'encrypted', 'not-utf8', 'binary', 'empty', 'crashed',
]);

/**
 * This document cannot be parsed. Never worth retrying: the same bytes fail the same way, so
 * ingestion records the error against the document and carries on with the others.
 */
export class DocumentParseError extends Error {
  readonly retryable = false;

  constructor(
    readonly code: DocumentParseErrorCode,
    message: string,
    /** The document's name as given to `parseDocument`. */
    readonly documentName: string,
  ) {
    super(message);
    this.name = 'DocumentParseError';
  }
}

/**
 * Parses one document. Rejects with `DocumentParseError` when the document cannot be parsed,
 * with `signal.reason` when `signal` aborts (the child is killed), and with a `RangeError` for
 * nonsensical limits.
 */
export async function parseDocument(
  input: { bytes: Buffer; format: DocumentFormat; name: string },
  limits: ParseLimits,
  options: { signal?: AbortSignal } = {},
): Promise<ParsedDocument> {
  const { bytes, format, name } = input;
  if (!(limits.timeoutMs > 0) || !(limits.maxMemoryMb >= MIN_HEAP_MB)) {
    throw new RangeError(`Parse limits need timeoutMs > 0 and maxMemoryMb >= ${MIN_HEAP_MB} (got ${limits.timeoutMs} and ${limits.maxMemoryMb}).`);
  }
  options.signal?.throwIfAborted();
  let raw: { text: string; title: string | null };
  switch (format) {
    case 'text':
    case 'source':
      raw = { text: decodeText(bytes, name), title: null };
      break;
    case 'markdown': {
      const text = decodeText(bytes, name);
      raw = { text, title: markdownTitle(text) };
      break;
    }
    case 'html': {
      // The child gets UTF-8 whatever the page declared.
      const html = decodeText(bytes, name, declaredHtmlCharset(bytes));
      raw = await runParseWorker('html', Buffer.from(html, 'utf8'), name, limits, options.signal);
      break;
    }
    case 'pdf':
    case 'docx':
      raw = await runParseWorker(format, bytes, name, limits, options.signal);
      break;
  }
  const text = normalizeText(raw.text);
  if (text.trim() === '') {
    const hint = format === 'pdf' ? ' (a scanned PDF holds only images of text, and we do not run OCR)' : '';
    throw new DocumentParseError('empty', `"${name}" contains no text${hint}.`, name);
  }
  const title = raw.title === null ? null : normalizeText(raw.title).replace(/\s+/g, ' ').trim() || null;
  return { text, title, format };
}

// ---------------------------------------------------------------------------------------------
// Text decoding

/**
 * Strict decoding: UTF-8 by default (a BOM is dropped), UTF-16 when a UTF-16 BOM says so, or
 * `charset` when an HTML page declares one. A NUL character means a binary file, bytes invalid
 * in the encoding a file that is not what it claims; we never guess.
 */
function decodeText(bytes: Buffer, name: string, charset = 'utf-8'): string {
  let encoding = charset;
  if (bytes[0] === 0xff && bytes[1] === 0xfe) encoding = 'utf-16le';
  else if (bytes[0] === 0xfe && bytes[1] === 0xff) encoding = 'utf-16be';
  else if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) encoding = 'utf-8';
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(encoding, { fatal: true });
  } catch {
    decoder = new TextDecoder('utf-8', { fatal: true }); // a charset label we do not know
  }
  const isUtf16 = decoder.encoding.startsWith('utf-16');
  if (!isUtf16 && bytes.includes(0)) {
    throw new DocumentParseError('binary', `"${name}" looks like a binary file (it contains NUL bytes), not text.`, name);
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    const what = decoder.encoding === 'utf-8' ? 'UTF-8' : decoder.encoding;
    throw new DocumentParseError('not-utf8', `"${name}" is not valid ${what} text; save it as UTF-8 and upload it again.`, name);
  }
  if (isUtf16 && text.includes('\u0000')) {
    throw new DocumentParseError('binary', `"${name}" looks like a binary file (it contains NUL characters), not text.`, name);
  }
  return text;
}

/** The charset an HTML page declares in its first 1024 bytes (`<meta charset>` or `http-equiv`), UTF-8 if none. */
function declaredHtmlCharset(bytes: Buffer): string {
  const head = bytes.subarray(0, 1024).toString('latin1');
  const declared = /<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)/i.exec(head)?.[1]?.toLowerCase();
  // A page that claims UTF-16 in ASCII-compatible bytes is lying (WHATWG treats it as UTF-8).
  return declared && !declared.startsWith('utf-16') ? declared : 'utf-8';
}

/** YAML front matter's `title:`, else the first `# ` heading outside fenced code. */
function markdownTitle(markdown: string): string | null {
  const frontMatter = /^(?:\uFEFF)?---\r?\n([\s\S]*?)\r?\n---\r?\n/.exec(markdown);
  const frontMatterTitle = frontMatter?.[1] ? /^title:\s*["']?(.+?)["']?\s*$/m.exec(frontMatter[1])?.[1] : undefined;
  if (frontMatterTitle) return frontMatterTitle;
  let fence: string | null = null;
  for (const line of markdown.split(/\r?\n|\r/)) {
    const fenceMatch = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (fenceMatch?.[1]) {
      if (fence === null) fence = fenceMatch[1];
      else if (fenceMatch[1][0] === fence[0] && fenceMatch[1].length >= fence.length) fence = null;
      continue;
    }
    if (fence !== null) continue;
    const heading = /^ {0,3}#(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/.exec(line);
    if (heading?.[1]) return heading[1];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The child process

/** Below this, Node itself cannot start. */
const MIN_HEAP_MB = 16;
/**
 * RSS the runtime needs besides the heap: Node's code and ICU data, tsx in development, the
 * parsers' code. A one-page PDF with a 64 MB heap peaks at 66 MB RSS compiled and 75 MB under
 * tsx; this leaves room for larger parser code paths. The watchdog's limit is this plus
 * 1.5 × maxMemoryMb (the heap, and the buffers outside it where pdf.js keeps decoded streams).
 */
const RUNTIME_RSS_ALLOWANCE_MB = 128;
const RSS_POLL_INTERVAL_MS = 100;
/** How much of the child's stderr to keep for a crash report. */
const STDERR_TAIL_BYTES = 4096;

/**
 * The worker entry next to this file, with the node flags to run it: `parse-worker.js` compiled
 * (dist/), or `parse-worker.ts` in development and tests. For TypeScript, tsx's CommonJS hook
 * (`--require tsx/cjs`) rather than `--import tsx`: the worker is CommonJS, and the full tsx
 * loader adds an ESM-hooks thread that pushed a one-page PDF's child from 75 MB to 210 MB RSS
 * and 0.7 s to 1.6 s, and ran out of heap in that thread under a 64 MB `--max-old-space-size`.
 */
function workerCommand(): { entry: string; nodeFlags: string[] } {
  const extension = path.extname(__filename);
  return {
    entry: path.join(__dirname, `parse-worker${extension}`),
    // Resolved here, so the child finds tsx whatever its working directory.
    nodeFlags: extension === '.ts' ? ['--require', require.resolve('tsx/cjs')] : [],
  };
}

/**
 * Only what Node and tsx need: the child parses untrusted bytes and has no business with our
 * secrets (database URL, API keys) even if a parser bug let a file take it over.
 */
function workerEnvironment(): NodeJS.ProcessEnv {
  const passed = ['PATH', 'HOME', 'TMPDIR', 'TMP', 'TEMP', 'LANG', 'LC_ALL', 'TZ', 'NODE_ENV', 'SYSTEMROOT'];
  return Object.fromEntries(passed.flatMap((key) => (process.env[key] === undefined ? [] : [[key, process.env[key]]])));
}

type KillReason = 'timeout' | 'memory' | 'output' | 'aborted';

function runParseWorker(
  format: WorkerFormat,
  bytes: Buffer,
  name: string,
  limits: ParseLimits,
  signal: AbortSignal | undefined,
): Promise<{ text: string; title: string | null }> {
  const { entry, nodeFlags } = workerCommand();
  const heapMb = Math.floor(limits.maxMemoryMb);
  const rssLimitKb = Math.round((heapMb * 1.5 + RUNTIME_RSS_ALLOWANCE_MB) * 1024);
  // The reply is the text plus JSON escaping; more than the heap could hold means something is wrong.
  const maxReplyBytes = heapMb * 1024 * 1024;

  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, `--max-old-space-size=${heapMb}`, entry, format], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: workerEnvironment(),
    });

    let killReason: KillReason | null = null;
    let peakRssKb = 0;
    let settled = false;
    const replyChunks: Buffer[] = [];
    let replyBytes = 0;
    let stderrTail = '';

    const kill = (reason: KillReason): void => {
      if (killReason !== null) return;
      killReason = reason;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill('timeout'), limits.timeoutMs);
    let readingRss = false;
    const watchdog = setInterval(() => {
      if (readingRss || child.pid === undefined) return;
      readingRss = true;
      void readRssKb(child.pid)
        .then((rssKb) => {
          if (rssKb === null) return;
          peakRssKb = Math.max(peakRssKb, rssKb);
          if (rssKb > rssLimitKb) kill('memory');
        })
        .finally(() => {
          readingRss = false;
        });
    }, RSS_POLL_INTERVAL_MS);
    const onAbort = (): void => kill('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });

    const settle = (outcome: { text: string; title: string | null } | Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(watchdog);
      signal?.removeEventListener('abort', onAbort);
      if (outcome instanceof Error) reject(outcome);
      else resolve(outcome);
    };
    const fail = (code: DocumentParseErrorCode, message: string): void => settle(new DocumentParseError(code, message, name));

    child.stdout.on('data', (chunk: Buffer) => {
      replyBytes += chunk.length;
      if (replyBytes > maxReplyBytes) kill('output');
      else replyChunks.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderrTail = (stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    // The child may die before reading all of its input (EPIPE); its exit tells what happened.
    child.stdin.on('error', () => {});
    child.stdin.end(bytes);

    child.on('error', (err) => fail('crashed', `The parser process for "${name}" could not run: ${err.message}`));
    child.on('close', (exitCode, exitSignal) => {
      const seconds = (limits.timeoutMs / 1000).toLocaleString('en', { maximumFractionDigits: 3 });
      switch (killReason) {
        case 'timeout':
          return fail('timeout', `Parsing "${name}" took longer than ${seconds} s and was stopped.`);
        case 'memory':
          return fail('memory', `Parsing "${name}" needed more than ${Math.round(rssLimitKb / 1024)} MB of memory (reached ${Math.round(peakRssKb / 1024)} MB) and was stopped.`);
        case 'output':
          return fail('memory', `Parsing "${name}" produced more than ${heapMb} MB of text and was stopped.`);
        case 'aborted':
          return settle(signal?.reason instanceof Error ? signal.reason : new Error('Parsing was aborted.'));
        case null:
          break;
      }
      const reply = parseReply(Buffer.concat(replyChunks).toString('utf8'));
      if (reply?.ok && exitCode === 0) return settle({ text: reply.text, title: reply.title });
      if (reply && !reply.ok) return fail(reply.code, `"${name}": ${reply.message}`);
      if (/heap out of memory|Reached heap limit|Allocation failed/i.test(stderrTail)) {
        return fail('memory', `Parsing "${name}" needed more than the ${heapMb} MB heap allowed and was stopped.`);
      }
      const how = exitSignal ? `was killed by ${exitSignal}` : `exited with code ${String(exitCode)}`;
      const lastLine = stderrTail.trim().split('\n').pop() ?? '';
      fail('crashed', `The parser process for "${name}" ${how} without an answer${lastLine ? `: ${lastLine}` : ''}.`);
    });
  });
}

/** The child's reply, or null when stdout is not one (the child died mid-way). */
function parseReply(stdout: string): WorkerReply | null {
  let value: unknown;
  try {
    value = JSON.parse(stdout);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const reply = value as Record<string, unknown>;
  if (reply.ok === true && typeof reply.text === 'string' && (typeof reply.title === 'string' || reply.title === null)) {
    return { ok: true, text: reply.text, title: reply.title };
  }
  if (reply.ok === false && typeof reply.code === 'string' && ERROR_CODES.has(reply.code) && typeof reply.message === 'string') {
    return { ok: false, code: reply.code as DocumentParseErrorCode, message: reply.message };
  }
  return null;
}

/** VmRSS of a running process in kB; null where /proc is not available or the process is gone. */
async function readRssKb(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match?.[1] ? Number(match[1]) : null;
  } catch {
    return null;
  }
}
