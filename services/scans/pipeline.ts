import { createHash, randomUUID } from 'node:crypto';
import { Op, QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { Project, Scan, ScanFile, severities, type CodeContext, type IssueSeverity, type ScanWarning } from '../../db';
import { analyzeSource, issueFingerprint, rules, type Finding } from '../../lib/analyzers';
import type { Config } from '../../lib/config';
import { selectFiles, type Language, type SelectedFile, type Selection } from '../../lib/file-selection';
import { inOrder } from '../../lib/in-order';
import type { SourceTree } from '../../lib/source-tree';
import { ensureWorkspace, removeWorkspace, type WorkspaceDeps } from './workspace';

/**
 * The steps of a repository scan, each run by an activity and each safe to run again: a retried
 * step, or one re-run after a worker crash, leaves the same rows as a single run (issues are
 * upserted on their identity; a batch's files and issues are written in one transaction).
 */

export interface ScanDeps extends WorkspaceDeps {
  sequelize: Sequelize;
  config: WorkspaceDeps['config'] & Pick<Config, 'SCAN_MAX_FILE_BYTES' | 'SCAN_MAX_FILES'>;
}

/** Where an activity runs, for the vault's access log, and how it reports liveness. */
export interface StepContext {
  jobId?: string;
  activity?: string;
  heartbeat?: (detail?: unknown) => void;
  signal?: AbortSignal;
}

/** A project's scan settings (`settings.scan`): ignore patterns, disabled rules, inline suppression. */
export interface ScanSettings {
  ignore: string[];
  disabledRules: string[];
  allowInlineSuppression: boolean;
}

export function scanSettingsOf(settings: Record<string, unknown>): ScanSettings {
  const scan = (settings.scan ?? {}) as Record<string, unknown>;
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return { ignore: strings(scan.ignore), disabledRules: strings(scan.disabledRules), allowInlineSuppression: scan.allowInlineSuppression !== false };
}

export interface ScanPlan {
  filesTotal: number;
  filesToAnalyze: number;
  filesCarried: number;
  filesSkipped: number;
  batches: number;
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Files hashed at once: one at a time, hashing a large tree took longer than analyzing it. */
const HASH_CONCURRENCY = 16;

/** The sha256 of each file, in order; '' for a file that cannot be read (its batch reports it as a warning). */
async function hashFiles(tree: SourceTree, files: SelectedFile[], context: StepContext): Promise<string[]> {
  const hashes: string[] = [];
  for await (const hash of inOrder(files, HASH_CONCURRENCY, (file) => tree.read(file).then(sha256, () => ''))) {
    if (hashes.push(hash) % 1000 === 0) context.heartbeat?.({ stage: 'hashing', hashed: hashes.length });
  }
  return hashes;
}

/** How often a step heartbeats while it waits on work that reports nothing (the SDK throttles what it sends). */
const HEARTBEAT_INTERVAL_MS = 1000;

/** A Postgres array literal of strings (every element quoted and escaped), passed as one parameter. */
function pgTextArray(values: string[]): string {
  return `{${values.map((v) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',')}}`;
}

/**
 * Runs a step heartbeating all along (repeating the step's last detail): fetching a large
 * repository, walking its tree or writing its rows can outlast the heartbeat timeout without
 * being stuck (the fetch has a timeout of its own), and a worker that dies stops all the same.
 */
async function heartbeating<T>(context: StepContext, step: (context: StepContext) => Promise<T>): Promise<T> {
  const { heartbeat } = context;
  if (!heartbeat) return step(context);
  let last: unknown;
  const timer = setInterval(() => heartbeat(last), HEARTBEAT_INTERVAL_MS);
  try {
    return await step({ ...context, heartbeat: (detail) => heartbeat((last = detail)) });
  } finally {
    clearInterval(timer);
  }
}

async function planOf(scanId: string): Promise<ScanPlan> {
  const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  const batches = (await ScanFile.max<number | null, ScanFile>('batch', { where: { scanId } })) ?? -1;
  return {
    filesTotal: scan.filesTotal,
    filesToAnalyze: scan.filesTotal - scan.filesCarried,
    filesCarried: scan.filesCarried,
    filesSkipped: scan.filesSkipped,
    batches: batches + 1,
  };
}

/**
 * The latest completed scan of the project before this one: what an incremental scan compares with.
 * None when it was made with other rules or rule settings (disabled rules, inline suppression):
 * those decide the findings of unchanged files too, so carrying them could differ from a full scan.
 */
async function baseScanOf(scan: Scan, analysisDigest: string): Promise<Scan | null> {
  const base = await Scan.findOne({
    where: { projectId: scan.projectId, status: 'completed', id: { [Op.ne]: scan.id }, createdAt: { [Op.lte]: scan.createdAt } },
    order: [['createdAt', 'DESC']],
  });
  // Findings carried from a scan made with other rules or rule settings would differ from a full scan's.
  return base && base.analysisDigest === analysisDigest ? base : null;
}

/** The rule set and the project's rule settings, as a digest: what besides the files decides the findings. */
function analysisDigestOf(settings: ScanSettings): string {
  const shape = { rules: rules.map((r) => `${r.id}:${r.severity}:${r.cwe ?? ''}`).sort(), disabledRules: [...settings.disabledRules].sort(), inline: settings.allowInlineSuppression };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex');
}

/**
 * Fetches the tree, selects the files to analyze, and records them in analysis order with their
 * content hash and batch number. An incremental scan carries forward the files whose hash is
 * unchanged since the base scan (and their issues). Run again, it returns the recorded plan.
 */
export async function prepareScan(deps: ScanDeps, scanId: string, batchSize: number, context: StepContext): Promise<ScanPlan> {
  return heartbeating(context, (heartbeatingContext) => prepareScanSteps(deps, scanId, batchSize, heartbeatingContext));
}

async function prepareScanSteps(deps: ScanDeps, scanId: string, batchSize: number, context: StepContext): Promise<ScanPlan> {
  if ((await ScanFile.count({ where: { scanId } })) > 0) return planOf(scanId);
  const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  await scan.update({ status: 'running', startedAt: scan.startedAt ?? new Date() });
  const { tree, commitSha } = await ensureWorkspace(deps, scan, context, context.signal);
  const project = await Project.findByPk(scan.projectId, { attributes: ['settings'], rejectOnEmpty: true });
  const settings = scanSettingsOf(project.settings);
  const analysisDigest = analysisDigestOf(settings);
  const base = scan.mode === 'incremental' ? await baseScanOf(scan, analysisDigest) : null;
  const baseFiles = new Map<string, { contentHash: string; objectId: string | null }>();
  if (base) {
    for (const f of await ScanFile.findAll({ where: { scanId: base.id, state: ['analyzed', 'carried'] }, attributes: ['path', 'contentHash', 'objectId'] })) {
      baseFiles.set(f.path, { contentHash: f.contentHash, objectId: f.objectId });
    }
  }
  // A file both scans read from git with the same blob id has the same bytes: no need to read it.
  const sameBlob = (file: SelectedFile) => file.objectId !== undefined && baseFiles.get(file.path)?.objectId === file.objectId;
  let selection: Selection;
  const hashes = new Map<string, string>();
  try {
    selection = await selectFiles(tree, { maxFileBytes: deps.config.SCAN_MAX_FILE_BYTES, maxFiles: deps.config.SCAN_MAX_FILES, ignorePatterns: settings.ignore });
    context.heartbeat?.({ stage: 'selected', files: selection.files.length });
    // Hashes are needed now only to compare with a base scan. Without one, every file is analyzed
    // and its batch records the hash of the bytes it reads anyway (a second read of the whole
    // tree here cost as much as a tenth of a large scan). A file that cannot be read is hashed as ''.
    const toHash = base ? selection.files.filter((file) => !sameBlob(file)) : [];
    (await hashFiles(tree, toHash, context)).forEach((hash, i) => hashes.set(toHash[i]?.path ?? '', hash));
  } finally {
    await tree.close();
  }

  const rows: Array<{ seq: number; path: string; language: string; bytes: number; objectId: string | null; contentHash: string; state: 'pending' | 'carried'; batch: number | null }> = [];
  let pending = 0;
  for (const [seq, file] of selection.files.entries()) {
    const baseFile = baseFiles.get(file.path);
    const contentHash = sameBlob(file) ? (baseFile?.contentHash ?? '') : (hashes.get(file.path) ?? '');
    const carried = baseFile?.contentHash === contentHash;
    rows.push({
      seq,
      path: file.path,
      language: file.language,
      bytes: file.bytes,
      objectId: file.objectId ?? null,
      contentHash,
      state: carried ? 'carried' : 'pending',
      batch: carried ? null : Math.floor(pending++ / batchSize),
    });
  }
  const skipped = Object.values(selection.skippedCount).reduce((a, b) => a + b, 0);
  await deps.sequelize.transaction(async (transaction) => {
    // Column arrays through unnest: one statement per 10,000 files, a third of bulkCreate's time at 50k.
    for (let i = 0; i < rows.length; i += 10_000) {
      const slice = rows.slice(i, i + 10_000);
      await deps.sequelize.query(
        `INSERT INTO scan_files (scan_id, seq, path, language, bytes, object_id, content_hash, state, batch)
         SELECT :scanId, * FROM unnest(:seqs::int[], :paths::text[], :languages::text[], :bytes::int[], :objectIds::text[], :hashes::text[], :states::text[], :batches::int[])`,
        {
          replacements: {
            scanId,
            seqs: `{${slice.map((r) => r.seq).join(',')}}`,
            paths: pgTextArray(slice.map((r) => r.path)),
            languages: pgTextArray(slice.map((r) => r.language)),
            bytes: `{${slice.map((r) => r.bytes).join(',')}}`,
            objectIds: `{${slice.map((r) => r.objectId ?? 'NULL').join(',')}}`,
            hashes: pgTextArray(slice.map((r) => r.contentHash)),
            states: pgTextArray(slice.map((r) => r.state)),
            batches: `{${slice.map((r) => (r.batch === null ? 'NULL' : r.batch)).join(',')}}`,
          },
          transaction,
        },
      );
    }
    if (base) await carryForwardIssues(deps.sequelize, scan, base.id, transaction);
    await scan.update(
      {
        filesTotal: rows.length,
        filesCarried: rows.length - pending,
        filesSkipped: skipped,
        baseScanId: base?.id ?? null,
        analysisDigest,
        commitSha,
        archiveSha256: scan.source.type === 'zip' ? scan.source.sha256 : null,
      },
      { transaction },
    );
  });
  return planOf(scanId);
}

/**
 * Issues in unchanged files were seen by this scan too: their last sighting moves to it. One the
 * base scan saw that a person has since marked fixed reopens, as a full scan finding it again would
 * (upsertIssues); those scans marked fixed were not seen by the base scan, so stay fixed.
 */
async function carryForwardIssues(sequelize: Sequelize, scan: Scan, baseScanId: string, transaction: Transaction): Promise<void> {
  await sequelize.query(
    `UPDATE issues SET last_seen_scan_id = :scanId, last_seen_at = now(),
       status = CASE WHEN status = 'fixed' THEN 'open' ELSE status END,
       fixed_in_scan_id = CASE WHEN status = 'fixed' THEN NULL ELSE fixed_in_scan_id END,
       updated_at = CASE WHEN status = 'fixed' THEN now() ELSE updated_at END
     WHERE project_id = :projectId AND last_seen_scan_id = :baseScanId
       AND path IN (SELECT path FROM scan_files WHERE scan_id = :scanId AND state = 'carried')`,
    { replacements: { scanId: scan.id, projectId: scan.projectId, baseScanId }, transaction },
  );
}

export interface IssueInput {
  finding: Pick<Finding, 'ruleId' | 'title' | 'severity' | 'cwe' | 'message' | 'path' | 'startLine' | 'endLine' | 'startColumn' | 'matchedText' | 'normalizedMatch' | 'occurrence' | 'suppressed'>;
  source: 'rule' | 'llm';
  codeContext: CodeContext;
}

const CONTEXT_LINES = 3;
const CONTEXT_LINE_CHARS = 300;

/**
 * The lines around a finding. A secret's own lines show only what the engine shows of the match
 * (its masked form): the issue must not become a second copy of the secret.
 */
export function codeContextOf(text: string, finding: Pick<Finding, 'ruleId' | 'startLine' | 'endLine' | 'startColumn' | 'matchedText'>): CodeContext {
  const lines = text.split('\n');
  const first = Math.max(1, finding.startLine - CONTEXT_LINES);
  const last = Math.min(lines.length, finding.endLine + CONTEXT_LINES);
  const secret = finding.ruleId.startsWith('secret');
  const shown = lines.slice(first - 1, last).map((line, i) => {
    const number = first + i;
    if (secret && number >= finding.startLine && number <= finding.endLine) {
      return number === finding.startLine ? `${line.slice(0, finding.startColumn - 1)}${finding.matchedText}` : '…';
    }
    return line.length > CONTEXT_LINE_CHARS ? `${line.slice(0, CONTEXT_LINE_CHARS)}…` : line;
  });
  return { startLine: first, lines: shown };
}

/**
 * Writes the findings of one scan as issues: new ones inserted (first seen by this scan), known
 * ones updated (seen again; lines may have moved; a fixed one that came back reopens). Triage
 * (status, comment) survives; the identity (project, fingerprint, occurrence) makes it idempotent.
 */
export async function upsertIssues(sequelize: Sequelize, scan: Scan, inputs: IssueInput[], transaction: Transaction): Promise<void> {
  if (inputs.length === 0) return;
  const rows = inputs.map(({ finding: f, source, codeContext }) => [
    randomUUID(),
    scan.tenantId,
    scan.projectId,
    issueFingerprint(f),
    f.occurrence,
    f.ruleId,
    source,
    f.title,
    f.message,
    f.severity,
    f.cwe,
    f.path,
    f.startLine,
    f.endLine,
    f.startColumn,
    f.matchedText,
    JSON.stringify(codeContext),
    f.suppressed,
    scan.id,
    scan.id,
  ]);
  await sequelize.query(
    `INSERT INTO issues (id, tenant_id, project_id, fingerprint, occurrence, rule_id, source, title, message, severity, cwe, path,
                         start_line, end_line, start_column, matched_text, code_context, suppressed, first_seen_scan_id, last_seen_scan_id)
     VALUES ${rows.map(() => '(?)').join(', ')}
     ON CONFLICT (project_id, fingerprint, occurrence) DO UPDATE SET
       last_seen_scan_id = EXCLUDED.last_seen_scan_id, last_seen_at = now(),
       title = EXCLUDED.title, message = EXCLUDED.message, severity = EXCLUDED.severity, cwe = EXCLUDED.cwe,
       start_line = EXCLUDED.start_line, end_line = EXCLUDED.end_line, start_column = EXCLUDED.start_column,
       matched_text = EXCLUDED.matched_text, code_context = EXCLUDED.code_context, suppressed = EXCLUDED.suppressed,
       status = CASE WHEN issues.status = 'fixed' THEN 'open' ELSE issues.status END,
       fixed_in_scan_id = CASE WHEN issues.status = 'fixed' THEN NULL ELSE issues.fixed_in_scan_id END,
       updated_at = now()`,
    { replacements: rows, transaction },
  );
}

const MAX_FINDINGS_PER_FILE = 1000;

/** Rolls a batch back: its scan ended (cancelled) while it ran. */
class ScanEndedError extends Error {}

export interface BatchResult {
  filesAnalyzed: number;
  filesFailed: number;
  issuesFound: number;
}

/** What became of one file; contentHash: of the bytes analyzed, null when they could not be read (the recorded hash stays). */
interface FileOutcome {
  seq: number;
  state: 'analyzed' | 'failed';
  findings: number;
  warning: string | null;
  contentHash: string | null;
}

/** Files read ahead of the one analyzed (each at most SCAN_MAX_FILE_BYTES), so reading and analysis overlap. */
const READ_AHEAD = 8;

/** Runs the rule engine over the files, in order. A file that cannot be read or analyzed becomes a warning. */
async function analyzeFiles(
  tree: SourceTree,
  files: ScanFile[],
  settings: ScanSettings,
  onProgress: (analyzed: number) => void,
): Promise<{ issues: IssueInput[]; outcomes: FileOutcome[] }> {
  const issues: IssueInput[] = [];
  const outcomes: FileOutcome[] = [];
  const contents = inOrder(files, READ_AHEAD, (file) => tree.read(file).then((bytes) => ({ file, bytes }), (error: Error) => ({ file, error })));
  for await (const read of contents) {
    const { file } = read;
    let contentHash: string | null = null;
    try {
      if ('error' in read) throw read.error;
      contentHash = sha256(read.bytes);
      const text = read.bytes.toString('utf8');
      const findings = analyzeSource(
        { path: file.path, language: file.language as Language, text },
        { allowInlineSuppression: settings.allowInlineSuppression, disabledRules: settings.disabledRules },
      );
      // A hostile or generated file can match hundreds of thousands of times: keep the first ones, and say so.
      const kept = findings.slice(0, MAX_FINDINGS_PER_FILE);
      issues.push(...kept.map((finding) => ({ finding, source: 'rule' as const, codeContext: codeContextOf(text, finding) })));
      const warning = findings.length > kept.length ? `${findings.length} findings; only the first ${kept.length} are recorded as issues.` : null;
      outcomes.push({ seq: file.seq, state: 'analyzed', findings: findings.length, warning, contentHash });
    } catch (err) {
      outcomes.push({ seq: file.seq, state: 'failed', findings: 0, warning: `Could not analyze: ${(err as Error).message}`.slice(0, 500), contentHash });
    }
    if (outcomes.length % 50 === 0) onProgress(outcomes.length);
  }
  return { issues, outcomes };
}

/**
 * Analyzes one batch of the scan's files with the rule engine and records its issues. A file
 * that cannot be read or analyzed becomes a scan warning, never a failed scan.
 */
export async function analyzeScanBatch(deps: ScanDeps, scanId: string, batch: number, context: StepContext): Promise<BatchResult> {
  return heartbeating(context, (heartbeatingContext) => analyzeScanBatchSteps(deps, scanId, batch, heartbeatingContext));
}

async function analyzeScanBatchSteps(deps: ScanDeps, scanId: string, batch: number, context: StepContext): Promise<BatchResult> {
  const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  // A batch that starts after its scan ended (cancelled meanwhile) has nothing to add, and no tree to fetch again.
  if (scan.status !== 'running') return { filesAnalyzed: 0, filesFailed: 0, issuesFound: 0 };
  const files = await ScanFile.findAll({ where: { scanId, batch }, order: [['seq', 'ASC']] });
  const project = await Project.findByPk(scan.projectId, { attributes: ['settings'], rejectOnEmpty: true });
  const settings = scanSettingsOf(project.settings);
  const { tree } = await ensureWorkspace(deps, scan, context, context.signal);
  let issues: IssueInput[];
  let outcomes: FileOutcome[];
  try {
    ({ issues, outcomes } = await analyzeFiles(tree, files, settings, (analyzed) => context.heartbeat?.({ batch, analyzed })));
  } finally {
    await tree.close();
  }
  try {
    await deps.sequelize.transaction(async (transaction) => {
      await upsertIssues(deps.sequelize, scan, issues, transaction);
      if (outcomes.length > 0) {
        // Positional replacements throughout: Sequelize does not mix them with named ones.
        await deps.sequelize.query(
          `UPDATE scan_files AS f SET state = o.state, findings = o.findings::int, warning = o.warning::text,
             content_hash = coalesce(o.content_hash::text, f.content_hash)
           FROM (VALUES ${outcomes.map(() => '(?)').join(', ')}) AS o(seq, state, findings, warning, content_hash)
           WHERE f.scan_id = ? AND f.seq = o.seq::int`,
          { replacements: [...outcomes.map((o) => [o.seq, o.state, o.findings, o.warning, o.contentHash]), scanId], transaction },
        );
      }
      // Checked last, share-locked until commit: a scan cancelled while this batch ran (its cleanup
      // committed first) gets nothing from it; a cleanup arriving now waits for this commit.
      const current = await Scan.findByPk(scanId, { attributes: ['status'], transaction, lock: transaction.LOCK.SHARE });
      if (current?.status !== 'running' || context.signal?.aborted) throw new ScanEndedError();
    });
  } catch (err) {
    if (err instanceof ScanEndedError) return { filesAnalyzed: 0, filesFailed: 0, issuesFound: 0 };
    throw err;
  }
  const failed = outcomes.filter((o) => o.state === 'failed').length;
  return { filesAnalyzed: outcomes.length - failed, filesFailed: failed, issuesFound: issues.length };
}

export interface ScanSummary {
  filesTotal: number;
  filesAnalyzed: number;
  filesCarried: number;
  filesSkipped: number;
  findings: Record<IssueSeverity, number>;
  newIssues: number;
  fixedIssues: number;
  warnings: number;
  /** Model calls the scan's job made (its usage rows) and what they cost. */
  llmCalls: number;
  llmCostUsd: number;
}

/**
 * Closes the scan: issues it did not see again are marked fixed (LLM findings only when the LLM
 * analyzer ran this time; files that failed to analyze keep theirs), the summary is written, and
 * the fetched tree removed.
 */
export async function finalizeScan(deps: ScanDeps, scanId: string, outcome: { llm: Record<string, unknown>; llmRan: boolean }): Promise<ScanSummary> {
  const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  const replacements = { scanId, projectId: scan.projectId, llmRan: outcome.llmRan };
  // The LLM stage's spend, from the gateway's usage rows (repairs and retried calls included).
  const [spend] = await deps.sequelize.query<{ calls: string; cost: string }>('SELECT count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost FROM llm_usage WHERE job_id = :jobId', {
    replacements: { jobId: scan.jobId },
    type: QueryTypes.SELECT,
  });
  const llm = { ...outcome.llm, calls: Number(spend?.calls ?? 0), costUsd: Number(spend?.cost ?? 0) };
  await deps.sequelize.transaction(async (transaction) => {
    await deps.sequelize.query(
      `UPDATE issues SET last_seen_scan_id = :scanId, last_seen_at = now()
       WHERE project_id = :projectId AND status <> 'fixed' AND last_seen_scan_id IS DISTINCT FROM :scanId
         AND (path IN (SELECT path FROM scan_files WHERE scan_id = :scanId AND state = 'failed') OR (source = 'llm' AND NOT :llmRan))`,
      { replacements, transaction },
    );
    await deps.sequelize.query(
      `UPDATE issues SET status = 'fixed', fixed_in_scan_id = :scanId, updated_at = now()
       WHERE project_id = :projectId AND status <> 'fixed' AND last_seen_scan_id IS DISTINCT FROM :scanId`,
      { replacements, transaction },
    );
    const count = async (sql: string) =>
      Number((await deps.sequelize.query<{ n: string }>(`SELECT count(*) AS n FROM issues WHERE ${sql}`, { replacements, transaction, type: QueryTypes.SELECT }))[0]?.n ?? 0);
    const open = await deps.sequelize.query<{ severity: IssueSeverity; n: string }>(
      `SELECT severity, count(*) AS n FROM issues WHERE last_seen_scan_id = :scanId AND NOT suppressed AND status IN ('open', 'confirmed') GROUP BY severity`,
      { replacements, transaction, type: QueryTypes.SELECT },
    );
    const findings = Object.fromEntries(severities.map((sev) => [sev, Number(open.find((r) => r.severity === sev)?.n ?? 0)])) as Record<IssueSeverity, number>;
    const analyzed = await ScanFile.count({ where: { scanId, state: 'analyzed' }, transaction });
    const warnings: ScanWarning[] = (
      await ScanFile.findAll({ where: { scanId, warning: { [Op.ne]: null } }, attributes: ['path', 'warning'], order: [['seq', 'ASC']], limit: 100, transaction })
    ).map((f) => ({ path: f.path, message: f.warning ?? 'Could not analyze' }));
    const finishedAt = new Date();
    await scan.update(
      {
        status: 'completed',
        filesAnalyzed: analyzed,
        findings,
        newIssues: await count('first_seen_scan_id = :scanId'),
        fixedIssues: await count('fixed_in_scan_id = :scanId'),
        warnings,
        llm,
        finishedAt,
      },
      { transaction },
    );
  });
  await removeWorkspace(deps.config, scanId);
  const done = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  return {
    filesTotal: done.filesTotal,
    filesAnalyzed: done.filesAnalyzed,
    filesCarried: done.filesCarried,
    filesSkipped: done.filesSkipped,
    findings: done.findings as Record<IssueSeverity, number>,
    newIssues: done.newIssues,
    fixedIssues: done.fixedIssues,
    warnings: done.warnings.length,
    llmCalls: llm.calls,
    llmCostUsd: llm.costUsd,
  };
}

/** A scan that ends without finishing (failed, cancelled): its state recorded and its fetched tree removed. */
export async function abandonScan(deps: ScanDeps, scanId: string, status: 'failed' | 'cancelled', error: string | null): Promise<void> {
  await Scan.update({ status, error, finishedAt: new Date() }, { where: { id: scanId, status: { [Op.in]: ['queued', 'running'] } } });
  await removeWorkspace(deps.config, scanId);
}
