import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { defaultPayloadConverter } from '@temporalio/common';
import type { History } from '@temporalio/common/lib/proto-utils';
import { Op } from 'sequelize';
import { Issue, Scan, ScanFile } from '../../db';
import { analyzeSource, issueFingerprint } from '../../lib/analyzers';
import { AuditScope } from '../../services/audit';
import { startScan, type ScanRequest } from '../../services/scans';
import { ensureWorkspace, removeWorkspace, workspaceDir } from '../../services/scans/workspace';
import type { ScanProgress } from '../../workflows/definitions';
import type { TestResponse } from '../harness';
import { makeRepository, startCanary, startGitServer, type GitServer } from '../harness/git-server';
import { captureLogs, expectNoSecretLeaks, scanForSecret } from '../harness/leak-detector';
import { responseValidator } from '../harness/openapi-validator';
import { zipOf } from '../harness/zip';
import { fakeAwsAccessKeyId } from '../lib/analyzers/fixtures';
import { blockedOn, createProject, createSecrets, holdTransaction, isFinished, startJobsSuite, waitForJob, waitUntil, type JobBody, type JobsSuite, type RowLock } from '../jobs/job-helpers';

/*
 * The scan workflow end to end (issue 6, criteria 1, 2, 6 and 7): real Postgres, Temporal and
 * worker, real git over a loopback `git http-backend` (and file://), ZIP uploads through the API.
 * A scan fetches, selects, analyzes in batches and finalizes; a file it cannot read becomes a
 * warning; history stays bounded across continue-as-new; cancellation cleans up; hostile sources
 * never connect; tokens stay in the vault; project deletion takes the scan data with it.
 *
 * Holding a scan mid-analysis is done with Postgres, not timing: an uncommitted issue row with the
 * identity of a finding the scan will make, so the batch that writes it waits for that transaction.
 */

const execFileAsync = promisify(execFile);

/**
 * A small tree with known findings (checked against the rule engine's rules): code rules in four
 * languages, a secret, near-misses beside them, and a vendored directory that is never analyzed.
 */
const shopFiles: Record<string, string> = {
  'src/app.js': [
    "const { exec } = require('child_process');",
    'function run(userInput, dir) {',
    '  const value = eval(userInput);',
    "  exec('ls ' + dir);",
    '  return value;',
    '}',
    '',
  ].join('\n'),
  'src/safe.js': "const value = JSON.parse(input);\nexecFile('ls', [dir]);\n",
  'app/db.py': [
    'def find(cursor, user_id):',
    '    cursor.execute("SELECT * FROM users WHERE id = %s" % user_id)',
    '    cursor.execute("SELECT * FROM users WHERE id = %s", (user_id,))',
    '',
  ].join('\n'),
  'app/load.py': 'import yaml\n\ndef load(data):\n    return yaml.load(data)\n',
  'lib/run.rb': 'def run(params)\n  eval(params[:code])\nend\n',
  'web/index.php': "<?php\neval($_GET['code']);\n",
  'config/settings.py': `AWS_ACCESS_KEY_ID = "${fakeAwsAccessKeyId(7)}"\n`,
  'README.md': '# Shop\n\nNothing to see here.\n',
  'node_modules/left-pad/index.js': 'module.exports = (s) => eval(s);\n',
};
/** What a scan of `shopFiles` finds: rule, path and line. */
const shopFindings = [
  'app/db.py:2 py-sql-string-format critical',
  'app/load.py:4 py-yaml-load high',
  'config/settings.py:1 secret-aws-access-key critical',
  'lib/run.rb:2 rb-eval critical',
  'src/app.js:3 js-eval high',
  'src/app.js:4 js-child-process-exec critical',
  'web/index.php:2 php-eval critical',
];
const shopSeverities = { critical: 5, high: 2, medium: 0, low: 0, info: 0 };
/** Selected: everything but node_modules/. */
const shopSelected = 8;

