import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { QueryTypes } from 'sequelize';
import { Document, IngestionItem, Job, type JobStatus } from '../../db';
import type { VectorCollection } from '../../lib/vector-store';
import { AuditScope } from '../../services/audit';
import { chunkId } from '../../services/documents/identity';
import { startIngestion, type UploadedDocument } from '../../services/documents/ingestion';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { backendsBlockedBy, createProject, holdTransaction, stopWorkerProcesses, waitUntil, workerProcesses, type RowLock } from '../jobs/job-helpers';
import { storedDocuments } from './ingest-helpers';

/**
 * A worker process dies (SIGKILL) in the middle of a document ingestion (issue 7, criterion 5):
 * batch 0 is stored, batch 1's vectors are in the vector store but its documents are not yet
 * published. A new worker process retries the storing step and finishes the job; every chunk is
 * there exactly once (rows and vectors, ids the UUID v5 of document, content hash and index), no
 * staged row is left, and the chunks equal those of an uninterrupted ingestion of the same files.
 *
 * The kill lands mid-batch by construction, not by timing (parallelism 1, so batches run in
 * order, a stage over every batch before the next):
 * 1. Before the job starts, the test inserts (and does not commit) a document row with the source
 *    key of a batch-2 file: fetching batch 2 waits on the unique index, batches 0 and 1 are fetched.
 * 2. The test then locks (FOR NO KEY UPDATE) the row of a batch-1 document, which the later stages
 *    only reference (key-share locks, compatible) until storing publishes it, and rolls 1 back.
 * 3. Storing batch 1 writes its vectors, then waits on that row inside its transaction; the test
 *    kills the worker there, and releases the lock: the dead worker's transaction, its client
 *    gone, never commits.
 */

const FILES = 6;
const BATCH_SIZE = 2;
/** A dead worker's step is retried after this long without a heartbeat (the default is a minute). */
const HEARTBEAT_TIMEOUT_SECONDS = 5;
/** Small chunks, so every document has several. */
const chunking = { CHUNK_TARGET_TOKENS: '48', CHUNK_OVERLAP_TOKENS: '8' };

/** A Markdown guide of a few sections about `topic`: several chunks, each under a heading. */
function guide(topic: string): string {
  const section = (n: number) =>
    `## ${topic} part ${n}\n\nThe ${topic} service keeps its state in Postgres and reports progress through queries. ` +
    `Operators restart the ${topic} workers when their queue drains slowly; every restart is audited.\n`;
  return `# The ${topic} guide\n\n${[1, 2, 3].map(section).join('\n')}`;
}

/** Planning numbers documents into batches in request order: file i is in batch ⌊i / BATCH_SIZE⌋. */
const files = Array.from({ length: FILES }, (_, i) => ({ name: `doc-${String(i).padStart(2, '0')}.md`, content: guide(`topic${i}`) }));
const fetchHeldFile = files[2 * BATCH_SIZE]!.name;
const storeHeldFile = files[BATCH_SIZE]!.name;

interface ChunkRow {
  source_key: string;
  document_id: string;
  id: string;
  content_sha256: string;
  chunk_index: number;
  text: string;
  heading_path: string[];
  start_offset: number;
  end_offset: number;
  tokens: number;
}

