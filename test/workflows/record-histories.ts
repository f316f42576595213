import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils';
import * as proto from '@temporalio/proto';
import { Document, Issue, Job, Scan } from '../../db';
import { AuditScope } from '../../services/audit';
import { startCredentialCheck } from '../../services/credential-checks';
import { startIngestion } from '../../services/documents/ingestion';
import { startReindex } from '../../services/documents/reindex';
import { ingestInProcess } from '../../bench/harness/ingest-loop';
import { cancelJob } from '../../services/jobs';
import { startLlmCheck, type LlmJobsDeps } from '../../services/llm-checks';
import { startProjectDeletion } from '../../services/project-deletion';
import { startScan } from '../../services/scans';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { createTestLlmWorker, createTestWorker } from '../harness/worker';
import { zipOf } from '../harness/zip';
import { backendsBlockedBy, createProject, createSecrets, lockJobRow, seedFinishedJobs, waitUntil } from '../jobs/job-helpers';

/**
 * The reference histories of the determinism guard (test/workflows/replay.test.ts): one per
 * workflow kind and outcome, recorded by running the real workflows on a test worker, committed
 * under test/histories/, and replayed against the current workflow code on every test run.
 */

/** Every history the guard requires, as `<workflow type>-<outcome>`. */
export const historyNames = [
  'deleteProject-completed',
  'deleteProject-cancelled',
  'auditRetention-completed',
  'reconcileJobs-completed',
  'checkProjectCredentials-completed',
  'checkLlmProviders-completed',
  'scanRepository-completed',
  'reindexDocuments-completed',
  'ingestDocuments-completed',
] as const;
export type HistoryName = (typeof historyNames)[number];

export const historiesDir = path.resolve(__dirname, '../histories');
export const historyFile = (name: string) => path.join(historiesDir, `${name}.json`);

/** Worker and client identity written into the histories (instead of pid@hostname of whoever recorded them). */
const RECORDER = 'auditflow-history-recorder';

interface Recording {
  t: TestApp;
  /** A client over the app's connection that signs its requests as the recorder; the app's configuration and blob store. */
  deps: LlmJobsDeps & { blobs: TestApp['blobs']; vectors: TestApp['vectors']; config: TestApp['config'] };
  admin: Member;
}

type Recorder = (r: Recording) => Promise<WorkflowHandle>;

async function settled(handle: WorkflowHandle): Promise<WorkflowHandle> {
  try {
    await handle.result();
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err; // a cancelled workflow rejects with its cancellation
  }
  return handle;
}

/** A project's scan data as a scan leaves it: `issues` issues of one scan of an upload, and the upload's blob. */
async function seedScanData(r: Recording, projectId: string, issues: number): Promise<void> {
  const blob = await r.deps.blobs.put(`projects/${projectId}/uploads/${randomUUID()}.zip`, await zipOf({ 'README.md': '# history\n' }));
  const scan = await Scan.create({
    id: randomUUID(),
    tenantId: r.admin.tenantId,
    projectId,
    jobId: null,
    source: { type: 'zip', blobKey: blob.key, fileName: 'history.zip', sha256: blob.sha256, bytes: blob.bytes },
    mode: 'full',
    baseScanId: null,
  });
  await Issue.bulkCreate(
    Array.from({ length: issues }, (_, i) => ({
      id: randomUUID(),
      tenantId: r.admin.tenantId,
      projectId,
      fingerprint: `history-${i}`,
      occurrence: 0,
      ruleId: 'js-eval',
      source: 'rule' as const,
      title: 'eval of a non-literal value',
      message: 'seeded',
      severity: 'high' as const,
      cwe: 'CWE-95',
      path: `src/mod${i}.js`,
      startLine: 1,
      endLine: 1,
      startColumn: 1,
      matchedText: 'eval(input)',
      firstSeenScanId: scan.id,
      lastSeenScanId: scan.id,
    })),
  );
}

/** A project with `rows` finished jobs (and scan data and stored documents, when given) and a deletion of it started with `batchSize`. */
async function startDeletion(r: Recording, rows: number, batchSize: number, lockedRow?: number, scanIssues?: number, documents?: number) {
  const project = (await r.t.post('/api/v1/projects', { name: `history-${randomUUID()}` }, { token: r.admin.accessToken })).body;
  if (scanIssues !== undefined) await seedScanData(r, project.id, scanIssues);
  if (documents !== undefined) {
    const files = Array.from({ length: documents }, (_, i) => ({ name: `doc-${i}.md`, bytes: Buffer.from(`# Document ${i}\n\nKept for the deletion history.\n`) }));
    await ingestInProcess(r.deps, { tenantId: r.admin.tenantId, projectId: project.id }, files, documents);
  }
  const seeded = await seedFinishedJobs(r.admin.tenantId, project.id, rows);
  const lock = lockedRow === undefined ? undefined : await lockJobRow(seeded[lockedRow] ?? '');
  const audit = new AuditScope({ type: 'user', id: r.admin.userId, tenantId: r.admin.tenantId });
  const { job } = await startProjectDeletion(r.deps, audit, { tenantId: r.admin.tenantId, projectId: project.id, requestedBy: `user:${r.admin.userId}`, params: { batchSize } });
  return { job, lock, audit, handle: r.deps.temporal.workflow.getHandle(job.workflowId) };
}

