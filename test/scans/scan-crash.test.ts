import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { Job, JobEvent, Scan, ScanFile } from '../../db';
import { analyzeSource, issueFingerprint } from '../../lib/analyzers';
import { AuditScope } from '../../services/audit';
import { startScan } from '../../services/scans';
import type { ScanParams } from '../../workflows/definitions';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { makeRepository, startGitServer, type GitServer } from '../harness/git-server';
import { backendsBlockedBy, createProject, holdTransaction, stopWorkerProcesses, waitUntil, workerProcesses, type RowLock } from '../jobs/job-helpers';

/**
 * A worker process dies (SIGKILL) in the middle of a repository scan: some batches are
 * persisted, one is in flight. A new worker process, on a disk without the scan's working tree,
 * fetches it again, retries the batch and finishes the scan; the issues are exactly those of an
 * uninterrupted scan of the same repository, each once (the unique index on project,
 * fingerprint and occurrence, and one transaction per batch).
 *
 * The kill lands mid-batch by construction, not by timing: before the scan starts, the test
 * inserts (and does not commit) an issue with the identity of a finding in batch 3, so that
 * batch's upsert waits on the unique index while batches 0-2 go through. The test kills the
 * worker once those three are recorded and batch 3 is seen waiting in Postgres, then rolls the
 * insert back: the dead worker's transaction, its client gone, never commits.
 */

const FILES = 30;
const BATCH_SIZE = 3;
const HELD_BATCH = 3;
/** A dead worker's batch is retried after this long without a heartbeat (the default is a minute). */
const HEARTBEAT_TIMEOUT_SECONDS = 5;

/** Four findings per file (a shell command, two identical evals — occurrences 0 and 1 — and innerHTML), at lines that differ from file to file. */
function moduleSource(i: number): string {
  return [
    `// Module ${i}: helpers that shell out and render.`,
    ...Array.from({ length: i % 4 }, (_, k) => `// padding line ${k}`),
    "const { exec } = require('child_process');",
    '',
    `function run${i}(name) {`,
    "  exec('ls -la ' + name);",
    '  eval(name);',
    '  eval(name);',
    '}',
    '',
    `function render${i}(el, html) {`,
    `  el.innerHTML = '<p id="m${i}">' + html + '</p>';`,
    '}',
    '',
    `module.exports = { run${i}, render${i} };`,
    '',
  ].join('\n');
}

/** Selection visits paths in sorted order, so file i is file number i of the scan: batch ⌊i / BATCH_SIZE⌋. */
const files = Object.fromEntries(Array.from({ length: FILES }, (_, i) => [`src/m${String(i).padStart(2, '0')}.js`, moduleSource(i)]));

/**
 * Inserts, in an open transaction of a connection of its own, an issue with the identity
 * (project, fingerprint, occurrence) of a finding the scan will report: the batch upserting that
 * finding waits on the unique index until `release()` rolls the row back (it never existed).
 */
async function holdIssueIdentity(tenantId: string, projectId: string, filePath: string): Promise<RowLock> {
  const [finding] = analyzeSource({ path: filePath, language: 'javascript', text: files[filePath] ?? '' });
  if (!finding) throw new Error(`${filePath} has no finding to hold`);
  return holdTransaction(async (client) => {
    await client.query(
      `INSERT INTO issues (id, tenant_id, project_id, fingerprint, occurrence, rule_id, source, title, message, severity, path, start_line, end_line, start_column, matched_text)
       VALUES ($1, $2, $3, $4, $5, $6, 'rule', 'held', 'held by the test', 'low', $7, 1, 1, 1, 'held')`,
      [randomUUID(), tenantId, projectId, issueFingerprint(finding), finding.occurrence, finding.ruleId, filePath],
    );
  });
}

interface IssueRow {
  fingerprint: string;
  occurrence: number;
  rule_id: string;
  path: string;
  start_line: number;
  end_line: number;
  start_column: number;
  matched_text: string;
  first_seen_scan_id: string;
  last_seen_scan_id: string;
  status: string;
}

