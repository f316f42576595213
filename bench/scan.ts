/**
 * Repository scans at scale, in one run on one machine:
 *  - a large real tree nobody here wrote (packages of our own node_modules, committed to git,
 *    see bench/harness/corpus.ts) scanned end to end: POST /projects/:id/scans on the API
 *    (in-process, over HTTP), the `scanRepository` workflow on a Temporal dev server, its
 *    activities in a real worker process (workers/main.ts), fetching through `file://`;
 *  - the same select → analyze → persist as a plain in-process loop (selectFiles, read,
 *    analyzeSource, the scan's own issue upsert into Postgres, in batches of the scan's size)
 *    over the same tree: what the platform costs on top is the ratio of the two;
 *  - the findings per rule, and the worker's peak RSS.
 * Figures only: speed never fails the run (a scan that fails or finds other issues does).
 *
 *   node --import tsx bench/scan.ts [--quick]     (quick: ~2k files; full: ~50k)
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { QueryTypes, type Sequelize } from 'sequelize';
import { Scan } from '../db';
import { analyzeSource } from '../lib/analyzers';
import type { Config } from '../lib/config';
import { selectFiles } from '../lib/file-selection';
import { directoryTree } from '../lib/source-tree';
import { fetchGitRepository } from '../lib/git-fetch';
import { checkRemoteUrl } from '../lib/net-guard';
import { defaultScanTuning } from '../services/scans';
import { codeContextOf, upsertIssues, type IssueInput } from '../services/scans/pipeline';
import { READY_MARKER } from '../services/scans/workspace';
import { jobEnd, type JobView } from './harness/api';
import { buildNodeModulesCorpus, type Corpus } from './harness/corpus';
import { withBenchTemporal } from './harness/temporal';
import { workflowTimeline } from './harness/timeline';
import { withBenchPlatform } from './harness/platform';
import { procStatus } from './harness/worker-process';

const execFileAsync = promisify(execFile);
const quick = process.argv.includes('--quick');
/** Files the scan selects (analyzes), roughly: the corpus grows by whole packages until it has this many. */
const targetFiles = quick ? 2_000 : 50_000;
/** The scan's default batch size: the baseline persists in batches of the same size. */
const BATCH_SIZE = defaultScanTuning.batchSize;
const MAX_FILE_BYTES = 1024 * 1024;

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const perSecond = (count: number, ms: number) => `${((count / ms) * 1000).toFixed(0)} files/s`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const thousands = (n: number) => n.toLocaleString('en-US');

interface ScanView {
  id: string;
  status: string;
  filesTotal: number;
  filesAnalyzed: number;
  filesSkipped: number;
  filesCarried: number;
  findings: Record<string, number>;
  warnings: unknown[];
  durationMs: number | null;
}

