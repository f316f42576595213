import { Writable } from 'node:stream';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { Job, JobEvent } from '../../db';

/**
 * Leak detector (issue 4, criterion 4): proves that a value — a secret, a token, an API key —
 * never reached a place that outlives the activity which used it. Given the value, it reads
 *
 * - the whole Temporal history of each workflow (every run of a continue-as-new or retry chain,
 *   followed back through `continuedExecutionRunId`), and `describe()` of each run (memo, search
 *   attributes, pending activities' heartbeat details and last failures, user metadata);
 * - captured log output;
 * - job rows (params, error, counters, title, stage, …) and their job_events (`data`, `type`);
 *
 * and looks for the value in plain (also JSON-escaped), base64 (standard and url-safe, at any
 * alignment inside a longer base64 text, padded or not) and hex (either case) forms, also nested
 * one or two encodings deep (hex inside base64, base64 inside base64, …). Every Temporal payload
 * (`{ metadata: { encoding }, data }` anywhere in a history: inputs, results, signal / query /
 * update arguments, memo, search attributes, headers, failure details and encoded attributes,
 * marker details, heartbeat details) is decoded with the default payload converter and its decoded
 * value walked, and its raw bytes are scanned as well; every other string, byte field and object
 * key is scanned as it is.
 *
 * A finding says where a value was seen, never what: no finding, path or error message carries the
 * value or an encoding of it (object keys that contain it are shown as `[key]`).
 *
 * Limits: base64 split across lines (MIME) or hex with separators (`de:ad:…`) are not recognised;
 * values shorter than 8 bytes are refused (their encodings would match by chance).
 */

export type LeakLocation = 'history' | 'memo' | 'searchAttributes' | 'describe' | 'logs' | 'jobEvents' | 'jobs';
export type LeakForm = 'plain' | 'base64' | 'hex';

export interface LeakFinding {
  where: LeakLocation;
  workflowId?: string;
  runId?: string;
  /** History event id (where = 'history'). */
  eventId?: number;
  jobId?: string;
  /** Job event sequence number (where = 'jobEvents'). */
  seq?: number;
  /** Field path inside the scanned object, e.g. `workflowExecutionStartedEventAttributes.input.payloads[0].<decoded>.note`; `line 12` for logs. */
  path: string;
  form: LeakForm;
}

export interface WorkflowRef {
  workflowId: string;
  /** A run of the chain to start from (default: the latest run); earlier runs are followed from it. */
  runId?: string;
}

export interface LeakScanOptions {
  /** The value that must not leak (at least 8 bytes as UTF-8). */
  secret: string;
  /** Client to read histories with (e.g. `t.temporal`); needed when workflows or job workflows are scanned. */
  temporal?: Client;
  /** Workflows whose whole history (all runs) and description are scanned. Unknown ids fail the scan. */
  workflows?: readonly (string | WorkflowRef)[];
  /** Captured log output: one text, or lines. */
  logs?: string | readonly string[];
  /** Jobs whose rows and job_events are scanned (through the models, i.e. the database of the app last started). */
  jobIds?: readonly string[];
  /** Also scan the workflow of each job in `jobIds` (default true; a job whose workflow never started is skipped). */
  jobWorkflows?: boolean;
  /** Follow continue-as-new / retry chains back to the first run (default true). */
  allRuns?: boolean;
}

export interface LeakScanReport {
  findings: LeakFinding[];
  /** What was read, so a test can tell "nothing leaked" from "nothing was looked at". */
  scanned: { runs: number; historyEvents: number; payloads: number; logLines: number; jobs: number; jobEvents: number };
}

const MIN_SECRET_BYTES = 8;
/** How many encodings deep a value is looked for (base64 of hex of the value = 2). */
const MAX_NESTING = 2;
const MAX_RUNS = 1000;

/** Returns every place the secret was found (empty when none). */
export async function findSecretLeaks(opts: LeakScanOptions): Promise<LeakFinding[]> {
  return (await scanForSecret(opts)).findings;
}

/** Fails (listing where, never what) if the secret is found anywhere; returns the report otherwise. */
export async function expectNoSecretLeaks(opts: LeakScanOptions): Promise<LeakScanReport> {
  const report = await scanForSecret(opts);
  if (report.findings.length > 0) throw new Error(`secret leaked in ${report.findings.length} place(s):\n${formatFindings(report.findings)}`);
  return report;
}