const recorders: Record<HistoryName, Recorder> = {
  // Batches of two: three jobs, three issues and three documents (two batches each), a scan and an uploaded blob (one each), then the project row.
  async 'deleteProject-completed'(r) {
    const { handle } = await startDeletion(r, 3, 2, undefined, 3, 3);
    return settled(handle);
  },
  // Batches of one; the second waits on a row lock, and the job is cancelled as the API does it.
  async 'deleteProject-cancelled'(r) {
    const { job, lock, audit, handle } = await startDeletion(r, 3, 1, 1);
    if (!lock) throw new Error('unreachable');
    try {
      await waitUntil('the first batch is recorded and the second waits for the row lock', async () => {
        const row = await Job.findByPk(job.id, { rejectOnEmpty: true });
        return row.counters.jobs === 1 && (await backendsBlockedBy(r.t.sequelize, lock.pid)) > 0;
      });
      await cancelJob(r.deps, audit, r.admin.tenantId, job.id);
      return await settled(handle);
    } finally {
      // The waiting batch does not watch for cancellation: it finishes (and the worker can stop) once the lock goes.
      await lock.release();
    }
  },
  // One reference of each verdict: the per-reference loop, its progress reports and the final event.
  async 'checkProjectCredentials-completed'(r) {
    const [secret] = await createSecrets(r.t, r.admin, ['history']);
    const settings = { ok: secret?.reference, missing: 'secret://history-missing', malformed: 'secret://Not A Name' };
    const project = await createProject(r.t, r.admin.accessToken, 'history', settings);
    const audit = new AuditScope({ type: 'user', id: r.admin.userId, tenantId: r.admin.tenantId });
    const { job } = await startCredentialCheck(r.deps, audit, { tenantId: r.admin.tenantId, projectId: project.id, requestedBy: `user:${r.admin.userId}` });
    return settled(r.deps.temporal.workflow.getHandle(job.workflowId));
  },
  // The environment's defaults (builtin): the three stages, one of them (structured output) skipped on record.
  async 'checkLlmProviders-completed'(r) {
    const audit = new AuditScope({ type: 'user', id: r.admin.userId, tenantId: r.admin.tenantId });
    const { job } = await startLlmCheck(r.deps, audit, { tenantId: r.admin.tenantId, requestedBy: `user:${r.admin.userId}` });
    return settled(r.deps.temporal.workflow.getHandle(job.workflowId));
  },
  // An uploaded ZIP of three files in batches of one, two batches at a time: the batch lanes with
  // their progress reports, the LLM stage skipped (the built-in provider), the finalization.
  async 'scanRepository-completed'(r) {
    const project = await createProject(r.t, r.admin.accessToken, 'history-scan');
    const archive = await zipOf({
      'src/app.js': 'module.exports = (input) => eval(input);\n',
      'app/load.py': 'import yaml\n\ndef load(data):\n    return yaml.load(data)\n',
      'README.md': '# history\n',
    });
    const blob = await r.deps.blobs.put(`projects/${project.id}/uploads/${randomUUID()}.zip`, archive, { contentType: 'application/zip' });
    const audit = new AuditScope({ type: 'user', id: r.admin.userId, tenantId: r.admin.tenantId });
    const { job } = await startScan(r.deps, audit, {
      tenantId: r.admin.tenantId,
      projectId: project.id,
      requestedBy: `user:${r.admin.userId}`,
      source: { type: 'zip', blobKey: blob.key, fileName: 'history.zip', sha256: blob.sha256, bytes: blob.bytes },
      mode: 'full',
      tuning: { batchSize: 1, parallelism: 2 },
    });
    return settled(r.deps.temporal.workflow.getHandle(job.workflowId));
  },
  // Two documents whose rows name another model's collection (as after a model change), moved into
  // the built-in model's in batches of one: the probe, the count, the batches with their progress
  // reports, and the second pass that finds nothing left.
  async 'reindexDocuments-completed'(r) {
    const project = await createProject(r.t, r.admin.accessToken, 'history-reindex');
    const documents = ['first', 'second'].map((name) => ({ name: `${name}.md`, bytes: Buffer.from(`# The ${name} document\n\nKept for the reindex history.\n`) }));
    await ingestInProcess(r.deps, { tenantId: r.admin.tenantId, projectId: project.id }, documents, 2);
    await Document.update({ embeddingModel: 'history-previous-model' }, { where: { projectId: project.id } });
    const audit = new AuditScope({ type: 'user', id: r.admin.userId, tenantId: r.admin.tenantId });
    const { job } = await startReindex(r.deps, audit, { tenantId: r.admin.tenantId, requestedBy: `user:${r.admin.userId}`, tuning: { batchSize: 1 } });
    return settled(r.deps.temporal.workflow.getHandle(job.workflowId));
  },
  // Two Markdown files and a truncated PDF in batches of one, two at a time: planning, each stage's
  // batch lanes (embedding on the LLM task queue) with their progress reports, the failed document, the completion.
  async 'ingestDocuments-completed'(r) {
    const project = await createProject(r.t, r.admin.accessToken, 'history-ingest');
    const dir = await mkdtemp(path.join(tmpdir(), 'history-ingest-'));
    try {
      const contents: Array<[string, string, Buffer]> = [
        ['first.md', 'text/markdown', Buffer.from('# First\n\nThe first document of the ingestion history.\n')],
        ['second.md', 'text/markdown', Buffer.from('# Second\n\nThe second document of the ingestion history.\n')],
        ['broken.pdf', 'application/pdf', Buffer.from('%PDF-1.7\nnot really a PDF\n')],
      ];
      const files = await Promise.all(
        contents.map(async ([fileName, mediaType, bytes]) => {
          await writeFile(path.join(dir, fileName), bytes);
          return { path: path.join(dir, fileName), fileName, mediaType, bytes: bytes.length, sha256: '' };
        }),
      );
      const audit = new AuditScope({ type: 'user', id: r.admin.userId, tenantId: r.admin.tenantId });
      const { job } = await startIngestion(r.deps, audit, {
        tenantId: r.admin.tenantId,
        projectId: project.id,
        requestedBy: `user:${r.admin.userId}`,
        mode: 'add',
        source: { kind: 'files', files },
        tuning: { batchSize: 1, parallelism: 2 },
      });
      return await settled(r.deps.temporal.workflow.getHandle(job.workflowId));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
  // Both housekeeping workflows are recorded with arguments that leave other suites' rows alone.
  async 'auditRetention-completed'(r) {
    const handle = await r.deps.temporal.workflow.start('auditRetention', {
      taskQueue: r.t.config.TEMPORAL_TASK_QUEUE,
      workflowId: `history-audit-retention-${randomUUID()}`,
      args: [{ retentionDays: 36_500 }],
    });
    return settled(handle);
  },
  async 'reconcileJobs-completed'(r) {
    const handle = await r.deps.temporal.workflow.start('reconcileJobs', {
      taskQueue: r.t.config.TEMPORAL_TASK_QUEUE,
      workflowId: `history-reconcile-jobs-${randomUUID()}`,
      args: [10 * 365 * 86_400],
    });
    return settled(handle);
  },
};

/*
 * History files are ProtoJSON, the form `temporal workflow show --output json` and the Web UI's
 * download write. @temporalio/common's historyToJSON/historyFromJSON would do, but they hand a
 * type of @temporalio/proto's protobufjs copy to the ProtoJSON code of their own copy, and with
 * two copies installed (our lockfile nests one under each @temporalio package, beside grpc's
 * protobufjs 7) protobufjs refuses: "type must be a Type". The same conversion with the ProtoJSON
 * code of @temporalio/proto's own copy works whatever the layout.
 */
interface ProtoJson {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options: { ignoreUnknownFields: boolean }): unknown;
}
const protoJson = createRequire(require.resolve('@temporalio/proto'))('protobufjs/ext/protojson') as ProtoJson;
const historyType = (proto as unknown as { lookupType(name: string): unknown }).lookupType('temporal.api.history.v1.History');

/** A history as the text of a history file (indented, for review). */
export function historyFileText(history: History): string {
  const json = protoJson.toJson(historyType, proto.temporal.api.history.v1.History.fromObject(history));
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** Reads a history file (ours, or one downloaded from the Web UI or the CLI). */
export function readHistoryFile(file: string): History {
  return protoJson.fromJson(historyType, JSON.parse(readFileSync(file, 'utf8')), { ignoreUnknownFields: true }) as History;
}

/**
 * Runs the named workflows to their outcome on test workers of a fresh app (one on its task
 * queue, one on its LLM task queue for the model calls) and writes their histories to
 * test/histories/, overwriting what is there. Needs the services of global-setup.
 */
export async function recordHistories(names: readonly HistoryName[]): Promise<void> {
  const t = await startTestApp();
  try {
    const main = await createTestWorker(t, { identity: RECORDER });
    try {
      const llm = await createTestLlmWorker(t, { identity: RECORDER });
      try {
        const temporal = new Client({ connection: t.temporal.connection, namespace: t.config.TEMPORAL_NAMESPACE, identity: RECORDER });
        const recording: Recording = { t, deps: { sequelize: t.sequelize, temporal, config: t.config, blobs: t.blobs, vectors: t.vectors }, admin: await registerTenant(t, 'recorder') };
        const handles = await main.worker.runUntil(() =>
          llm.worker.runUntil(async () => {
            const done: [HistoryName, WorkflowHandle][] = [];
            for (const name of names) done.push([name, await recorders[name](recording)]);
            return done;
          }),
        );
        await mkdir(historiesDir, { recursive: true });
        for (const [name, handle] of handles) await writeFile(historyFile(name), historyFileText(await handle.fetchHistory()));
      } finally {
        await llm.connection.close();
      }
    } finally {
      await main.connection.close();
    }
  } finally {
    await t.close();
  }
}