describe('a worker killed mid-scan', () => {
  let t: TestApp;
  let admin: Member;
  let reposRoot: string;
  let git: GitServer;
  beforeAll(async () => {
    t = await startTestApp({ SCAN_ALLOWED_HOSTS: '127.0.0.1' });
    admin = await registerTenant(t);
    reposRoot = await mkdtemp(path.join(tmpdir(), 'auditflow-scan-crash-repos-'));
    await makeRepository(reposRoot, 'crash.git', files);
    git = await startGitServer(reposRoot);
  });
  afterAll(async () => {
    await git.close();
    await t.close();
    await rm(reposRoot, { recursive: true, force: true });
  });

  it('leaves the scan to a new worker, whose issues equal an uninterrupted scan’s, each once', async () => {
    const url = `${git.url}/crash.git`;
    const crashed = await createProject(t, admin.accessToken, 'scan-crash');
    const uninterrupted = await createProject(t, admin.accessToken, 'scan-uninterrupted');
    const heldPath = `src/m${String(HELD_BATCH * BATCH_SIZE + 1).padStart(2, '0')}.js`;
    const lock = await holdIssueIdentity(admin.tenantId, crashed.id, heldPath);

    // Each worker process has a disk of its own (the restarted one lacks the first one's working
    // tree, as another machine would); the vault's master key is the deployment's.
    const workersDir = await mkdtemp(path.join(tmpdir(), 'auditflow-scan-crash-workers-'));
    const env = {
      TEMPORAL_TASK_QUEUE: t.config.TEMPORAL_TASK_QUEUE,
      TEMPORAL_LLM_TASK_QUEUE: t.config.TEMPORAL_LLM_TASK_QUEUE,
      SCAN_ALLOWED_HOSTS: '127.0.0.1',
    };
    const workers = workerProcesses(env, async (n) => {
      const dataDir = path.join(workersDir, `worker-${n}`);
      await mkdir(dataDir, { recursive: true });
      await copyFile(path.join(t.config.AUDITFLOW_DATA_DIR, 'master-key'), path.join(dataDir, 'master-key')).catch(() => undefined);
      return { AUDITFLOW_DATA_DIR: dataDir };
    });
    const deps = { sequelize: t.sequelize, temporal: t.temporal, config: t.config, blobs: t.blobs, vectors: t.vectors };
    const audit = new AuditScope({ type: 'user', id: admin.userId, tenantId: admin.tenantId });
    const scanOf = (projectId: string) =>
      startScan(deps, audit, {
        tenantId: admin.tenantId,
        projectId,
        requestedBy: `user:${admin.userId}`,
        source: { type: 'git', url },
        mode: 'full',
        tuning: { batchSize: BATCH_SIZE, parallelism: 1, heartbeatTimeoutSeconds: HEARTBEAT_TIMEOUT_SECONDS },
      });
    const finished = (jobId: string) =>
      waitUntil(
        `the scan job ${jobId} finishes`,
        async () => {
          const row = await Job.findByPk(jobId, { rejectOnEmpty: true });
          return row.status !== 'queued' && row.status !== 'running' && row;
        },
        90_000,
      );
    const issuesOf = (projectId: string) =>
      t.sequelize.query<IssueRow>(
        `SELECT fingerprint, occurrence, rule_id, path, start_line, end_line, start_column, matched_text, first_seen_scan_id, last_seen_scan_id, status
         FROM issues WHERE project_id = :projectId ORDER BY path, start_line, start_column, rule_id, occurrence`,
        { replacements: { projectId }, type: QueryTypes.SELECT },
      );
    const fetches = () => git.requests.filter((r) => r.startsWith('GET /crash.git/info/refs')).length;

    try {
      const first = await workers.start();
      const { job } = await scanOf(crashed.id);
      const { scanId } = job.params as unknown as ScanParams;

      // Mid-scan: batches 0-2 recorded, batch 3 waiting on the held identity inside the worker's transaction.
      await waitUntil('three batches are persisted and the fourth waits on the held issue', async () => {
        const analyzed = await ScanFile.count({ where: { scanId, state: 'analyzed' } });
        return analyzed === HELD_BATCH * BATCH_SIZE && (await backendsBlockedBy(t.sequelize, lock.pid)) > 0;
      });
      const persisted = await ScanFile.findAll({ where: { scanId, state: 'analyzed' }, attributes: ['batch'] });
      expect(new Set(persisted.map((f) => f.batch))).toEqual(new Set([0, 1, 2]));
      expect(await ScanFile.findOne({ where: { scanId, path: heldPath }, attributes: ['batch', 'state'] })).toMatchObject({ batch: HELD_BATCH, state: 'pending' });
      const beforeKill = await issuesOf(crashed.id);
      expect(beforeKill).toHaveLength(HELD_BATCH * BATCH_SIZE * 4);
      const progressKeys = async () => (await JobEvent.findAll({ where: { jobId: job.id, type: 'progress' }, attributes: ['dedupeKey'] })).map((e) => e.dedupeKey);
      expect(await progressKeys()).toEqual(expect.arrayContaining(['progress:batch:0', 'progress:batch:1', 'progress:batch:2']));
      expect(await progressKeys()).not.toContain(`progress:batch:${HELD_BATCH}`);
      expect(fetches()).toBe(1);

      first.child.kill('SIGKILL');
      expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
      // The dead worker's upsert now goes through, finds its client gone and rolls back.
      await lock.release();
      const second = await workers.start();

      const done = await finished(job.id);
      expect(done.status).toBe('completed');
      const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
      expect(scan).toMatchObject({ status: 'completed', filesTotal: FILES, filesAnalyzed: FILES, warnings: [] });
      expect(await ScanFile.count({ where: { scanId, state: 'analyzed' } })).toBe(FILES);
      // The new worker lacked the tree and fetched it again.
      expect(fetches()).toBe(2);

      // Each batch reported once, in order, then one terminal event.
      const events = await JobEvent.findAll({ where: { jobId: job.id }, order: [['seq', 'ASC']] });
      const keys = events.map((e) => e.dedupeKey).filter((k): k is string => k !== null);
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.filter((k) => k.startsWith('progress:batch:'))).toEqual(Array.from({ length: FILES / BATCH_SIZE }, (_, b) => `progress:batch:${b}`));
      expect(events.filter((e) => ['completed', 'failed', 'cancelled'].includes(e.type)).map((e) => e.type)).toEqual(['completed']);

      // Batches 0-2 ran once on the first worker; batch 3 was retried on the second, which ran the rest once.
      const history = await t.temporal.workflow.getHandle(job.workflowId).fetchHistory();
      const batchOf = new Map<string, number>();
      const runs = new Map<number, { attempt: number; worker: number | undefined }>();
      for (const e of history.events ?? []) {
        const scheduled = e.activityTaskScheduledEventAttributes;
        if (scheduled?.activityType?.name === 'analyzeScanBatch') {
          const arg = scheduled.input?.payloads?.[2]?.data;
          batchOf.set(String(e.eventId), JSON.parse(Buffer.from(arg ?? []).toString()) as number);
        }
        const started = e.activityTaskStartedEventAttributes;
        const batch = started ? batchOf.get(String(started.scheduledEventId)) : undefined;
        if (started && batch !== undefined) {
          const pid = Number(started.identity?.split('@')[0]);
          runs.set(batch, { attempt: started.attempt ?? 1, worker: pid === first.child.pid ? 1 : pid === second.child.pid ? 2 : undefined });
        }
      }
      expect([...runs.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: FILES / BATCH_SIZE }, (_, b) => b));
      for (const [batch, run] of runs) {
        if (batch < HELD_BATCH) expect({ batch, ...run }).toEqual({ batch, attempt: 1, worker: 1 });
        else if (batch === HELD_BATCH) expect({ batch, worker: run.worker, retried: run.attempt > 1 }).toEqual({ batch, worker: 2, retried: true });
        else expect({ batch, ...run }).toEqual({ batch, attempt: 1, worker: 2 });
      }

      // The same repository, scanned without interruption (by the second worker) into another project.
      const { job: baselineJob } = await scanOf(uninterrupted.id);
      expect((await finished(baselineJob.id)).status).toBe('completed');

      const identity = (rows: IssueRow[]) =>
        rows.map((r) => ({ fingerprint: r.fingerprint, occurrence: r.occurrence, rule: r.rule_id, path: r.path, lines: [r.start_line, r.end_line], column: r.start_column }));
      const afterCrash = await issuesOf(crashed.id);
      const expected = await issuesOf(uninterrupted.id);
      expect(expected).toHaveLength(FILES * 4);
      expect(identity(afterCrash)).toEqual(identity(expected));
      // What was persisted before the kill survived as it was; every issue is this scan's, open.
      expect(identity(afterCrash.filter((r) => beforeKill.some((b) => b.fingerprint === r.fingerprint && b.occurrence === r.occurrence)))).toEqual(identity(beforeKill));
      expect(afterCrash.every((r) => r.first_seen_scan_id === scanId && r.last_seen_scan_id === scanId && r.status === 'open')).toBe(true);
      // No duplicates, by identity nor by place.
      expect(new Set(afterCrash.map((r) => `${r.fingerprint}:${r.occurrence}`)).size).toBe(afterCrash.length);
      expect(new Set(afterCrash.map((r) => `${r.rule_id}:${r.path}:${r.start_line}:${r.start_column}:${r.matched_text}`)).size).toBe(afterCrash.length);
      // And the job's counters agree with the uninterrupted scan's.
      const baselineDone = await Job.findByPk(baselineJob.id, { rejectOnEmpty: true });
      expect(done.counters).toMatchObject({ filesTotal: FILES, filesAnalyzed: FILES, filesFailed: 0, issuesFound: FILES * 4 });
      expect(done.counters).toEqual(baselineDone.counters);
    } finally {
      await stopWorkerProcesses(t, workers.all, env.TEMPORAL_TASK_QUEUE);
      await lock.release();
      await rm(workersDir, { recursive: true, force: true });
    }
  }, 180_000);
});