/**
 * Scans one value already in hand (an API response body, a failure, a history read elsewhere) the
 * same way: payloads decoded, strings, bytes and keys scanned. Paths are relative to `value`.
 */
export function findSecretIn(secret: string, value: unknown): { path: string; form: LeakForm }[] {
  const found = new Map<string, { path: string; form: LeakForm }>();
  const scanned: LeakScanReport['scanned'] = { runs: 0, historyEvents: 0, payloads: 0, logLines: 0, jobs: 0, jobEvents: 0 };
  new Walker(new SecretMatcher(secret), (path, form) => found.set(`${path}\u0000${form}`, { path, form }), scanned).walk(value, '');
  return [...found.values()];
}

/** One line per finding, safe to print (never holds the value). */
export function formatFindings(findings: readonly LeakFinding[]): string {
  return findings
    .map((f) => {
      const at = [
        f.workflowId && `workflow ${f.workflowId}`,
        f.runId && `run ${f.runId}`,
        f.eventId !== undefined && `event ${f.eventId}`,
        f.jobId && `job ${f.jobId}`,
        f.seq !== undefined && `seq ${f.seq}`,
      ].filter(Boolean);
      return `  - ${f.where}${at.length ? ` (${at.join(', ')})` : ''}: ${f.path} [${f.form}]`;
    })
    .join('\n');
}

/** The full scan: findings plus what was read. */
export async function scanForSecret(opts: LeakScanOptions): Promise<LeakScanReport> {
  const matcher = new SecretMatcher(opts.secret);
  const findings: LeakFinding[] = [];
  const seen = new Set<string>();
  const scanned: LeakScanReport['scanned'] = { runs: 0, historyEvents: 0, payloads: 0, logLines: 0, jobs: 0, jobEvents: 0 };
  const add = (f: LeakFinding) => {
    const key = JSON.stringify(f);
    if (seen.has(key)) return;
    seen.add(key);
    findings.push(f);
  };
  const walker = (base: Omit<LeakFinding, 'path' | 'form'>) => new Walker(matcher, (path, form) => add({ ...base, path, form }), scanned);

  const refs: { ref: WorkflowRef; required: boolean }[] = (opts.workflows ?? []).map((w) => ({ ref: typeof w === 'string' ? { workflowId: w } : w, required: true }));

  for (const jobId of opts.jobIds ?? []) {
    const job = await Job.findByPk(jobId);
    if (!job) throw new Error(`leak detector: job ${jobId} not found`);
    scanned.jobs++;
    walker({ where: 'jobs', jobId }).walk(job.get({ plain: true }), '');
    for (const event of await JobEvent.findAll({ where: { jobId }, order: [['seq', 'ASC']] })) {
      scanned.jobEvents++;
      walker({ where: 'jobEvents', jobId, seq: event.seq }).walk(event.get({ plain: true }), '');
    }
    if (opts.jobWorkflows ?? true) refs.push({ ref: { workflowId: job.workflowId }, required: false });
  }

  if (refs.length > 0 && !opts.temporal) throw new Error('leak detector: pass `temporal` to scan workflows');
  const done = new Set<string>();
  for (const { ref, required } of refs) {
    const key = `${ref.workflowId}\u0000${ref.runId ?? ''}`;
    if (done.has(key)) continue;
    done.add(key);
    try {
      await scanWorkflow(opts.temporal as Client, ref, opts.allRuns ?? true, walker, scanned);
    } catch (err) {
      if (!required && err instanceof WorkflowNotFoundError) continue;
      throw err;
    }
  }

  if (opts.logs !== undefined) {
    const lines = typeof opts.logs === 'string' ? opts.logs.split(/\r?\n/) : opts.logs;
    lines.forEach((line, i) => {
      scanned.logLines++;
      // A JSON line (pino) is walked field by field: the path names the field, escapes are undone.
      walker({ where: 'logs' }).walk(parseJsonLine(line) ?? line, `line ${i + 1}`);
    });
  }
  return { findings, scanned };
}

