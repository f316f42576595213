import { createRequire } from 'node:module';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { Issue, JobEvent, LlmUsage, ScanFile } from '../../db';
import { registerTenant, type Member, type TestApp } from '../harness';
import { makeRepository, pushCommit, startGitServer, type GitServer } from '../harness/git-server';
import { startLlmStandIn, type LlmStandIn, type LlmStandInOptions, type RecordedLlmRequest } from '../harness/llm-stand-in';
import { createTestLlmWorker } from '../harness/worker';
import { createProject, createSecrets, isFinished, startJobsSuite, waitForJob, type JobBody, type JobsSuite } from '../jobs/job-helpers';

/*
 * Issues across scans (issue 6, criteria 5, 7 and 8), end to end: real Postgres, Temporal and
 * workers, repositories served by `git http-backend` on 127.0.0.1 (new commits pushed between
 * scans) or uploaded as ZIPs, models played by an OpenAI stand-in on 127.0.0.1.
 *
 *  - a re-scan keeps an issue's identity and triage across line shifts, moves its last sighting,
 *    flags new issues, marks vanished ones fixed and reopens those that come back;
 *  - inline suppression records findings as suppressed, unless the project turns it off;
 *  - an incremental scan analyzes only changed files and ends with the issues a full scan of the
 *    same tree ends with (two projects with identical histories, one scanned each way);
 *  - the LLM analyzer: skipped for the built-in provider, run on the LLM queue for a real model
 *    (findings validated, one repair of an invalid answer, deduplicated against the rules, spend
 *    on record), skipped with the gateway's reason once the budget is spent.
 */

/** The parts of yazl (a real ZIP writer, no type package installed) these tests use. */
interface YazlZipFile {
  addBuffer(data: Buffer, name: string): void;
  end(): void;
  outputStream: Readable;
}
const yazl = createRequire(__filename)('yazl') as { ZipFile: new () => YazlZipFile };

let suite: JobsSuite | undefined;
let t: TestApp;
let admin: Member;
let dir: string;
let reposRoot: string;
let gitServer: GitServer | undefined;
let llmWorker: { worker: Worker; connection: NativeConnection; running: Promise<void> } | undefined;
const standIns: LlmStandIn[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'issues-tracking-'));
  reposRoot = path.join(dir, 'repos');
  await mkdir(reposRoot, { recursive: true });
  gitServer = await startGitServer(reposRoot);
  suite = await startJobsSuite('issues-tracking', { env: { SCAN_ALLOWED_HOSTS: '127.0.0.1', LLM_ALLOWED_HOSTS: '127.0.0.1' } });
  ({ t, admin } = suite);
  // Model calls (the scans' review batches) run only on the LLM task queue.
  const { worker, connection } = await createTestLlmWorker(t, { identity: 'llm-worker' });
  llmWorker = { worker, connection, running: worker.run() };
});