/** `count` JavaScript files, each with one eval finding on its second line (and a README). */
function modules(count: number): Record<string, string> {
  const files: Record<string, string> = { 'README.md': '# Modules\n' };
  for (let i = 1; i <= count; i++) {
    const n = String(i).padStart(2, '0');
    files[`src/mod${n}.js`] = `// module ${n}\nmodule.exports = (input${n}) => eval(input${n});\n`;
  }
  return files;
}

const logs = captureLogs();
let suite: JobsSuite;
let git: GitServer;
let scratch: string;
let reposRoot: string;
let fileRoot: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'scan-workflow-'));
  reposRoot = path.join(scratch, 'served');
  fileRoot = path.join(scratch, 'file-root');
  await mkdir(fileRoot, { recursive: true });
  git = await startGitServer(reposRoot);
  // Trace level: the most the app ever logs (the token test reads it all).
  suite = await startJobsSuite('scans', { env: { SCAN_ALLOWED_HOSTS: '127.0.0.1', SCAN_FILE_ROOTS: fileRoot, LOG_LEVEL: 'trace' }, logTo: logs.stream });
});
afterAll(async () => {
  await suite?.stop();
  await git?.close();
  await rm(scratch, { recursive: true, force: true });
});

const token = () => suite.admin.accessToken;
const audit = () => new AuditScope({ type: 'user', id: suite.admin.userId, tenantId: suite.admin.tenantId });
const deps = () => ({ sequelize: suite.t.sequelize, temporal: suite.t.temporal, config: suite.t.config, blobs: suite.t.blobs });

/** A bare repository served by the loopback git server, at `<git.url>/<name>.git`. */
async function served(name: string, files: Record<string, string>) {
  const repo = await makeRepository(reposRoot, `${name}.git`, files);
  return { ...repo, url: `${git.url}/${name}.git` };
}

/** Starts a scan through the service (for tuning, or a source, the API does not take), as the suite's admin; answers GET /jobs/:id. */
async function startServiceScan(projectId: string, source: ScanRequest['source'], tuning: ScanRequest['tuning'] = {}): Promise<JobBody> {
  const { job } = await startScan(deps(), audit(), { tenantId: suite.admin.tenantId, projectId, requestedBy: `user:${suite.admin.userId}`, source, mode: 'full', tuning });
  return (await suite.t.get(`/api/v1/jobs/${job.id}`, { token: token() })).body as JobBody;
}

async function scanViaApi(projectId: string, body: unknown): Promise<JobBody> {
  const res = await suite.t.post(`/api/v1/projects/${projectId}/scans`, body, { token: token() });
  expect(res.status).toBe(202);
  return res.body as JobBody;
}

/** A multipart upload of a ZIP through the API (the harness's helpers send JSON only), its answer checked against the OpenAPI document as theirs are. */
async function uploadScan(projectId: string, archive: Buffer, fileName: string): Promise<TestResponse> {
  const url = `/api/v1/projects/${projectId}/scans`;
  const res = await suite.t
    .raw()
    .post(url)
    .set('Authorization', `Bearer ${token()}`)
    .field('mode', 'full')
    .attach('archive', archive, { filename: fileName, contentType: 'application/zip' });
  responseValidator(suite.t.openapi)('post', url, res.status, String(res.headers['content-type'] ?? ''), res.body);
  return { status: res.status, body: res.body, headers: res.headers, text: res.text };
}

const finished = (job: JobBody, what = 'the scan') => waitForJob(suite.t, token(), job.id, isFinished, what);

/** Waits for the job to finish, expects it completed, and for its workflow to close (the job row is written just before). */
async function completed(job: JobBody): Promise<JobBody> {
  const done = await finished(job);
  expect({ status: done.status, error: done.error }).toEqual({ status: 'completed', error: null });
  await suite.t.temporal.workflow.getHandle(done.workflowId).result();
  return done;
}