describe('a worker killed mid-ingestion', () => {
  let t: TestApp;
  let admin: Member;
  let scratch: string;
  beforeAll(async () => {
    // An LLM task queue of its own: the embedding steps run on the worker processes only.
    t = await startTestApp({ ...chunking, TEMPORAL_LLM_TASK_QUEUE: `test-llm-${randomUUID()}` });
    admin = await registerTenant(t, 'ingest-crash');
    scratch = await mkdtemp(path.join(tmpdir(), 'auditflow-ingest-crash-'));
  });
  afterAll(async () => {
    await t.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('leaves the job to a new worker, and every chunk stored once, as an uninterrupted ingestion stores it', async () => {
    const crashed = await createProject(t, admin.accessToken, 'ingest-crash');
    const uninterrupted = await createProject(t, admin.accessToken, 'ingest-uninterrupted');

    // The workers share the test's data directory: its blob store holds the uploads and its
    // LanceDB the vectors, as S3 and Qdrant would be shared by several machines.
    const env = { TEMPORAL_TASK_QUEUE: t.config.TEMPORAL_TASK_QUEUE, TEMPORAL_LLM_TASK_QUEUE: t.config.TEMPORAL_LLM_TASK_QUEUE, AUDITFLOW_DATA_DIR: t.config.AUDITFLOW_DATA_DIR, ...chunking };
    const workers = workerProcesses(env);
    const deps = { sequelize: t.sequelize, temporal: t.temporal, config: t.config, blobs: t.blobs };
    const audit = new AuditScope({ type: 'user', id: admin.userId, tenantId: admin.tenantId });
    const ingest = async (projectId: string) => {
      const uploads: UploadedDocument[] = [];
      for (const f of files) {
        const file = path.join(scratch, `${projectId}-${f.name}`);
        await writeFile(file, f.content);
        uploads.push({ path: file, fileName: f.name, mediaType: 'text/markdown', bytes: Buffer.byteLength(f.content), sha256: '' });
      }
      const { job } = await startIngestion(deps, audit, {
        tenantId: admin.tenantId,
        projectId,
        requestedBy: `user:${admin.userId}`,
        mode: 'add',
        source: { kind: 'files', files: uploads },
        tuning: { batchSize: BATCH_SIZE, parallelism: 1, heartbeatTimeoutSeconds: HEARTBEAT_TIMEOUT_SECONDS },
      });
      return job;
    };
    const finished = (jobId: string) =>
      waitUntil(
        `the ingestion job ${jobId} finishes`,
        async () => {
          const row = await Job.findByPk(jobId, { rejectOnEmpty: true });
          return !(['queued', 'running'] as JobStatus[]).includes(row.status) && row;
        },
        90_000,
      );
    const itemStates = async (jobId: string) =>
      Object.fromEntries((await IngestionItem.findAll({ where: { jobId }, order: [['seq', 'ASC']] })).map((i) => [i.sourceKey, `${i.batch}:${i.state}`]));
    const chunksOf = (projectId: string) =>
      t.sequelize.query<ChunkRow>(
        `SELECT d.source_key, c.document_id, c.id, c.content_sha256, c.chunk_index, c.text, c.heading_path, c.start_offset, c.end_offset, c.tokens
         FROM document_chunks c JOIN documents d ON d.id = c.document_id
         WHERE c.project_id = :projectId ORDER BY d.source_key, c.chunk_index`,
        { replacements: { projectId }, type: QueryTypes.SELECT },
      );

    let fetchHold: RowLock | undefined;
    let storeHold: RowLock | undefined;
    try {
      fetchHold = await holdTransaction(async (client) => {
        await client.query(
          `INSERT INTO documents (id, tenant_id, project_id, source_key, source_type, origin, title, format)
           VALUES ($1, $2, $3, $4, 'file', 'files', 'held by the test', 'markdown')`,
          [randomUUID(), admin.tenantId, crashed.id, fetchHeldFile],
        );
      });
      const first = await workers.start();
      const job = await ingest(crashed.id);

      // Batches 0 and 1 fetched (their documents have rows), batch 2 waiting on the held source key.
      await waitUntil('batches 0 and 1 are fetched and batch 2 waits on the held source key', async () => {
        const fetched = await IngestionItem.count({ where: { jobId: job.id, batch: [0, 1], state: 'fetched' } });
        return fetched === 2 * BATCH_SIZE && (await backendsBlockedBy(t.sequelize, fetchHold!.pid)) > 0;
      });
      const held = await IngestionItem.findOne({ where: { jobId: job.id, sourceKey: storeHeldFile }, rejectOnEmpty: true });
      expect(held).toMatchObject({ batch: 1, state: 'fetched' });
      storeHold = await holdTransaction(async (client) => {
        const locked = await client.query('SELECT id FROM documents WHERE id = $1 FOR NO KEY UPDATE', [held.documentId]);
        if (locked.rowCount !== 1) throw new Error(`the document row of ${storeHeldFile} is not there to lock`);
      });
      await fetchHold.release();

      // Mid-store: batch 0 stored; batch 1's vectors written, its transaction waiting on the locked row.
      await waitUntil('batch 0 is stored and storing batch 1 waits on the locked document', async () => {
        const stored = await IngestionItem.count({ where: { jobId: job.id, batch: 0, state: 'stored' } });
        return stored === BATCH_SIZE && (await backendsBlockedBy(t.sequelize, storeHold!.pid)) > 0;
      });
      expect(await itemStates(job.id)).toEqual({
        'doc-00.md': '0:stored',
        'doc-01.md': '0:stored',
        'doc-02.md': '1:embedded',
        'doc-03.md': '1:embedded',
        'doc-04.md': '2:embedded',
        'doc-05.md': '2:embedded',
      });
      const batchOne = await IngestionItem.findAll({ where: { jobId: job.id, batch: 1 }, order: [['seq', 'ASC']] });
      for (const item of batchOne) {
        const collection: VectorCollection = { model: item.embeddingModel ?? '', dimensions: item.embeddingDimensions ?? 0 };
        // Written to the vector store, not yet published: the document has no stored version.
        expect({ key: item.sourceKey, vectors: await t.vectors.count(collection, { tenantId: admin.tenantId, documentIds: [item.documentId ?? ''] }) }).toEqual({
          key: item.sourceKey,
          vectors: item.chunkCount,
        });
        expect(await Document.findByPk(item.documentId ?? '', { rejectOnEmpty: true })).toMatchObject({ status: 'pending', contentSha256: null });
      }

      first.child.kill('SIGKILL');
      expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
      // The dead worker's update now goes through, finds its client gone and rolls back.
      await storeHold.release();
      const second = await workers.start();

      const done = await finished(job.id);
      expect(done.status).toBe('completed');
      expect(done.counters).toMatchObject({ documentsTotal: FILES, documentsStored: FILES, documentsFailed: 0, documentsUnchanged: 0 });

      // Storing batch 0 ran once, on the first worker; batch 1's was retried on the second, which stored batch 2 once.
      const history = await t.temporal.workflow.getHandle(job.workflowId).fetchHistory();
      const batchOf = new Map<string, number>();
      const runs = new Map<number, { attempt: number; worker: number | undefined }>();
      for (const e of history.events ?? []) {
        const scheduled = e.activityTaskScheduledEventAttributes;
        if (scheduled?.activityType?.name === 'storeIngestionBatch') {
          batchOf.set(String(e.eventId), JSON.parse(Buffer.from(scheduled.input?.payloads?.[1]?.data ?? []).toString()) as number);
        }
        const started = e.activityTaskStartedEventAttributes;
        const batch = started ? batchOf.get(String(started.scheduledEventId)) : undefined;
        if (started && batch !== undefined) {
          const pid = Number(started.identity?.split('@')[0]);
          runs.set(batch, { attempt: started.attempt ?? 1, worker: pid === first.child.pid ? 1 : pid === second.child.pid ? 2 : undefined });
        }
      }
      expect(Object.fromEntries(runs)).toEqual({
        0: { attempt: 1, worker: 1 },
        1: { attempt: expect.any(Number), worker: 2 },
        2: { attempt: 1, worker: 2 },
      });
      expect(runs.get(1)?.attempt).toBeGreaterThan(1);

      // Every document: its chunk rows are its live version's, as many as it counts, ids from
      // (document, content hash, index), and one vector each in the collection its row names.
      const stored = await storedDocuments(t, admin.tenantId, crashed.id);
      expect(Object.keys(stored)).toEqual(files.map((f) => f.name));
      for (const d of Object.values(stored)) {
        expect(d.chunkCount).toBeGreaterThan(1);
        expect({ key: d.sourceKey, status: d.status, live: d.liveChunks, all: d.allChunks, vectors: d.vectors }).toEqual({
          key: d.sourceKey,
          status: 'stored',
          live: d.chunkCount,
          all: d.chunkCount,
          vectors: d.chunkCount,
        });
      }
      const afterCrash = await chunksOf(crashed.id);
      expect(new Set(afterCrash.map((c) => c.id)).size).toBe(afterCrash.length);
      for (const c of afterCrash) expect(c.id).toBe(chunkId(c.document_id, c.content_sha256, c.chunk_index));
      // The points are the chunks, by id: none missing, none extra, none twice.
      const documents = await Document.findAll({ where: { projectId: crashed.id } });
      for (const d of documents) {
        const collection: VectorCollection = { model: d.embeddingModel ?? '', dimensions: d.embeddingDimensions ?? 0 };
        const points = await t.vectors.search(collection, Array.from({ length: collection.dimensions }, () => 1), { tenantId: admin.tenantId, documentIds: [d.id] }, 1000);
        expect(points.map((p) => p.id).sort()).toEqual(afterCrash.filter((c) => c.document_id === d.id).map((c) => c.id).sort());
      }
      // Nothing staged is left behind: no vectors waiting in Postgres, no parsed text on the items.
      const [staged] = await t.sequelize.query<{ vectors: number; texts: number }>(
        `SELECT (SELECT count(*) FROM ingestion_vectors WHERE job_id = :jobId)::int AS vectors,
                (SELECT count(*) FROM ingestion_items WHERE job_id = :jobId AND parsed_text IS NOT NULL)::int AS texts`,
        { replacements: { jobId: job.id }, type: QueryTypes.SELECT },
      );
      expect(staged).toEqual({ vectors: 0, texts: 0 });

      // The same files, ingested without interruption (by the second worker) into another project.
      const baselineJob = await ingest(uninterrupted.id);
      const baselineDone = await finished(baselineJob.id);
      expect(baselineDone.status).toBe('completed');
      const content = (rows: ChunkRow[]) =>
        rows.map((c) => ({ key: c.source_key, sha: c.content_sha256, index: c.chunk_index, text: c.text, headings: c.heading_path, span: [c.start_offset, c.end_offset], tokens: c.tokens }));
      expect(content(afterCrash)).toEqual(content(await chunksOf(uninterrupted.id)));
      // The same counters, but for how long each took.
      expect({ ...done.counters, durationMs: 0 }).toEqual({ ...baselineDone.counters, durationMs: 0 });
    } finally {
      await stopWorkerProcesses(t, workers.all, env.TEMPORAL_TASK_QUEUE);
      await fetchHold?.release();
      await storeHold?.release();
    }
  }, 240_000);
});