afterAll(async () => {
  if (llmWorker) {
    llmWorker.worker.shutdown();
    await llmWorker.running;
    await llmWorker.connection.close();
  }
  await Promise.all(standIns.map((s) => s.close()));
  await suite?.stop();
  await gitServer?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// --- repositories ---------------------------------------------------------------------------

interface Repository {
  name: string;
  bareDir: string;
  /** The clone URL on the loopback git server. */
  url: string;
}

let repoCount = 0;
async function repository(label: string, files: Record<string, string>): Promise<Repository> {
  const name = `${label}-${++repoCount}.git`;
  const made = await makeRepository(reposRoot, name, files);
  return { name, bareDir: made.bareDir, url: `${gitServer?.url}/${name}` };
}

/** A ZIP of `files`, written by a real ZIP writer. */
async function zipOf(files: Record<string, string>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, content] of Object.entries(files)) zip.addBuffer(Buffer.from(content), name);
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

// --- scans and issues through the API -------------------------------------------------------

interface ScanBody {
  id: string;
  jobId: string;
  status: string;
  mode: 'full' | 'incremental';
  filesTotal: number;
  filesAnalyzed: number;
  filesCarried: number;
  findings: Record<string, number>;
  newIssues: number;
  fixedIssues: number;
  llm: Record<string, unknown>;
  [key: string]: unknown;
}

interface IssueBody {
  id: string;
  ruleId: string;
  source: 'rule' | 'llm';
  title: string;
  severity: string;
  cwe: string | null;
  path: string;
  startLine: number;
  endLine: number;
  status: string;
  statusComment: string | null;
  suppressed: boolean;
  isNew: boolean;
  firstSeenScanId: string | null;
  lastSeenScanId: string | null;
  fixedInScanId: string | null;
  codeContext?: { startLine: number; lines: string[] } | null;
  [key: string]: unknown;
}

/** Waits for a scan's job to complete and returns the job and the scan (GET /scans/:id). */
async function completedScan(token: string, projectId: string, started: { status: number; body: JobBody; text: string }): Promise<{ job: JobBody; scan: ScanBody }> {
  if (started.status !== 202) throw new Error(`POST /projects/${projectId}/scans answered ${started.status}: ${started.text}`);
  const job = await waitForJob(t, token, started.body.id, isFinished, 'the scan');
  if (job.status !== 'completed') throw new Error(`the scan ended ${job.status}: ${JSON.stringify(job.error)}`);
  const scans = await t.get(`/api/v1/projects/${projectId}/scans?limit=100`, { token });
  const listed = (scans.body.items as ScanBody[]).find((s) => s.jobId === job.id);
  if (!listed) throw new Error(`no scan of job ${job.id} in the project's scans`);
  const scan = await t.get(`/api/v1/scans/${listed.id}`, { token });
  expect(scan.status).toBe(200);
  return { job, scan: scan.body as ScanBody };
}

function scanGit(projectId: string, repo: Repository, mode: 'full' | 'incremental' = 'full', token = admin.accessToken) {
  return t
    .post(`/api/v1/projects/${projectId}/scans`, { source: { type: 'git', url: repo.url }, mode }, { token })
    .then((res) => completedScan(token, projectId, res));
}

async function scanZip(projectId: string, files: Record<string, string>, mode: 'full' | 'incremental' = 'full', token = admin.accessToken) {
  const res = await t
    .raw()
    .post(`/api/v1/projects/${projectId}/scans`)
    .set('Authorization', `Bearer ${token}`)
    .field('mode', mode)
    .attach('archive', await zipOf(files), { filename: 'source.zip', contentType: 'application/zip' });
  return completedScan(token, projectId, { status: res.status, body: res.body as JobBody, text: res.text });
}

/** Every issue of the project (all pages), suppressed ones included unless told otherwise. */
async function issuesOf(projectId: string, query: Record<string, string> = {}, token = admin.accessToken): Promise<IssueBody[]> {
  const items: IssueBody[] = [];
  let cursor: string | null = null;
  do {
    const params = new URLSearchParams({ includeSuppressed: 'true', sort: 'path', limit: '100', ...query, ...(cursor ? { cursor } : {}) });
    const res = await t.get(`/api/v1/projects/${projectId}/issues?${params.toString()}`, { token });
    if (res.status !== 200) throw new Error(`GET issues answered ${res.status}: ${res.text}`);
    items.push(...(res.body.items as IssueBody[]));
    cursor = res.body.nextCursor as string | null;
  } while (cursor);
  // The API orders by path, then id: by line within a file too, for readable expectations.
  return items.sort((a, b) => a.path.localeCompare(b.path) || a.startLine - b.startLine || a.ruleId.localeCompare(b.ruleId));
}

/** The one issue of `rule` starting at `line` of `file`. */
function issueAt(issues: IssueBody[], ruleId: string, file: string, line: number): IssueBody {
  const found = issues.filter((i) => i.ruleId === ruleId && i.path === file && i.startLine === line);
  if (found.length !== 1) throw new Error(`expected one ${ruleId} issue at ${file}:${line}, found ${found.length}: ${JSON.stringify(issues.map((i) => [i.ruleId, i.path, i.startLine]))}`);
  return found[0] as IssueBody;
}

async function triage(issueId: string, status: string, comment?: string): Promise<IssueBody> {
  const res = await t.patch(`/api/v1/issues/${issueId}`, { status, ...(comment === undefined ? {} : { comment }) }, { token: admin.accessToken });
  if (res.status !== 200) throw new Error(`PATCH /issues/${issueId} answered ${res.status}: ${res.text}`);
  return res.body as IssueBody;
}

/**
 * A project's issue set as a full scan would leave it, independent of ids and scans: identity
 * (rule, path, occurrence, fingerprint), where it is, its status and whether it is suppressed.
 */
async function issueSet(projectId: string): Promise<string[]> {
  const rows = await Issue.findAll({ where: { projectId } });
  return rows
    .map((i) => [i.fingerprint, i.occurrence, i.ruleId, i.path, i.startLine, i.endLine, i.status, i.suppressed ? 'suppressed' : ''].join(' '))
    .sort();
}

// --- re-scans -------------------------------------------------------------------------------

const appV1 = [
  "const express = require('express');",
  '',
  'function handler(req, res) {',
  '  eval(req.query.code);',
  "  db.query('SELECT * FROM users WHERE id = ' + req.params.id);",
  "  res.send('ok');",
  '}',
  '',
  'function twice(input) {',
  '  eval(input);',
  '  eval(input);',
  '}',
  '',
].join('\n');

/** Three lines inserted above everything, the SQL line removed, an innerHTML assignment added. */
const appV2 = [
  '// Request handlers.',
  '// Every line below moved down by three,',
  '// and the query line is gone.',
  "const express = require('express');",
  '',
  'function handler(req, res) {',
  '  eval(req.query.code);',
  "  res.send('ok');",
  '}',
  '',
  'function twice(input) {',
  '  eval(input);',
  '  eval(input);',
  '}',
  '',
  'function render(el, html) {',
  '  el.innerHTML = html;',
  '}',
  '',
].join('\n');

/** The query line is back (in its old place relative to the handler). */
const appV3 = appV2.replace("  eval(req.query.code);\n", "  eval(req.query.code);\n  db.query('SELECT * FROM users WHERE id = ' + req.params.id);\n");

const utilPy = ['import os', '', 'def run(cmd):', "    os.system('ls ' + cmd)", ''].join('\n');

describe('re-scans', () => {
  test('issues keep their identity and triage across line shifts; vanished ones are fixed, new ones flagged, returning ones reopened', async () => {
    const repo = await repository('lifecycle', { 'src/app.js': appV1, 'src/util.py': utilPy, 'README.md': '# lifecycle\n' });
    const project = await createProject(t, admin.accessToken, 'lifecycle');

    // Scan 1: everything is new.
    const { scan: scan1 } = await scanGit(project.id, repo);
    expect(scan1).toMatchObject({ status: 'completed', mode: 'full', filesTotal: 3, filesAnalyzed: 3, filesCarried: 0, newIssues: 5, fixedIssues: 0 });
    const first = await issuesOf(project.id);
    expect(first.map((i) => [i.ruleId, i.path, i.startLine, i.status, i.isNew, i.firstSeenScanId, i.lastSeenScanId])).toEqual([
      ['js-eval', 'src/app.js', 4, 'open', true, scan1.id, scan1.id],
      ['js-sql-injection', 'src/app.js', 5, 'open', true, scan1.id, scan1.id],
      ['js-eval', 'src/app.js', 10, 'open', true, scan1.id, scan1.id],
      ['js-eval', 'src/app.js', 11, 'open', true, scan1.id, scan1.id],
      ['py-os-system', 'src/util.py', 4, 'open', true, scan1.id, scan1.id],
    ]);
    const evalCode = issueAt(first, 'js-eval', 'src/app.js', 4);
    const sql = issueAt(first, 'js-sql-injection', 'src/app.js', 5);
    const twiceA = issueAt(first, 'js-eval', 'src/app.js', 10);
    const twiceB = issueAt(first, 'js-eval', 'src/app.js', 11);
    const osSystem = issueAt(first, 'py-os-system', 'src/util.py', 4);

    // Two identical matches in one file: occurrences 0 and 1 of the same normalised text, two issues.
    const pair = await Issue.findAll({ where: { id: [twiceA.id, twiceB.id] }, order: [['startLine', 'ASC']] });
    expect(pair.map((i) => [i.matchedText, i.occurrence])).toEqual([
      ['eval(input)', 0],
      ['eval(input)', 1],
    ]);
    expect(pair[0]?.fingerprint).not.toBe(pair[1]?.fingerprint);

    // Triage before the next scan.
    const triaged = await triage(evalCode.id, 'false_positive', 'Only reachable from the admin console.');
    expect(triaged).toMatchObject({ status: 'false_positive', statusComment: 'Only reachable from the admin console.', statusChangedBy: `user:${admin.userId}` });

    // Scan 2: lines shifted by three, the SQL finding removed, an innerHTML finding added.
    await pushCommit(repo.bareDir, { 'src/app.js': appV2 });
    const { scan: scan2 } = await scanGit(project.id, repo);
    expect(scan2).toMatchObject({ status: 'completed', newIssues: 1, fixedIssues: 1 });
    const second = await issuesOf(project.id);
    expect(second).toHaveLength(6);

    const shifted = issueAt(second, 'js-eval', 'src/app.js', 7);
    expect(shifted).toMatchObject({
      id: evalCode.id,
      status: 'false_positive',
      statusComment: 'Only reachable from the admin console.',
      endLine: 7,
      firstSeenScanId: scan1.id,
      lastSeenScanId: scan2.id,
      isNew: false,
      fixedInScanId: null,
    });
    expect([issueAt(second, 'js-eval', 'src/app.js', 12).id, issueAt(second, 'js-eval', 'src/app.js', 13).id]).toEqual([twiceA.id, twiceB.id]);
    expect(issueAt(second, 'js-eval', 'src/app.js', 12)).toMatchObject({ status: 'open', lastSeenScanId: scan2.id, isNew: false });
    // An unchanged file's issue was seen again too.
    expect(issueAt(second, 'py-os-system', 'src/util.py', 4)).toMatchObject({ id: osSystem.id, status: 'open', lastSeenScanId: scan2.id, isNew: false });
    // The removed finding is fixed in scan 2; its last sighting stays scan 1.
    expect(second.find((i) => i.id === sql.id)).toMatchObject({ status: 'fixed', fixedInScanId: scan2.id, lastSeenScanId: scan1.id, startLine: 5 });
    // The added one is new in scan 2.
    const added = issueAt(second, 'js-inner-html', 'src/app.js', 17);
    expect(added).toMatchObject({ status: 'open', isNew: true, firstSeenScanId: scan2.id, lastSeenScanId: scan2.id });
    expect((await issuesOf(project.id, { status: 'fixed' })).map((i) => i.id)).toEqual([sql.id]);

    // The code context moved with the issue.
    const detail = await t.get(`/api/v1/issues/${evalCode.id}`, { token: admin.accessToken });
    expect(detail.body.codeContext).toEqual({ startLine: 4, lines: appV2.split('\n').slice(3, 10) });

    // Scan 3: the query line is back: the fixed issue reopens (same id, not new), the triage elsewhere stays.
    await pushCommit(repo.bareDir, { 'src/app.js': appV3 });
    const { scan: scan3 } = await scanGit(project.id, repo);
    expect(scan3).toMatchObject({ status: 'completed', newIssues: 0, fixedIssues: 0 });
    const third = await issuesOf(project.id);
    expect(third).toHaveLength(6);
    expect(issueAt(third, 'js-sql-injection', 'src/app.js', 8)).toMatchObject({
      id: sql.id,
      status: 'open',
      fixedInScanId: null,
      firstSeenScanId: scan1.id,
      lastSeenScanId: scan3.id,
      isNew: false,
    });
    expect(issueAt(third, 'js-eval', 'src/app.js', 7)).toMatchObject({ id: evalCode.id, status: 'false_positive', statusComment: 'Only reachable from the admin console.', lastSeenScanId: scan3.id });
    expect(third.every((i) => i.lastSeenScanId === scan3.id)).toBe(true);
    // Scans never touched the triage: the only status change on record is the person's.
    const audit = await t.get(`/api/v1/audit-logs?action=issue.triage&limit=100`, { token: admin.accessToken });
    expect((audit.body.items as { resourceId: string }[]).filter((e) => [evalCode.id, sql.id].includes(e.resourceId)).map((e) => e.resourceId)).toEqual([evalCode.id]);
  });
});

// --- inline suppression ---------------------------------------------------------------------

const suppressedJs = [
  'function a(x) {',
  '  eval(x); // auditflow-ignore',
  '}',
  'function b(y) {',
  '  // auditflow-ignore: js-eval -- reviewed, y is a constant table',
  '  eval(y);',
  '}',
  'function c(z) {',
  '  eval(z); // auditflow-ignore: js-inner-html',
  '}',
  '',
].join('\n');

describe('inline suppression', () => {
  test('auditflow-ignore records the finding as suppressed (listed on request, never dropped), unless the project turns it off', async () => {
    const repo = await repository('suppression', { 'src/suppressed.js': suppressedJs });
    const allowing = await createProject(t, admin.accessToken, 'suppression-on');
    const refusing = await createProject(t, admin.accessToken, 'suppression-off', { scan: { allowInlineSuppression: false } });
    const [on, off] = await Promise.all([scanGit(allowing.id, repo), scanGit(refusing.id, repo)]);

    const all = await issuesOf(allowing.id);
    expect(all.map((i) => [i.ruleId, i.startLine, i.suppressed, i.status])).toEqual([
      ['js-eval', 2, true, 'open'],
      ['js-eval', 6, true, 'open'],
      // A directive naming another rule suppresses nothing here.
      ['js-eval', 9, false, 'open'],
    ]);
    // Left out of the default listing and of the scan's counts, but recorded.
    expect((await issuesOf(allowing.id, { includeSuppressed: 'false' })).map((i) => i.startLine)).toEqual([9]);
    expect(on.scan.findings).toMatchObject({ high: 1 });

    const unsuppressed = await issuesOf(refusing.id);
    expect(unsuppressed.map((i) => [i.ruleId, i.startLine, i.suppressed])).toEqual([
      ['js-eval', 2, false],
      ['js-eval', 6, false],
      ['js-eval', 9, false],
    ]);
    expect(off.scan.findings).toMatchObject({ high: 3 });
  });
});

// --- incremental scans ----------------------------------------------------------------------

const treeA: Record<string, string> = {
  'src/a.js': 'function a(x) {\n  eval(x);\n}\n',
  'src/b.js': "function b(req, db) {\n  return db.query('SELECT * FROM t WHERE id = ' + req.id);\n}\n",
  'src/c.py': "import os\n\ndef c(cmd):\n    os.system('rm ' + cmd)\n",
  'src/d.js': 'export const d = 1;\n',
  'src/e.js': 'function e(input) {\n  eval(input);\n  eval(input);\n}\n',
};
/** b.js changed (the query gone, innerHTML added, lines shifted), c.py removed, f.js new; a, d and e unchanged. */
const changesB: Record<string, string | null> = {
  'src/b.js': "// b\nfunction b(el, html) {\n  el.innerHTML = html;\n}\nfunction b2(code) {\n  eval(code);\n}\n",
  'src/c.py': null,
  'src/f.js': 'function f(y) {\n  eval(y);\n}\n',
};
const treeB: Record<string, string> = Object.fromEntries(
  Object.entries({ ...treeA, ...changesB }).filter((entry): entry is [string, string] => entry[1] !== null),
);

/** Triage on the first scan's issues, the same in both projects: it must come out the same way. */
async function triageAlike(projectId: string): Promise<void> {
  const issues = await issuesOf(projectId);
  await triage(issueAt(issues, 'js-eval', 'src/e.js', 2).id, 'wont_fix', 'Legacy code.');
  // Marked fixed by a person while the code is unchanged: a full scan finds it again and reopens it.
  await triage(issueAt(issues, 'js-eval', 'src/a.js', 2).id, 'fixed', 'Fixed, I think.');
}

/** What the incremental scan analyzed and carried, per file. */
async function fileStates(scanId: string): Promise<Record<string, string>> {
  const files = await ScanFile.findAll({ where: { scanId }, order: [['path', 'ASC']] });
  return Object.fromEntries(files.map((f) => [f.path, f.state]));
}

/** The checks shared by git and ZIP: the incremental scan did less and ended where the full scan did. */
async function expectIncrementalEqualsFull(incremental: { projectId: string; scan: ScanBody }, full: { projectId: string; scan: ScanBody }): Promise<void> {
  expect(full.scan).toMatchObject({ mode: 'full', filesTotal: 5, filesAnalyzed: 5, filesCarried: 0 });
  expect(incremental.scan).toMatchObject({ mode: 'incremental', filesTotal: 5, filesAnalyzed: 2, filesCarried: 3 });
  expect(incremental.scan.filesAnalyzed).toBeLessThan(incremental.scan.filesTotal);
  expect(await fileStates(incremental.scan.id)).toEqual({ 'src/a.js': 'carried', 'src/b.js': 'analyzed', 'src/d.js': 'carried', 'src/e.js': 'carried', 'src/f.js': 'analyzed' });
  expect(await fileStates(full.scan.id)).toEqual({ 'src/a.js': 'analyzed', 'src/b.js': 'analyzed', 'src/d.js': 'analyzed', 'src/e.js': 'analyzed', 'src/f.js': 'analyzed' });

  const expected = await issueSet(full.projectId);
  expect(await issueSet(incremental.projectId)).toEqual(expected);
  // And what that set is: c.py's and the query's issues fixed, the reopened a.js issue open, the triage kept.
  const issues = await issuesOf(incremental.projectId);
  expect(issues.map((i) => [i.path, i.ruleId, i.startLine, i.status, i.lastSeenScanId === incremental.scan.id])).toEqual([
    ['src/a.js', 'js-eval', 2, 'open', true],
    ['src/b.js', 'js-sql-injection', 2, 'fixed', false],
    ['src/b.js', 'js-inner-html', 3, 'open', true],
    ['src/b.js', 'js-eval', 6, 'open', true],
    ['src/c.py', 'py-os-system', 4, 'fixed', false],
    ['src/e.js', 'js-eval', 2, 'wont_fix', true],
    ['src/e.js', 'js-eval', 3, 'open', true],
    ['src/f.js', 'js-eval', 2, 'open', true],
  ]);
  for (const { projectId, scan } of [incremental, full]) expect(scan).toMatchObject({ projectId, newIssues: 3, fixedIssues: 2 });
}

describe('incremental scans', () => {
  test('of a git repository: only changed and new files are analyzed, and the issues equal a full scan of the same tree', async () => {
    const repo = await repository('incremental', treeA);
    const [incremental, full] = [await createProject(t, admin.accessToken, 'incremental-git'), await createProject(t, admin.accessToken, 'full-git')];
    await Promise.all([scanGit(incremental.id, repo), scanGit(full.id, repo)]);
    await triageAlike(incremental.id);
    await triageAlike(full.id);

    await pushCommit(repo.bareDir, changesB);
    const [inc, ful] = await Promise.all([scanGit(incremental.id, repo, 'incremental'), scanGit(full.id, repo, 'full')]);
    await expectIncrementalEqualsFull({ projectId: incremental.id, scan: inc.scan }, { projectId: full.id, scan: ful.scan });
    expect(inc.scan.commitSha).toBe(ful.scan.commitSha);

    // Nothing changed since: the next incremental scan analyzes nothing and changes nothing.
    const before = await issueSet(incremental.id);
    const { scan: again } = await scanGit(incremental.id, repo, 'incremental');
    expect(again).toMatchObject({ filesTotal: 5, filesAnalyzed: 0, filesCarried: 5, newIssues: 0, fixedIssues: 0 });
    expect(await issueSet(incremental.id)).toEqual(before);
    expect((await issuesOf(incremental.id, { status: 'open,wont_fix' })).every((i) => i.lastSeenScanId === again.id)).toBe(true);
  });

  test('of ZIP uploads: the same', async () => {
    const [incremental, full] = [await createProject(t, admin.accessToken, 'incremental-zip'), await createProject(t, admin.accessToken, 'full-zip')];
    await Promise.all([scanZip(incremental.id, treeA), scanZip(full.id, treeA)]);
    await triageAlike(incremental.id);
    await triageAlike(full.id);

    const [inc, ful] = await Promise.all([scanZip(incremental.id, treeB, 'incremental'), scanZip(full.id, treeB, 'full')]);
    expect(inc.scan.archiveSha256).toBe(ful.scan.archiveSha256);
    await expectIncrementalEqualsFull({ projectId: incremental.id, scan: inc.scan }, { projectId: full.id, scan: ful.scan });
  });

  test('after a change of the project\'s scan settings, an incremental scan analyzes every file again, as a full scan would', async () => {
    const repo = await repository('settings-change', { 'src/a.js': suppressedJs, 'src/b.py': utilPy });
    const projects = [await createProject(t, admin.accessToken, 'settings-incremental'), await createProject(t, admin.accessToken, 'settings-full')];
    await Promise.all(projects.map((p) => scanGit(p.id, repo)));
    // The same tree, scanned under other rules: inline suppression off, the Python rule disabled.
    for (const p of projects) {
      const res = await t.patch(`/api/v1/projects/${p.id}`, { settings: { scan: { allowInlineSuppression: false, disabledRules: ['py-os-system'] } } }, { token: admin.accessToken });
      expect(res.status).toBe(200);
    }
    const [inc, full] = [projects[0]?.id ?? '', projects[1]?.id ?? ''];
    const [{ scan: incremental }] = await Promise.all([scanGit(inc, repo, 'incremental'), scanGit(full, repo, 'full')]);
    expect(incremental).toMatchObject({ mode: 'incremental', filesTotal: 2, filesAnalyzed: 2, filesCarried: 0 });
    expect(await issueSet(inc)).toEqual(await issueSet(full));
    expect((await issuesOf(inc)).map((i) => [i.path, i.ruleId, i.startLine, i.suppressed, i.status])).toEqual([
      ['src/a.js', 'js-eval', 2, false, 'open'],
      ['src/a.js', 'js-eval', 6, false, 'open'],
      ['src/a.js', 'js-eval', 9, false, 'open'],
      ['src/b.py', 'py-os-system', 4, false, 'fixed'],
    ]);
  });
});

// --- the LLM analyzer -----------------------------------------------------------------------

/** The file a review request is about: its user message starts `File <path> (<language>):`. */
function reviewedFile(request: RecordedLlmRequest): string | null {
  const messages = (request.body?.messages ?? []) as { role: string; content: unknown }[];
  for (const m of messages) {
    const match = typeof m.content === 'string' ? /^File (\S+) \(/.exec(m.content) : null;
    if (match) return match[1] ?? null;
  }
  return null;
}
const isRepair = (request: RecordedLlmRequest) => JSON.stringify(request.body?.messages ?? []).includes('does not match the required JSON schema');

const reviewedJs = [
  "const express = require('express');",
  'const app = express();',
  "app.get('/run', (req, res) => {",
  '  eval(req.query.code);',
  "  res.send('ok');",
  '});',
  "app.get('/admin/users', (req, res) => res.json(users));",
  '',
].join('\n');
const reviewedPy = ['def add(a, b):', '    return a + b', ''].join('\n');
const reviewedRepo = { 'src/server.js': reviewedJs, 'src/math.py': reviewedPy, 'README.md': '# reviewed\n' };

/** What the model reports on server.js: one finding the rules have (line 4, CWE-95), one they cannot (line 7). */
const modelFindings = {
  findings: [
    { line: 4, title: 'Code injection through eval', severity: 'high', cwe: 'CWE-95', message: 'Request input reaches eval.', code: 'eval(req.query.code);' },
    {
      line: 7,
      title: 'Admin route without authorization',
      severity: 'high',
      cwe: 'CWE-862',
      message: 'Anyone can list the users: check that the caller is an admin.',
      code: "app.get('/admin/users', (req, res) => res.json(users));",
    },
  ],
};

/** Answers review requests: the findings above for server.js, none for other files. */
const reviewReply = (request: RecordedLlmRequest) => JSON.stringify(reviewedFile(request) === 'src/server.js' ? modelFindings : { findings: [] });

const USAGE = { promptTokens: 100_000, completionTokens: 10_000 };
/** gpt-4o: $2.50 per million prompt tokens, $10 per million completion tokens. */
const COST_PER_CALL = 0.35;

/** A tenant whose chat model is gpt-4o at an OpenAI stand-in, with its key in the vault. */
async function openAiTenant(label: string, o: { monthlyBudgetUsd?: number; standIn?: LlmStandInOptions } = {}) {
  const owner = await registerTenant(t, label);
  const [key] = await createSecrets(t, owner, [`${label}-key`]);
  if (!key) throw new Error('unreachable');
  const standIn = await startLlmStandIn('openai', { reply: reviewReply, usage: USAGE, ...o.standIn });
  standIns.push(standIn);
  const chat = { provider: 'openai', baseUrl: standIn.url, apiKey: key.reference, model: 'gpt-4o' };
  const res = await t.put('/api/v1/llm/settings', { chat, ...(o.monthlyBudgetUsd === undefined ? {} : { monthlyBudgetUsd: o.monthlyBudgetUsd }) }, { token: owner.accessToken });
  if (res.status !== 200) throw new Error(`PUT /llm/settings answered ${res.status}: ${res.text}`);
  const project = await createProject(t, owner.accessToken, label);
  return { owner, key, standIn, project };
}

/** The review activities of a scan's workflow: the task queue they were scheduled on, the worker that ran them, how they ended. */
async function reviewActivities(workflowId: string): Promise<{ taskQueue: string; identity: string; outcome: string }[]> {
  const events = (await t.temporal.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
  const scheduled = new Map<string, string>();
  const identities = new Map<string, string>();
  const runs: { taskQueue: string; identity: string; outcome: string }[] = [];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === 'reviewScanBatchWithLlm') scheduled.set(String(e.eventId), s.taskQueue?.name ?? '');
    const started = e.activityTaskStartedEventAttributes;
    if (started) identities.set(String(started.scheduledEventId), started.identity ?? '');
    const ended = e.activityTaskCompletedEventAttributes ?? e.activityTaskFailedEventAttributes;
    const id = String(ended?.scheduledEventId);
    if (ended && scheduled.has(id)) {
      runs.push({ taskQueue: scheduled.get(id) ?? '', identity: identities.get(id) ?? '', outcome: e.activityTaskCompletedEventAttributes ? 'completed' : 'failed' });
    }
  }
  return runs;
}

async function skippedEvents(jobId: string): Promise<unknown[]> {
  return (await JobEvent.findAll({ where: { jobId, type: 'stage_skipped' }, order: [['seq', 'ASC']] })).map((e) => e.data);
}

describe('the LLM analyzer', () => {
  test('with the built-in chat provider the review stage is skipped, with the reason on record', async () => {
    const repo = await repository('builtin', reviewedRepo);
    const project = await createProject(t, admin.accessToken, 'builtin');
    const { job, scan } = await scanGit(project.id, repo);
    const reason = "The tenant's chat provider is the built-in one, which cannot analyze code; configure a real model to run the LLM analyzer.";
    expect(scan.llm).toEqual({ status: 'skipped', reason, calls: 0, costUsd: 0 });
    expect(await skippedEvents(job.id)).toEqual([{ stage: 'llm-review', reason }]);
    expect(await reviewActivities(job.workflowId)).toEqual([]);
    expect((await issuesOf(project.id)).map((i) => [i.source, i.ruleId, i.startLine])).toEqual([['rule', 'js-eval', 4]]);
    expect(await LlmUsage.count({ where: { jobId: job.id } })).toBe(0);
  });

  test("with a real model the review runs on the LLM queue: findings validated, merged with the rules' (duplicates dropped), spend on the job and the scan", async () => {
    const { owner, key, standIn, project } = await openAiTenant('llm-review');
    const repo = await repository('reviewed', reviewedRepo);
    const { job, scan } = await scanGit(project.id, repo, 'full', owner.accessToken);

    // One structured request per reviewable file (JavaScript and Python; not the README), with the key from the vault.
    expect(standIn.requests.map((r) => [r.path, reviewedFile(r), r.headers.authorization, r.body?.response_format?.json_schema?.name]).sort()).toEqual([
      ['/v1/chat/completions', 'src/math.py', `Bearer ${key.value}`, 'security_review'],
      ['/v1/chat/completions', 'src/server.js', `Bearer ${key.value}`, 'security_review'],
    ]);
    expect(await reviewActivities(job.workflowId)).toEqual([{ taskQueue: t.config.TEMPORAL_LLM_TASK_QUEUE, identity: 'llm-worker', outcome: 'completed' }]);
    expect(await skippedEvents(job.id)).toEqual([]);

    // The eval on line 4 is the rules' (one issue, not two); the unauthenticated route is the model's.
    const issues = await issuesOf(project.id, {}, owner.accessToken);
    expect(issues.map((i) => [i.source, i.ruleId, i.path, i.startLine, i.cwe, i.severity, i.status])).toEqual([
      ['rule', 'js-eval', 'src/server.js', 4, 'CWE-95', 'high', 'open'],
      ['llm', 'llm-review', 'src/server.js', 7, 'CWE-862', 'high', 'open'],
    ]);
    const llmIssue = await t.get(`/api/v1/issues/${issues[1]?.id}`, { token: owner.accessToken });
    expect(llmIssue.body).toMatchObject({ title: 'Admin route without authorization', message: 'Anyone can list the users: check that the caller is an admin.', isNew: true });
    expect(llmIssue.body.codeContext).toEqual({ startLine: 4, lines: reviewedJs.split('\n').slice(3, 8) });

    // Spend: usage rows carry the job; the total is on the scan and the job.
    const usage = await LlmUsage.findAll({ where: { jobId: job.id } });
    expect(usage.map((u) => [u.operation, u.provider, u.model, u.outcome, u.costUsd, u.projectId])).toEqual(
      Array.from({ length: 2 }, () => ['structured', 'openai', 'gpt-4o', 'ok', COST_PER_CALL, project.id]),
    );
    expect(scan.llm).toEqual({ status: 'ran', files: 2, issuesFound: 1, calls: 2, costUsd: 2 * COST_PER_CALL });
    expect(job.counters).toMatchObject({ llmCalls: 2, llmCostUsd: 2 * COST_PER_CALL });
    expect(scan.findings).toMatchObject({ high: 2 });
  });

  test('an answer that is not valid JSON gets one repair attempt, and the repaired findings are recorded', async () => {
    const { owner, standIn, project } = await openAiTenant('llm-repair', {
      standIn: { reply: (r) => (reviewedFile(r) === 'src/server.js' && !isRepair(r) ? 'Sure! Here are the findings: {"findings": [' : reviewReply(r)) },
    });
    const repo = await repository('repaired', reviewedRepo);
    const { job, scan } = await scanGit(project.id, repo, 'full', owner.accessToken);

    const serverRequests = standIn.requests.filter((r) => reviewedFile(r) === 'src/server.js');
    expect(serverRequests.map(isRepair)).toEqual([false, true]);
    // The repair shows the model its own answer and what is wrong with it.
    const repairMessages = serverRequests[1]?.body.messages as { role: string; content: string }[];
    expect(repairMessages.slice(-2)).toEqual([
      { role: 'assistant', content: 'Sure! Here are the findings: {"findings": [' },
      { role: 'user', content: expect.stringMatching(/^That answer does not match the required JSON schema: The answer is not valid JSON/) },
    ]);
    expect(scan.llm).toMatchObject({ status: 'ran', files: 2, issuesFound: 1, calls: 3 });
    expect(await reviewActivities(job.workflowId)).toEqual([{ taskQueue: t.config.TEMPORAL_LLM_TASK_QUEUE, identity: 'llm-worker', outcome: 'completed' }]);
    expect((await issuesOf(project.id, {}, owner.accessToken)).filter((i) => i.source === 'llm').map((i) => [i.ruleId, i.startLine, i.cwe])).toEqual([['llm-review', 7, 'CWE-862']]);
    expect(await LlmUsage.count({ where: { jobId: job.id } })).toBe(3);
  });

  test('a budget spent mid-review skips the stage with the gateway’s reason, and the scan still completes', async () => {
    // The first review call costs $0.35 against a budget of $0.10: the next one is refused.
    const { owner, standIn, project } = await openAiTenant('llm-budget', { monthlyBudgetUsd: 0.1 });
    const repo = await repository('budget', reviewedRepo);
    const { job, scan } = await scanGit(project.id, repo, 'full', owner.accessToken);

    const reason = expect.stringMatching(/^This tenant's monthly LLM budget of \$0\.10 is spent \(\$0\.3500 this month\): new model calls are refused until \d{4}-\d{2}-01/);
    expect(job.status).toBe('completed');
    // What the one call before the refusal cost is on record all the same.
    expect(scan).toMatchObject({ status: 'completed', llm: { status: 'skipped', reason, calls: 1, costUsd: COST_PER_CALL } });
    expect(job.counters).toMatchObject({ llmCalls: 1, llmCostUsd: COST_PER_CALL });
    expect(await skippedEvents(job.id)).toEqual([{ stage: 'llm-review', reason }]);
    // Not retried: one call reached the provider, the refused batch failed once.
    expect(standIn.requests).toHaveLength(1);
    expect(await reviewActivities(job.workflowId)).toEqual([{ taskQueue: t.config.TEMPORAL_LLM_TASK_QUEUE, identity: 'llm-worker', outcome: 'failed' }]);
    // The rules' findings stand; no model finding was recorded.
    expect((await issuesOf(project.id, {}, owner.accessToken)).map((i) => [i.source, i.ruleId, i.startLine])).toEqual([['rule', 'js-eval', 4]]);
  });
});