/** GET /projects/:id/scans → the newest scan, then GET /scans/:id. */
async function latestScan(projectId: string) {
  const list = await suite.t.get(`/api/v1/projects/${projectId}/scans`, { token: token() });
  expect(list.status).toBe(200);
  const res = await suite.t.get(`/api/v1/scans/${list.body.items[0].id}`, { token: token() });
  expect(res.status).toBe(200);
  return res.body;
}

interface IssueBody {
  id: string;
  ruleId: string;
  path: string;
  startLine: number;
  startColumn: number;
  severity: string;
  status: string;
  isNew: boolean;
  lastSeenScanId: string;
}

/** Every issue of the project, through the API's pages. */
async function issuesOf(projectId: string): Promise<IssueBody[]> {
  const all: IssueBody[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : '?limit=2';
    const res = await suite.t.get(`/api/v1/projects/${projectId}/issues${query}`, { token: token() });
    expect(res.status).toBe(200);
    all.push(...(res.body.items as IssueBody[]));
    cursor = res.body.nextCursor;
  } while (cursor);
  return all;
}

const described = (issues: IssueBody[]) => issues.map((i) => `${i.path}:${i.startLine} ${i.ruleId} ${i.severity}`).sort();

/** The workflow's input, decoded from the first event of its history. */
function inputOf(history: History): unknown {
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (!payload) throw new Error('no workflow input in the history');
  return defaultPayloadConverter.fromPayload(payload);
}

const scheduledActivities = (history: History) => (history.events ?? []).flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);