function parseJsonLine(line: string): unknown {
  if (!line.trimStart().startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

type MakeWalker = (base: Omit<LeakFinding, 'path' | 'form'>) => Walker;

async function scanWorkflow(temporal: Client, ref: WorkflowRef, allRuns: boolean, walker: MakeWalker, scanned: LeakScanReport['scanned']) {
  const { workflowId } = ref;
  let runId: string | undefined = ref.runId;
  const visited = new Set<string>();
  for (let i = 0; i < MAX_RUNS; i++) {
    const handle = temporal.workflow.getHandle(workflowId, runId);
    const description = await handle.describe();
    const thisRun = description.runId;
    if (visited.has(thisRun)) break;
    visited.add(thisRun);
    scanned.runs++;

    const history = await temporal.workflow.getHandle(workflowId, thisRun).fetchHistory();
    const events = (history.events ?? []) as Record<string, unknown>[];
    for (const event of events) {
      scanned.historyEvents++;
      walker({ where: 'history', workflowId, runId: thisRun, eventId: toNumber(event.eventId) }).walk(event, '');
    }

    const raw = description.raw as unknown as Record<string, unknown>;
    const info = (raw.workflowExecutionInfo ?? {}) as Record<string, unknown>;
    const { memo, searchAttributes, ...restOfInfo } = info;
    walker({ where: 'memo', workflowId, runId: thisRun }).walk(memo, 'memo');
    walker({ where: 'searchAttributes', workflowId, runId: thisRun }).walk(searchAttributes, 'searchAttributes');
    walker({ where: 'describe', workflowId, runId: thisRun }).walk({ ...raw, workflowExecutionInfo: restOfInfo }, '');

    if (!allRuns) break;
    const started = events[0]?.workflowExecutionStartedEventAttributes as { continuedExecutionRunId?: string | null } | undefined;
    runId = started?.continuedExecutionRunId || undefined;
    if (!runId) break;
  }
}

function toNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' || typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'toNumber' in v && typeof v.toNumber === 'function') return (v as { toNumber(): number }).toNumber();
  return undefined;
}

function asBytes(v: unknown): Buffer | undefined {
  if (!ArrayBuffer.isView(v) || v instanceof DataView) return undefined;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function isPayload(v: Record<string, unknown>): boolean {
  const metadata = v.metadata as Record<string, unknown> | null | undefined;
  return !!metadata && typeof metadata === 'object' && asBytes(metadata.encoding) !== undefined && (v.data === undefined || v.data === null || asBytes(v.data) !== undefined);
}

/** Walks any value, reporting the forms of the secret found at each path. */
class Walker {
  private readonly visiting = new WeakSet<object>();

  constructor(
    private readonly matcher: SecretMatcher,
    private readonly report: (path: string, form: LeakForm) => void,
    private readonly scanned: LeakScanReport['scanned'],
  ) {}

  text(s: string, path: string): void {
    for (const form of this.matcher.formsIn(Buffer.from(s, 'utf8'))) this.report(path, form);
  }

  walk(value: unknown, path: string): void {
    if (value === null || value === undefined) return;
    if (typeof value === 'string') return this.text(value, path);
    if (typeof value !== 'object') return; // numbers, booleans, bigints
    const bytes = asBytes(value);
    if (bytes) {
      for (const form of this.matcher.formsIn(bytes)) this.report(path, form);
      return;
    }
    if (value instanceof Date) return;
    if (this.visiting.has(value)) return;
    this.visiting.add(value);
    try {
      if (Array.isArray(value)) {
        value.forEach((item, i) => this.walk(item, `${path}[${i}]`));
        return;
      }
      const obj = value as Record<string, unknown>;
      if (isPayload(obj)) {
        this.scanned.payloads++;
        let decoded: unknown;
        let ok = false;
        try {
          decoded = defaultPayloadConverter.fromPayload(obj);
          ok = true;
        } catch {
          // an encoding the default converter does not know (json/protobuf, encrypted): raw bytes are scanned below
        }
        if (ok) this.walk(decoded, join(path, '<decoded>'));
      }
      for (const [key, child] of Object.entries(obj)) {
        const keyForms = this.matcher.formsIn(Buffer.from(key, 'utf8'));
        const shown = keyForms.length > 0 ? '[key]' : key;
        for (const form of keyForms) this.report(join(path, shown), form);
        this.walk(child, join(path, shown));
      }
    } finally {
      this.visiting.delete(value);
    }
  }
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

const BASE64_RUN = /[A-Za-z0-9+/_-]+/g;
const HEX_RUN = /[0-9a-fA-F]+/g;

/** Finds a value in bytes, plain or encoded (nested up to MAX_NESTING encodings). */
class SecretMatcher {
  private readonly plain: Buffer[];
  private readonly hex: string;
  private readonly size: number;

  constructor(secret: string) {
    const bytes = Buffer.from(secret, 'utf8');
    if (bytes.length < MIN_SECRET_BYTES) throw new Error(`leak detector: the value to look for must be at least ${MIN_SECRET_BYTES} bytes long`);
    this.size = bytes.length;
    const escaped = Buffer.from(JSON.stringify(secret).slice(1, -1), 'utf8');
    this.plain = escaped.equals(bytes) ? [bytes] : [bytes, escaped];
    this.hex = bytes.toString('hex');
  }

  /** The forms in which the value occurs in `bytes` (outermost encoding; plain first). */
  formsIn(bytes: Buffer): LeakForm[] {
    const forms: LeakForm[] = [];
    if (this.plain.some((p) => bytes.includes(p))) forms.push('plain');
    if (bytes.length < this.size) return forms;
    if (this.encodedIn(bytes, 'base64', MAX_NESTING)) forms.push('base64');
    if (this.encodedIn(bytes, 'hex', MAX_NESTING)) forms.push('hex');
    return forms;
  }

  private contains(bytes: Buffer, depth: number): boolean {
    return this.plain.some((p) => bytes.includes(p)) || this.encodedIn(bytes, 'base64', depth) || this.encodedIn(bytes, 'hex', depth);
  }

  /** Whether a run of `encoding` text in `bytes` decodes to something holding the value. */
  private encodedIn(bytes: Buffer, encoding: 'base64' | 'hex', depth: number): boolean {
    if (depth <= 0) return false;
    const text = bytes.toString('latin1');
    if (encoding === 'hex') {
      if (text.toLowerCase().includes(this.hex)) return true;
      if (depth <= 1) return false;
      // Hex of an encoding of the value: decode each hex run at both nibble alignments.
      for (const m of text.matchAll(HEX_RUN)) {
        if (m[0].length < 2 * this.size) continue;
        for (const offset of [0, 1]) {
          const run = m[0].slice(offset);
          if (this.contains(Buffer.from(run.slice(0, run.length - (run.length % 2)), 'hex'), depth - 1)) return true;
        }
      }
      return false;
    }
    // Base64 (either alphabet; Node decodes both): a run's own 4-character groups may start at any
    // of 4 offsets, so each is decoded from each; one of them is aligned with any encoding inside it.
    const minChars = Math.ceil((this.size * 4) / 3);
    for (const m of text.matchAll(BASE64_RUN)) {
      if (m[0].length < minChars) continue;
      for (let offset = 0; offset < 4; offset++) {
        const decoded = Buffer.from(m[0].slice(offset), 'base64');
        if (decoded.includes(this.plain[0] as Buffer) || (this.plain[1] && decoded.includes(this.plain[1]))) return true;
        if (depth > 1 && decoded.length >= this.size && (this.encodedIn(decoded, 'base64', depth - 1) || this.encodedIn(decoded, 'hex', depth - 1))) return true;
      }
    }
    return false;
  }
}

/** Collects what is written to it (e.g. `startTestApp({ LOG_LEVEL: 'trace' }, { logTo: capture.stream })`). */
export interface LogCapture {
  stream: NodeJS.WritableStream;
  lines(): string[];
  text(): string;
}

/**
 * A sink for log output. Tests run with LOG_LEVEL=silent unless told otherwise: start the app with a
 * level (e.g. 'trace') or the capture stays empty and proves nothing (check `report.scanned.logLines`).
 */
export function captureLogs(): LogCapture {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(typeof chunk === 'string' ? chunk : chunk.toString('utf8'));
      callback();
    },
  });
  const text = () => chunks.join('');
  return { stream, text, lines: () => text().split('\n').filter((l) => l.length > 0) };
}