function readIfThere(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The baseline: the same work as a plain loop

interface BaselineResult {
  ms: number;
  selectMs: number;
  analyzeMs: number;
  persistMs: number;
  files: number;
  bytes: number;
  failed: number;
  findings: number;
}

async function baselineScan(sequelize: Sequelize, config: Config, scan: Scan, root: string): Promise<BaselineResult> {
  const started = performance.now();
  const selection = await selectFiles(directoryTree(root), { maxFileBytes: config.SCAN_MAX_FILE_BYTES, maxFiles: config.SCAN_MAX_FILES, ignorePatterns: [] });
  const selectMs = performance.now() - started;
  let analyzeMs = 0;
  let persistMs = 0;
  let failed = 0;
  let findings = 0;
  for (let i = 0; i < selection.files.length; i += BATCH_SIZE) {
    const batchStarted = performance.now();
    const issues: IssueInput[] = [];
    for (const file of selection.files.slice(i, i + BATCH_SIZE)) {
      try {
        const text = await readFile(path.join(root, file.path), 'utf8');
        const found = analyzeSource({ path: file.path, language: file.language, text }, { allowInlineSuppression: true, disabledRules: [] });
        issues.push(...found.map((finding) => ({ finding, source: 'rule' as const, codeContext: codeContextOf(text, finding) })));
      } catch {
        failed += 1;
      }
    }
    const persistStarted = performance.now();
    analyzeMs += persistStarted - batchStarted;
    await sequelize.transaction((transaction) => upsertIssues(sequelize, scan, issues, transaction));
    persistMs += performance.now() - persistStarted;
    findings += issues.length;
  }
  const bytes = selection.files.reduce((n, f) => n + f.bytes, 0);
  return { ms: performance.now() - started, selectMs, analyzeMs, persistMs, files: selection.files.length - failed, bytes, failed, findings };
}

/** A shallow clone with git's defaults (what the fetch costs without our hardening and size watchdog). */
async function plainClone(url: string, dest: string): Promise<void> {
  const env = { PATH: process.env.PATH, HOME: path.dirname(dest), GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' };
  await execFileAsync('git', ['-c', 'core.symlinks=false', 'clone', '--quiet', '--depth', '1', '--no-tags', '--single-branch', '--', url, dest], { env });
}

// ---------------------------------------------------------------------------------------------

async function findingsByRule(sequelize: Sequelize, projectId: string): Promise<Array<{ rule: string; n: number }>> {
  return sequelize.query<{ rule: string; n: number }>('SELECT rule_id AS rule, count(*)::int AS n FROM issues WHERE project_id = :projectId GROUP BY rule_id ORDER BY n DESC, rule_id', {
    replacements: { projectId },
    type: QueryTypes.SELECT,
  });
}

async function issueIdentities(sequelize: Sequelize, projectId: string): Promise<string[]> {
  const rows = await sequelize.query<{ k: string }>(
    "SELECT fingerprint || ':' || occurrence || ':' || start_line || ':' || end_line AS k FROM issues WHERE project_id = :projectId ORDER BY 1",
    { replacements: { projectId }, type: QueryTypes.SELECT },
  );
  return rows.map((r) => r.k);
}

async function run(corpus: Corpus, reposRoot: string, temporalAddress: string): Promise<void> {
  const env = {
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_TASK_QUEUE: `bench-scan-${randomUUID().slice(0, 8)}`,
    SCAN_FILE_ROOTS: reposRoot,
    SCAN_MAX_FILE_BYTES: String(MAX_FILE_BYTES),
    SCAN_MAX_REPOSITORY_BYTES: String(16 * 1024 * 1024 * 1024),
    SCAN_FETCH_TIMEOUT_SECONDS: '3600',
    JWT_SECRET: randomBytes(48).toString('base64url'),
    BCRYPT_COST: '4',
    LOG_LEVEL: 'silent',
  };
  await withBenchPlatform(env, async ({ dir, config, sequelize, temporal, api, tenantId, worker, pid, startupPeak, peakReset }) => {
    const project = await api.call<{ id: string }>('POST', '/projects', { name: 'scanned through the API' });
    const baselineProject = await api.call<{ id: string }>('POST', '/projects', { name: 'scanned by the baseline loop' });

    // End to end: the request, the workflow, the worker, until the job is seen finished.
    const rssAtStart = procStatus(pid, 'VmRSS');
    // The worker's RSS over time, and when its fetch ended: the workspace's ready marker holds that time.
    const rssSamples: Array<{ at: number; rss: number }> = [];
    let fetchedAt: number | undefined;
    const workspaces = path.join(config.AUDITFLOW_DATA_DIR, 'workspaces');
    const sampler = setInterval(() => {
      rssSamples.push({ at: Date.now(), rss: procStatus(pid, 'VmRSS') ?? 0 });
      if (fetchedAt === undefined) {
        for (const scanDir of existsSync(workspaces) ? readdirSync(workspaces) : []) {
          const marker = readIfThere(path.join(workspaces, scanDir, READY_MARKER));
          if (marker) fetchedAt = Date.parse((JSON.parse(marker) as { readyAt: string }).readyAt);
        }
      }
    }, 100);
    // What was written so far (the corpus's half gigabyte above all) goes to disk now, not (30 s
    // later, by the kernel's writeback) during the scan's fetch, which writes as much again.
    await execFileAsync('sync');
    const started = performance.now();
    const job = await jobEnd(api, await api.call<JobView>('POST', `/projects/${project.id}/scans`, { source: { type: 'git', url: corpus.url } }));
    const endToEndMs = performance.now() - started;
    clearInterval(sampler);
    const scanPeak = peakReset ? procStatus(pid, 'VmHWM') : null;
    if (job.status !== 'completed') throw new Error(`the scan job ended ${job.status}: ${job.error?.message ?? ''}\n${worker.output().slice(-4000)}`);
    const listed = await api.call<{ items: ScanView[] }>('GET', `/projects/${project.id}/scans`);
    const scan = await api.call<ScanView>('GET', `/scans/${listed.items[0]?.id ?? ''}`);
    const timeline = await workflowTimeline(temporal, job.workflowId);
    // The worker deletes the scan's tree after the job ends (a detached rm): what follows starts once it is gone, not slowed by it.
    const treesRemoved = async () => {
      while (existsSync(workspaces) && readdirSync(workspaces).length > 0) await new Promise((r) => setTimeout(r, 100));
      // Nor by the writeback of what the scan wrote.
      await execFileAsync('sync');
    };
    await treesRemoved();

    // An incremental scan of the same commit: every file unchanged, so carried, none read to plan.
    const incrementalStarted = performance.now();
    const incrementalJob = await jobEnd(api, await api.call<JobView>('POST', `/projects/${project.id}/scans`, { source: { type: 'git', url: corpus.url }, mode: 'incremental' }));
    const incrementalMs = performance.now() - incrementalStarted;
    if (incrementalJob.status !== 'completed') throw new Error(`the incremental scan ended ${incrementalJob.status}: ${incrementalJob.error?.message ?? ''}`);
    const incremental = await api.call<ScanView>('GET', `/scans/${(await api.call<{ items: ScanView[] }>('GET', `/projects/${project.id}/scans`)).items[0]?.id ?? ''}`);
    await treesRemoved();

    // The baseline, over the same tree (the corpus's working tree), into the other project.
    const baselineRow = await Scan.create({
      id: randomUUID(),
      tenantId,
      projectId: baselineProject.id,
      jobId: null,
      source: { type: 'git', url: corpus.url },
      mode: 'full',
      baseScanId: null,
    });
    const baseline = await baselineScan(sequelize, config, baselineRow, corpus.root);

    // The fetch alone, as the worker does it (lib/git-fetch), and a plain shallow clone of the same.
    const fetchDest = await mkdtemp(path.join(dir, 'fetch-'));
    let fetchStarted = performance.now();
    await fetchGitRepository(await checkRemoteUrl(corpus.url, { allowedHosts: [], fileRoots: [reposRoot] }), {
      dest: path.join(fetchDest, 'tree'),
      timeoutMs: 3_600_000,
      maxBytes: config.SCAN_MAX_REPOSITORY_BYTES,
      maxEntries: config.SCAN_MAX_TREE_ENTRIES,
    });
    const fetchMs = performance.now() - fetchStarted;
    await execFileAsync('sync'); // the fetch's writeback is not the plain clone's
    fetchStarted = performance.now();
    await plainClone(corpus.url, path.join(fetchDest, 'plain'));
    const plainCloneMs = performance.now() - fetchStarted;
    await rm(fetchDest, { recursive: true, force: true });

    const rules = await findingsByRule(sequelize, project.id);
    const sameIssues = (await issueIdentities(sequelize, project.id)).join('\n') === (await issueIdentities(sequelize, baselineProject.id)).join('\n');
    const findings = rules.reduce((n, r) => n + r.n, 0);
    const step = (name: string) => timeline.steps.get(name) ?? { count: 0, runMs: 0, queueMs: 0, from: 0, to: 0 };
    const batches = step('analyzeScanBatch');
    const prepare = step('prepareScan');
    const finalize = step('finalizeScan');
    const reports = step('reportJobProgress');
    const tasks = step('workflow task');
    const analysisMs = batches.to - batches.from;
    const fetchInWorkerMs = fetchedAt === undefined ? null : fetchedAt - prepare.from;
    const peakIn = (from: number, to: number) => rssSamples.filter((r) => r.at >= from && r.at <= to).reduce((m, r) => Math.max(m, r.rss), 0);
    const mb = (bytes: number | null) => (bytes === null ? 'n/a' : mib(bytes));

    console.log(`repository scan, ${quick ? 'quick' : 'full'} run`);
    console.log(
      `corpus: ${thousands(corpus.files)} files, ${mib(corpus.bytes)} (${corpus.packages} packages of node_modules` +
        `${corpus.copies > 1 ? `, node_modules copied ${corpus.copies} times, the last partly` : ''}; symlinks and files over ${mib(MAX_FILE_BYTES)} left out), one git commit`,
    );
    console.log(`  selected and analyzed: ${thousands(scan.filesAnalyzed)} of ${thousands(scan.filesTotal)} files (${mib(baseline.bytes)}), ${thousands(scan.filesSkipped)} paths skipped, ${scan.warnings.length} warnings`);
    const phase = (name: string, ms: number | null, detail: string) => console.log(`  ${name.padEnd(24)} ${(ms === null ? 'n/a' : seconds(ms)).padStart(9)}  ${detail}`);
    console.log(`through API + Temporal: ${seconds(endToEndMs)} end to end, ${perSecond(scan.filesAnalyzed, endToEndMs)}; where the time went:`);
    phase('fetch', fetchInWorkerMs, `(a bare shallow clone, nothing checked out; the same fetch in this otherwise idle process: ${seconds(fetchMs)}; a plain \`git clone --depth 1\` with its checkout: ${seconds(plainCloneMs)})`);
    phase('select + record files', fetchInWorkerMs === null ? null : prepare.runMs - fetchInWorkerMs, `(the rest of prepareScan; the selection alone, as the baseline timed it: ${seconds(baseline.selectMs)})`);
    phase(
      'analyze + persist',
      analysisMs,
      `(${batches.count} batches of ${BATCH_SIZE}, ${defaultScanTuning.parallelism} at once: ${seconds(batches.runMs)} of batch activities summed, queued ${seconds(batches.queueMs)}; ` +
        `${reports.count} progress reports ${seconds(reports.runMs)}, ${tasks.count} workflow tasks ${seconds(tasks.runMs)}, ${timeline.runs} workflow run(s))`,
    );
    phase('finalize', finalize.runMs, '(fixed issues marked, summary written, the tree renamed away)');
    phase('the rest', endToEndMs - prepare.runMs - analysisMs - finalize.runMs, '(the request, workflow start, job updates, waits between steps, polling the job)');
    console.log(
      `incremental re-scan of the same commit: ${seconds(incrementalMs)} end to end, ${thousands(incremental.filesCarried)} files carried, ${thousands(incremental.filesAnalyzed)} analyzed (${(incrementalMs / endToEndMs).toFixed(2)}× the full scan's time)`,
    );
    console.log(`baseline loop: ${seconds(baseline.ms)}, ${perSecond(baseline.files, baseline.ms)}`);
    phase('select', baseline.selectMs, '');
    phase('read + analyze', baseline.analyzeMs, '');
    phase('persist', baseline.persistMs, `(in batches of ${BATCH_SIZE})`);
    console.log(
      `ratio end to end / baseline: ${(endToEndMs / baseline.ms).toFixed(2)}× (goal ≤ 1.25× at 50k files${quick ? '; a quick run’s fixed costs weigh more' : ''}); less the worker's fetch (which the baseline does not do): ${fetchInWorkerMs === null ? 'n/a' : `${((endToEndMs - fetchInWorkerMs) / baseline.ms).toFixed(2)}×`}`,
    );
    console.log(`findings: ${thousands(findings)}${sameIssues ? ', the same issues as the baseline’s' : ' — NOT the baseline’s issues'}; per rule (top 20):`);
    for (const r of rules.slice(0, 20)) console.log(`  ${r.rule.padEnd(36)} ${String(r.n).padStart(7)}`);
    console.log(
      `worker peak RSS during the scan: ${mb(scanPeak ?? peakIn(0, Infinity))}${scanPeak === null ? ' (sampled every 100 ms)' : ''} (goal ≤ 512 MiB at 50k files); ` +
        `${mb(rssAtStart)} when the scan started, ${mb(startupPeak)} peak at start-up (workflow bundling); ` +
        `sampled peaks: prepareScan ${mb(peakIn(prepare.from, prepare.to))}, analysis ${mb(peakIn(batches.from, batches.to))}, finalizeScan ${mb(peakIn(finalize.from, finalize.to))}`,
    );
    if (!sameIssues || baseline.files !== scan.filesAnalyzed) throw new Error('the scan and the baseline disagree: see above');
    if (incremental.filesCarried !== scan.filesAnalyzed) throw new Error('the incremental scan of the same commit did not carry every file forward');
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'auditflow-bench-scan-'));
  await chmod(dir, 0o755);
  try {
    const reposRoot = path.join(dir, 'repos');
    const built = performance.now();
    const corpus = await buildNodeModulesCorpus({ dest: path.join(reposRoot, 'corpus'), selectable: targetFiles, maxFileBytes: MAX_FILE_BYTES });
    console.log(`(corpus built and committed in ${seconds(performance.now() - built)})`);
    await withBenchTemporal(dir, (temporal) => run(corpus, reposRoot, temporal.address));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