/** Every run of a workflow, first to last, following each run's link to the one it continued. */
async function runsOf(workflowId: string): Promise<{ runId: string; history: History }[]> {
  const runs: { runId: string; history: History }[] = [];
  let runId: string | undefined = (await suite.t.temporal.workflow.getHandle(workflowId).describe()).runId;
  while (runId) {
    const history = await suite.t.temporal.workflow.getHandle(workflowId, runId).fetchHistory();
    runs.unshift({ runId, history });
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return runs;
}

/**
 * Holds, in an open transaction of its own connection, an uncommitted issue with the identity
 * (project, fingerprint, occurrence) of the first finding in `file`: the scan batch that records
 * that finding waits for this transaction (an upsert on a unique key waits for an in-progress
 * insert of the same key), while earlier batches go through. `release()` rolls it back.
 */
async function holdFinding(project: { id: string }, file: { path: string; text: string }): Promise<RowLock> {
  const [finding] = analyzeSource({ path: file.path, language: 'javascript', text: file.text });
  if (!finding) throw new Error(`${file.path} has no finding to hold`);
  return holdTransaction(async (client) => {
    await client.query(
      `INSERT INTO issues (id, tenant_id, project_id, fingerprint, occurrence, rule_id, source, title, message, severity, path, start_line, end_line, start_column, matched_text)
       VALUES ($1, $2, $3, $4, $5, $6, 'rule', 'held', 'held', 'high', $7, 1, 1, 1, 'held')`,
      [randomUUID(), suite.admin.tenantId, project.id, issueFingerprint(finding), finding.occurrence, finding.ruleId, file.path],
    );
  });
}

describe('a git repository scanned through the API', () => {
  test('completes with the commit, files, findings by severity and duration on the scan, and the findings as issues', async () => {
    const repo = await served(`shop-${randomUUID()}`, shopFiles);
    const project = await createProject(suite.t, token(), 'scan-git');
    const started = await scanViaApi(project.id, { source: { type: 'git', url: repo.url } });
    expect(started).toMatchObject({ kind: 'scanRepository', status: 'queued', projectId: project.id });
    const job = await completed(started);
    expect(job.counters).toMatchObject({ filesTotal: shopSelected, filesAnalyzed: shopSelected, filesFailed: 0, issuesFound: shopFindings.length });

    const scan = await latestScan(project.id);
    expect(scan).toMatchObject({
      projectId: project.id,
      jobId: job.id,
      status: 'completed',
      mode: 'full',
      source: { type: 'git', url: repo.url },
      commitSha: repo.commit,
      archiveSha256: null,
      filesTotal: shopSelected,
      filesAnalyzed: shopSelected,
      filesCarried: 0,
      filesSkipped: 1, // node_modules/, as one entry (nothing is checked out: no .git/ to skip)
      findings: shopSeverities,
      newIssues: shopFindings.length,
      fixedIssues: 0,
      warnings: [],
      error: null,
    });
    expect(scan.durationMs).toEqual(expect.any(Number));
    expect(scan.durationMs).toBeGreaterThanOrEqual(0);
    expect(Date.parse(scan.finishedAt)).toBeGreaterThanOrEqual(Date.parse(scan.startedAt));

    const issues = await issuesOf(project.id);
    expect(described(issues)).toEqual(shopFindings);
    expect(issues.every((i) => i.status === 'open' && i.isNew && i.lastSeenScanId === scan.id)).toBe(true);
    // Each file's content hash, taken by its batch from the bytes it analyzed: what a later incremental scan compares with.
    const recorded = await ScanFile.findAll({ where: { scanId: scan.id }, attributes: ['path', 'contentHash'] });
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
    expect(Object.fromEntries(recorded.map((f) => [f.path, f.contentHash]))).toEqual(
      Object.fromEntries(Object.entries(shopFiles).flatMap(([file, text]) => (file.startsWith('node_modules/') ? [] : [[file, sha256(text)]]))),
    );
    // The secret is shown masked, never whole.
    const secret = issues.find((i) => i.ruleId === 'secret-aws-access-key');
    const detail = await suite.t.get(`/api/v1/issues/${secret?.id ?? ''}`, { token: token() });
    expect(detail.status).toBe(200);
    expect(JSON.stringify(detail.body)).not.toContain(fakeAwsAccessKeyId(7));

    // The workflow still answers its progress query once closed: the final stage and counts.
    const progress = await suite.t.temporal.workflow.getHandle(job.workflowId).query<ScanProgress>('progress');
    expect(progress).toMatchObject({ stage: 'completed', filesTotal: shopSelected, filesAnalyzed: shopSelected, issuesFound: shopFindings.length });
    // The tree is gone from the worker's disk.
    expect(existsSync(workspaceDir(suite.t.config, scan.id))).toBe(false);
  });

  test('a file that cannot be read (a name that is not UTF-8) becomes a scan warning, and the scan completes', async () => {
    // Real repositories carry such names (Latin-1 from old systems): git checks them out byte for
    // byte, and Node's UTF-8 directory listing cannot name them back to open them.
    const name = `latin1-${randomUUID()}`;
    await makeRepository(
      reposRoot,
      `${name}.git`,
      {
        'good.js': 'module.exports = (input) => eval(input);\n',
        'caf\xe9.js': 'module.exports = (input) => eval(input);\n',
      },
      { byteNames: true },
    );
    const project = await createProject(suite.t, token(), 'scan-warning');
    const job = await completed(await scanViaApi(project.id, { source: { type: 'git', url: `${git.url}/${name}.git` } }));
    expect(job.counters).toMatchObject({ filesTotal: 2, filesAnalyzed: 1, filesFailed: 1, issuesFound: 1 });

    const scan = await latestScan(project.id);
    expect(scan).toMatchObject({ status: 'completed', filesTotal: 2, filesAnalyzed: 1, findings: { high: 1 } });
    expect(scan.warnings).toEqual([{ path: 'caf\uFFFD.js', message: expect.stringMatching(/^Could not analyze: /) }]);
    // The warning names the file, not where the worker keeps its trees.
    expect(scan.warnings[0].message).not.toContain(suite.t.config.AUDITFLOW_DATA_DIR);
    expect(described(await issuesOf(project.id))).toEqual(['good.js:1 js-eval high']);
  });
});

describe('the scan’s tree on a worker', () => {
  test('steps that start at once on a worker without it share one fetch, and each reads the whole tree', async () => {
    const name = `concurrent-${randomUUID()}`;
    await makeRepository(reposRoot, `${name}.git`, shopFiles);
    const project = await createProject(suite.t, token(), 'scan-concurrent-fetch');
    const scan = await Scan.create({
      id: randomUUID(),
      tenantId: suite.admin.tenantId,
      projectId: project.id,
      jobId: null,
      source: { type: 'git', url: `${git.url}/${name}.git` },
      mode: 'full',
      baseScanId: null,
    });
    const clones = () => git.requests.filter((r) => r.startsWith(`GET /${name}.git/info/refs`)).length;
    const fetched = await Promise.all(Array.from({ length: 4 }, () => ensureWorkspace(deps(), scan, {})));
    try {
      expect(clones()).toBe(1);
      expect(new Set(fetched.map((f) => f.commitSha)).size).toBe(1);
      for (const { tree } of fetched) expect((await tree.read({ path: 'src/app.js' })).toString('utf8')).toBe(shopFiles['src/app.js']);
      // Only the finished tree is there: nothing half-made beside it.
      expect(readdirSync(path.dirname(workspaceDir(suite.t.config, scan.id))).filter((entry) => entry.includes(scan.id))).toEqual([scan.id]);
    } finally {
      for (const { tree } of fetched) await tree.close();
      await removeWorkspace(suite.t.config, scan.id);
    }
    expect(existsSync(workspaceDir(suite.t.config, scan.id))).toBe(false);
  });
});

describe('a GitHub repository whose token is in the vault', () => {
  test('is fetched with the token the project references; the token reaches no history, job row, event or log', async () => {
    const [secret] = await createSecrets(suite.t, suite.admin, ['github-token']);
    if (!secret) throw new Error('unreachable');
    const hostedRoot = path.join(scratch, `hosted-${randomUUID()}`);
    const repo = await makeRepository(path.join(hostedRoot, 'acme'), 'widgets.git', shopFiles);
    const host = await startGitServer(hostedRoot, { requireToken: secret.value });
    try {
      const source = { type: 'github' as const, repo: 'acme/widgets', baseUrl: host.url };
      // Without the credential the host refuses, and so does the scan (for good: no retry can mend it).
      const anonymous = await createProject(suite.t, token(), 'scan-github-anonymous');
      const refused = await finished(await startServiceScan(anonymous.id, source));
      expect(refused.status).toBe('failed');
      expect(refused.error?.message).toMatch(/refused the credentials/);
      expect(host.requests.length).toBeGreaterThan(0);
      expect(host.requests.every((r) => r.endsWith('auth=no'))).toBe(true);

      // The API takes https base URLs only: this loopback host speaks http, so the service starts it.
      const project = await createProject(suite.t, token(), 'scan-github', { credentials: { github: secret.reference } });
      const before = host.requests.length;
      const job = await completed(await startServiceScan(project.id, source));
      expect(host.requests.length).toBeGreaterThan(before);
      expect(host.requests.slice(before).every((r) => r.endsWith('auth=yes'))).toBe(true);
      const scan = await latestScan(project.id);
      expect(scan).toMatchObject({ status: 'completed', commitSha: repo.commit, source, findings: shopSeverities });

      const where = { secret: secret.value, temporal: suite.t.temporal, workflows: [job.workflowId], jobIds: [job.id], logs: logs.lines() };
      await expectNoSecretLeaks(where);
      // Nothing leaked because everything was read, not because nothing was.
      const { scanned } = await scanForSecret(where);
      expect(scanned.historyEvents).toBeGreaterThan(10);
      expect(scanned.payloads).toBeGreaterThan(0);
      expect(scanned.jobEvents).toBeGreaterThan(3);
      expect(scanned.logLines).toBeGreaterThan(0);
      expect(JSON.stringify(scan)).not.toContain(secret.value);
    } finally {
      await host.close();
    }
  });
});

describe('a ZIP upload', () => {
  test('is scanned from the blob store: the workflow carries ids, never the content; a planted .git never runs', async () => {
    const marker = path.join(scratch, `fsmonitor-ran-${randomUUID()}`);
    const contentMarker = `unique-content-${randomUUID()}`;
    const planted = {
      '.git/HEAD': 'ref: refs/heads/main\n',
      '.git/config': `[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = touch ${marker}\n`,
      '.git/hooks/post-checkout': `#!/bin/sh\ntouch ${marker}\n`,
    };
    const files = { ...shopFiles, 'docs/notes.txt': `${contentMarker}\n`, ...planted };
    const emptyDirectories = ['.git/objects/', '.git/refs/'];
    await expectArmed(planted, emptyDirectories);

    const archive = await zipOf(files, emptyDirectories);
    const project = await createProject(suite.t, token(), 'scan-zip');
    const res = await uploadScan(project.id, archive, 'shop.zip');
    expect(res.status).toBe(202);
    const job = await completed(res.body as JobBody);

    const scan = await latestScan(project.id);
    const sha256 = createHash('sha256').update(archive).digest('hex');
    expect(scan).toMatchObject({
      status: 'completed',
      source: { type: 'zip', fileName: 'shop.zip', sha256, bytes: archive.length },
      archiveSha256: sha256,
      commitSha: null,
      filesTotal: shopSelected + 1, // and docs/notes.txt; nothing of .git/
      findings: shopSeverities,
      warnings: [],
    });
    expect(described(await issuesOf(project.id))).toEqual(shopFindings);
    expect(existsSync(marker)).toBe(false);
    expect(await ScanFile.count({ where: { scanId: scan.id, path: { [Op.like]: '%.git/%' } } })).toBe(0);

    // The archive is in the blob store under the project's prefix; the workflow has only the ids.
    const row = await Scan.findByPk(scan.id, { rejectOnEmpty: true });
    if (row.source.type !== 'zip') throw new Error('unreachable');
    expect(row.source.blobKey).toMatch(new RegExp(`^projects/${project.id}/uploads/`));
    expect(await suite.t.blobs.exists(row.source.blobKey)).toBe(true);
    const history = await suite.t.temporal.workflow.getHandle(job.workflowId).fetchHistory();
    expect(inputOf(history)).toEqual({ jobId: job.id, tenantId: suite.admin.tenantId, projectId: project.id, params: expect.objectContaining({ scanId: scan.id }) });
    expect(JSON.stringify(inputOf(history)).length).toBeLessThan(1000);
    await expectNoSecretLeaks({ secret: contentMarker, temporal: suite.t.temporal, workflows: [job.workflowId], jobIds: [job.id] });
    expect(existsSync(workspaceDir(suite.t.config, scan.id))).toBe(false);
  });
});

/**
 * The planted repository is a real trap: git run in a tree holding it (as a scanner that ran
 * `git status` in an extracted upload would) runs the fsmonitor command.
 */
async function expectArmed(planted: Record<string, string>, emptyDirectories: string[]): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'scan-armed-'));
  try {
    const marker = path.join(dir, 'ran');
    for (const [name, content] of Object.entries(planted)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), content.replaceAll(/touch \S+/g, `touch ${marker}`));
    }
    for (const name of emptyDirectories) await mkdir(path.join(dir, name), { recursive: true });
    await execFileAsync('git', ['status', '--short'], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } }).catch(() => undefined);
    expect(existsSync(marker)).toBe(true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('history stays bounded', () => {
  test('a scan continued as new every two batches spans several runs, none scheduling more than two batches, and finds what one run finds', async () => {
    const bareDir = path.join(fileRoot, `modules-${randomUUID()}.git`);
    await makeRepository(path.dirname(bareDir), path.basename(bareDir), modules(11));
    const source = { type: 'git' as const, url: `file://${bareDir}` };

    const project = await createProject(suite.t, token(), 'scan-bounded');
    const job = await completed(await startServiceScan(project.id, source, { batchSize: 2, batchesPerRun: 2, parallelism: 2 }));
    // 12 files in batches of 2: 6 batches, 2 per run.
    expect(job.counters).toMatchObject({ filesTotal: 12, filesAnalyzed: 12, filesFailed: 0, issuesFound: 11 });
    const runs = await runsOf(job.workflowId);
    expect(runs.length).toBe(3);
    const batchesPerRun = runs.map((r) => scheduledActivities(r.history).filter((a) => a === 'analyzeScanBatch').length);
    expect(batchesPerRun).toEqual([2, 2, 2]);
    expect(runs.map((r) => scheduledActivities(r.history).filter((a) => a === 'prepareScan' || a === 'finalizeScan'))).toEqual([['prepareScan'], [], ['finalizeScan']]);
    const last = runs.at(-1)?.history.events?.at(-1);
    expect(last?.workflowExecutionCompletedEventAttributes).toBeTruthy();
    for (const run of runs.slice(0, -1)) expect(run.history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes).toBeTruthy();

    // The same tree with the default tuning (one batch, one run), through the API.
    const reference = await createProject(suite.t, token(), 'scan-unbounded');
    const referenceJob = await completed(await scanViaApi(reference.id, { source }));
    expect((await runsOf(referenceJob.workflowId)).length).toBe(1);
    const key = (i: IssueBody) => `${i.path}:${i.startLine}:${i.startColumn} ${i.ruleId} ${i.severity}`;
    const tuned = (await issuesOf(project.id)).map(key).sort();
    expect(tuned).toHaveLength(11);
    expect(tuned).toEqual((await issuesOf(reference.id)).map(key).sort());
  });
});

describe('cancelling a running scan', () => {
  test('reports progress while it runs; cancelled, the job and scan end cancelled and the working tree is removed', async () => {
    const files = modules(4);
    const repo = await served(`held-${randomUUID()}`, files);
    const project = await createProject(suite.t, token(), 'scan-cancel');
    // One file per batch, one batch at a time: README.md, then src/mod01.js… The third batch (mod02) waits.
    const lock = await holdFinding(project, { path: 'src/mod02.js', text: files['src/mod02.js'] ?? '' });
    let job: JobBody;
    try {
      job = await startServiceScan(project.id, { type: 'git', url: repo.url }, { batchSize: 1, parallelism: 1 });
      await blockedOn(suite.t, lock);
      const progress = await suite.t.temporal.workflow.getHandle(job.workflowId).query<ScanProgress>('progress');
      expect(progress).toMatchObject({ stage: 'analyzing', filesTotal: 5, filesAnalyzed: 2, issuesFound: 1 });
      const running = await suite.t.get(`/api/v1/jobs/${job.id}`, { token: token() });
      expect(running.body).toMatchObject({ status: 'running', progress: { stage: 'analyzing', counters: { filesTotal: 5, filesAnalyzed: 2, filesFailed: 0, issuesFound: 1 } } });
      const scanRow = await Scan.findOne({ where: { jobId: job.id }, rejectOnEmpty: true });
      expect(existsSync(workspaceDir(suite.t.config, scanRow.id))).toBe(true);

      const cancel = await suite.t.post(`/api/v1/jobs/${job.id}/cancel`, undefined, { token: token() });
      expect(cancel.status).toBe(202);
      expect((await finished(job)).status).toBe('cancelled');
      const scan = await latestScan(project.id);
      expect(scan).toMatchObject({ status: 'cancelled', jobId: job.id });
      expect(scan.finishedAt).toEqual(expect.any(String));
      expect(existsSync(workspaceDir(suite.t.config, scan.id))).toBe(false);
    } finally {
      await lock.release();
    }
    // The batch that waited ends too; the tree stays gone once nothing of the scan runs any more.
    await waitUntil('the held batch has ended', () => {
      const runs = suite.worker.activityRuns.filter((r) => r.workflowId === job.workflowId && r.type === 'analyzeScanBatch');
      return Promise.resolve(runs.length === 3 && runs.every((r) => r.outcome !== undefined));
    });
    const scan = await Scan.findOne({ where: { jobId: job.id }, rejectOnEmpty: true });
    expect(scan.status).toBe('cancelled');
    expect(existsSync(workspaceDir(suite.t.config, scan.id))).toBe(false);
  });
});

describe('a hostile source given to the API', () => {
  test('is refused before any connection is made, and no scan is recorded', async () => {
    const canary = await startCanary();
    try {
      const project = await createProject(suite.t, token(), 'scan-hostile');
      const cases: [unknown, string][] = [
        // 127.0.0.1 is allowlisted: only the credentials in the URL stop this one.
        [{ type: 'git', url: `http://user:tok@127.0.0.1:${canary.port}/x.git` }, 'credentials-in-url'],
        [{ type: 'git', url: `http://localhost:${canary.port}/x.git` }, 'host-not-allowed'],
        [{ type: 'git', url: 'ext::sh -c touch% /tmp/pwned' }, 'scheme-not-allowed'],
        [{ type: 'git', url: `file://${scratch}` }, 'path-outside-roots'],
        [{ type: 'github', repo: 'acme/widgets', baseUrl: 'https://169.254.169.254' }, 'non-public-address'],
      ];
      for (const [source, code] of cases) {
        const res = await suite.t.post(`/api/v1/projects/${project.id}/scans`, { source }, { token: token() });
        expect({ status: res.status, type: res.body.type, code: res.body.code }).toEqual({ status: 422, type: '/problems/unsafe-repository-url', code });
      }
      expect(canary.hits()).toBe(0);
      expect((await suite.t.get(`/api/v1/projects/${project.id}/scans`, { token: token() })).body.items).toEqual([]);
    } finally {
      await canary.close();
    }
  });
});

describe('deleting a project after a scan', () => {
  test('removes its issues, scans (with their files) and uploaded blobs', async () => {
    const project = await createProject(suite.t, token(), 'scan-delete');
    const upload = await uploadScan(project.id, await zipOf(shopFiles), 'shop.zip');
    expect(upload.status).toBe(202);
    await completed(upload.body as JobBody);

    const scanIds = (await Scan.findAll({ where: { projectId: project.id }, attributes: ['id'] })).map((s) => s.id);
    const prefix = `projects/${project.id}/`;
    expect(scanIds).toHaveLength(1);
    expect(await Issue.count({ where: { projectId: project.id } })).toBe(shopFindings.length);
    expect(await ScanFile.count({ where: { scanId: scanIds } })).toBe(shopSelected);
    expect(await suite.t.blobs.countPrefix(prefix)).toBe(1);

    const res = await suite.t.delete(`/api/v1/projects/${project.id}`, { token: token() });
    expect(res.status).toBe(202);
    const job = await waitForJob(suite.t, token(), res.body.id, isFinished, 'the deletion');
    expect({ status: job.status, error: job.error }).toEqual({ status: 'completed', error: null });
    expect(job.counters).toMatchObject({ jobs: 1, issues: shopFindings.length, scans: 1, blobs: 1 });
    expect(await Issue.count({ where: { projectId: project.id } })).toBe(0);
    expect(await Scan.count({ where: { projectId: project.id } })).toBe(0);
    expect(await ScanFile.count({ where: { scanId: scanIds } })).toBe(0);
    expect(await suite.t.blobs.countPrefix(prefix)).toBe(0);
    expect((await suite.t.get(`/api/v1/projects/${project.id}`, { token: token() })).status).toBe(404);
  });
});
