import { QueryTypes } from 'sequelize';
import { Document, DocumentChunk, IngestionItem, Job } from '../../db';
import type { VectorCollection } from '../../lib/vector-store';
import { AuditScope } from '../../services/audit';
import { embeddingInputOf } from '../../services/documents/pipeline';
import { reindexBatch, resolveReindexTarget, startReindex } from '../../services/documents/reindex';
import { holdLlmSettings, updateLlmSettings } from '../../services/llm';
import { ingestInProcess } from '../../bench/harness/ingest-loop';
import { registerTenant, type Member } from '../harness';
import { standInEmbedding, startLlmStandIn, type LlmStandIn } from '../harness/llm-stand-in';
import { createTestLlmWorker } from '../harness/worker';
import { backendsBlockedBy, createProject, createSecrets, holdTransaction, isFinished, startJobsSuite, waitForJob, waitUntil, type JobBody, type JobsSuite } from '../jobs/job-helpers';
import { finalEventData, storedDocuments, uploadDocuments, type UploadPart } from './ingest-helpers';

/*
 * Changing a tenant's embedding model (PUT /llm/settings) starts a `reindexDocuments` job that
 * moves every stored document's vectors into the new model's collection: the suite's real
 * workers (main and LLM task queues) run it against the real LanceDB and Postgres; the second
 * embedding model is the real `openai` client against a stand-in on 127.0.0.1 (8 dimensions),
 * the first the built-in hashing embedder (384).
 */

let suite: JobsSuite;
let llmWorker: Awaited<ReturnType<typeof createTestLlmWorker>>;
let llmWorkerRun: Promise<void>;
let standIn: LlmStandIn;

const builtin: VectorCollection = { model: 'hashing-384', dimensions: 384 };
const standInModel: VectorCollection = { model: 'text-embedding-3-small', dimensions: 8 };

beforeAll(async () => {
  // Small chunks: each document has several, so batches, counts and ids are worth checking.
  suite = await startJobsSuite('reindex', { env: { LLM_ALLOWED_HOSTS: '127.0.0.1', CHUNK_TARGET_TOKENS: '48', CHUNK_OVERLAP_TOKENS: '8' } });
  llmWorker = await createTestLlmWorker(suite.t);
  llmWorkerRun = llmWorker.worker.run();
  standIn = await startLlmStandIn('openai');
}, 60_000);
afterAll(async () => {
  llmWorker?.worker.shutdown();
  await llmWorkerRun;
  await llmWorker?.connection.close();
  await standIn?.close();
  await suite?.stop();
});

const t = () => suite.t;
const deps = () => ({ sequelize: t().sequelize, temporal: t().temporal, config: t().config, blobs: t().blobs, vectors: t().vectors });
const auditOf = (m: Member) => new AuditScope({ type: 'user', id: m.userId, tenantId: m.tenantId });

/** Three Markdown documents of several chunks each, stored with the tenant's embedding model by the pipeline's own steps. */
async function storeDocuments(owner: Member, label: string): Promise<{ projectId: string; documents: Document[] }> {
  const project = await createProject(t(), owner.accessToken, label);
  const section = (topic: string, n: number) =>
    `## ${topic} ${n}\n\nThe ${topic} subsystem keeps its state in Postgres and reports progress through Temporal queries. ` +
    `Operators restart it from the web console when the ${topic} queue drains slowly, and every restart is audited.\n`;
  const docs = ['ingestion', 'billing', 'scheduling'].map((topic) => ({
    name: `${label}/${topic}.md`,
    bytes: Buffer.from(`# The ${topic} guide\n\n${[1, 2, 3].map((n) => section(topic, n)).join('\n')}`),
  }));
  const stored = await ingestInProcess(deps(), { tenantId: owner.tenantId, projectId: project.id }, docs, 2);
  expect(stored).toMatchObject({ documents: 3, failed: 0 });
  const documents = await Document.findAll({ where: { projectId: project.id }, order: [['sourceKey', 'ASC']] });
  expect(documents.every((d) => d.chunkCount > 1)).toBe(true);
  return { projectId: project.id, documents };
}

/** Settings whose embeddings go to the stand-in (its key in the vault), as a PUT body. */
async function standInSettings(owner: Member, model = standInModel.model) {
  const [key] = await createSecrets(t(), owner, ['embedding-key']);
  return { embedding: { provider: 'openai' as const, baseUrl: standIn.url, apiKey: key?.reference, model } };
}

/** Every live chunk of the tenant's documents with the collection its document names: where its vector must be, and only there. */
async function expectVectorsWhereDocumentsSay(tenantId: string, elsewhere: VectorCollection): Promise<void> {
  const documents = await Document.findAll({ where: { tenantId } });
  for (const d of documents) {
    const home = { model: d.embeddingModel ?? '', dimensions: d.embeddingDimensions ?? 0 };
    const other = home.model === elsewhere.model ? builtin : elsewhere;
    expect({ document: d.sourceKey, home: await t().vectors.count(home, { tenantId, documentIds: [d.id] }), other: await t().vectors.count(other, { tenantId, documentIds: [d.id] }) }).toEqual({
      document: d.sourceKey,
      home: d.chunkCount,
      other: 0,
    });
  }
}

const finished = (job: { id: string }, owner: Member) => waitForJob(t(), owner.accessToken, job.id, isFinished, 'the reindex');

describe('PUT /llm/settings with a new embedding model', () => {
  test('answers with a reindex job that moves every stored document into the new collection, same chunk ids; and back again', async () => {
    const owner = await registerTenant(t(), 'reindex-owner');
    const bystander = await registerTenant(t(), 'reindex-bystander');
    const { documents } = await storeDocuments(owner, 'moved');
    await storeDocuments(bystander, 'untouched');
    const chunks = documents.reduce((n, d) => n + d.chunkCount, 0);
    expect(await t().vectors.count(builtin, { tenantId: owner.tenantId })).toBe(chunks);

    const put = await t().put('/api/v1/llm/settings', await standInSettings(owner), { token: owner.accessToken });
    expect(put.status).toBe(200);
    expect(put.body.embedding).toMatchObject({ provider: 'openai', model: standInModel.model });
    expect(put.body.reindexJob).toMatchObject({ kind: 'reindexDocuments', title: `Reindex documents with openai ${standInModel.model}`, projectId: null });
    const job = await finished(put.body.reindexJob, owner);
    expect(job).toMatchObject({
      status: 'completed',
      counters: { documentsTotal: 3, chunksTotal: chunks, documentsReindexed: 3, chunksReindexed: chunks },
      requestedBy: `user:${owner.userId}`,
    });

    const moved = await Document.findAll({ where: { tenantId: owner.tenantId } });
    expect(moved.map((d) => [d.embeddingModel, d.embeddingDimensions])).toEqual(documents.map(() => [standInModel.model, standInModel.dimensions]));
    expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(chunks);
    expect(await t().vectors.count(builtin, { tenantId: owner.tenantId })).toBe(0);
    await expectVectorsWhereDocumentsSay(owner.tenantId, standInModel);
    // The new vectors are the stand-in's for each chunk as embedded (its headings, then its text), under the chunk's own id.
    const chunk = await DocumentChunk.findOne({ where: { documentId: documents[1]?.id, chunkIndex: 1 }, rejectOnEmpty: true });
    const [nearest] = await t().vectors.search(standInModel, standInEmbedding(embeddingInputOf(chunk)), { tenantId: owner.tenantId }, 1);
    expect(nearest).toMatchObject({ id: chunk.id, payload: { documentId: chunk.documentId, chunkIndex: 1, projectId: chunk.projectId } });
    // The other tenant's documents stay where they were.
    const theirs = await Document.findAll({ where: { tenantId: bystander.tenantId } });
    expect(theirs.map((d) => d.embeddingModel)).toEqual(['hashing-384', 'hashing-384', 'hashing-384']);
    expect(await t().vectors.count(builtin, { tenantId: bystander.tenantId })).toBe(theirs.reduce((n, d) => n + d.chunkCount, 0));

    // A change that leaves the embedding model as it is starts nothing.
    const same = await t().put('/api/v1/llm/settings', { ...(await standInSettings(owner)), monthlyBudgetUsd: 100 }, { token: owner.accessToken });
    expect(same.status).toBe(200);
    expect(same.body).not.toHaveProperty('reindexJob');

    // Back to the built-in model: the vectors come back under the same ids.
    const back = await t().put('/api/v1/llm/settings', {}, { token: owner.accessToken });
    expect(back.body.reindexJob).toMatchObject({ kind: 'reindexDocuments', title: 'Reindex documents with builtin hashing-384' });
    expect(await finished(back.body.reindexJob, owner)).toMatchObject({ status: 'completed', counters: { documentsReindexed: 3, chunksReindexed: chunks } });
    expect(await t().vectors.count(builtin, { tenantId: owner.tenantId })).toBe(chunks);
    expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(0);
    await expectVectorsWhereDocumentsSay(owner.tenantId, standInModel);
    expect(await Job.count({ where: { tenantId: owner.tenantId, kind: 'reindexDocuments' } })).toBe(2);
  });

  test('waits while documents are being published under the settings of now, so the reindex it starts cannot miss them', async () => {
    const owner = await registerTenant(t(), 'reindex-ordered');
    const body = await standInSettings(owner);
    // Storing's publishing transaction holds the settings still until it commits.
    let publish!: () => void;
    const published = new Promise<void>((resolve) => (publish = resolve));
    let publisherPid = 0;
    const publishing = t().sequelize.transaction(async (transaction) => {
      await holdLlmSettings(t().sequelize, owner.tenantId, transaction);
      const [row] = await t().sequelize.query<{ pid: number }>('SELECT pg_backend_pid() AS pid', { transaction, type: QueryTypes.SELECT });
      publisherPid = row?.pid ?? -1;
      await published;
    });
    let answered = false;
    try {
      await waitUntil('the publishing transaction holds the settings', () => Promise.resolve(publisherPid !== 0));
      const put = t()
        .put('/api/v1/llm/settings', body, { token: owner.accessToken })
        .then((res) => {
          answered = true;
          return res;
        });
      await waitUntil('the settings change waits for the publishing to commit', async () => (await backendsBlockedBy(t().sequelize, publisherPid)) > 0);
      expect(answered).toBe(false);
      publish();
      await publishing;
      expect((await put).status).toBe(200);
    } finally {
      publish();
      await publishing;
    }
  });

  test('a tenant without stored documents gets no job', async () => {
    const owner = await registerTenant(t(), 'reindex-empty');
    const put = await t().put('/api/v1/llm/settings', await standInSettings(owner), { token: owner.accessToken });
    expect(put.status).toBe(200);
    expect(put.body).not.toHaveProperty('reindexJob');
    expect(await Job.count({ where: { tenantId: owner.tenantId } })).toBe(0);
  });
});

describe('the reindexDocuments workflow', () => {
  test('one document per batch and per run (continue-as-new), progress while a batch waits, cancelled mid-batch, and a retry finishes the rest', async () => {
    const owner = await registerTenant(t(), 'reindex-cancel');
    const { documents } = await storeDocuments(owner, 'held');
    // The settings change without the route's job: this one is started with small batches below.
    await updateLlmSettings(deps(), auditOf(owner), owner.tenantId, await standInSettings(owner), `user:${owner.userId}`);
    standIn.requests.length = 0;
    // The probe of the model's dimensions and the first document answer at once; the second document's embedding waits.
    standIn.script({ status: 200 }, { status: 200 }, { status: 200, delayMs: 60_000 });
    const { job: started } = await startReindex(deps(), auditOf(owner), {
      tenantId: owner.tenantId,
      requestedBy: `user:${owner.userId}`,
      tuning: { batchSize: 1, batchesPerRun: 1, heartbeatTimeoutSeconds: 2 },
    });
    await waitUntil('the second batch waits for its embeddings', () => Promise.resolve(standIn.requests.filter((r) => r.path.endsWith('/embeddings')).length === 3));
    const running = await waitForJob(t(), owner.accessToken, started.id, (j) => j.progress?.stage === 'reindexing' && j.progress.counters.documentsReindexed === 1, 'progress after one batch');
    expect(running.progress).toMatchObject({ stage: 'reindexing', documentsTotal: 3, documentsReindexed: 1, counters: { documentsTotal: 3, documentsReindexed: 1, batches: 1 } });
    // The run that answers is not the first: it continued as new after its one batch.
    const history = await t().temporal.workflow.getHandle(started.workflowId).fetchHistory();
    expect(history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId).toBeTruthy();

    expect((await t().post(`/api/v1/jobs/${started.id}/cancel`, undefined, { token: owner.accessToken })).status).toBe(202);
    const cancelled = await finished(started, owner);
    expect(cancelled).toMatchObject({ status: 'cancelled', counters: { documentsReindexed: 1 } });
    // One document moved, two not: each document's vectors are in the collection it names, and only there.
    const [movedOne] = await Document.findAll({ where: { tenantId: owner.tenantId, embeddingModel: standInModel.model } });
    expect(movedOne).toBeDefined();
    await expectVectorsWhereDocumentsSay(owner.tenantId, standInModel);

    const retried = await t().post(`/api/v1/jobs/${started.id}/retry`, undefined, { token: owner.accessToken });
    expect(retried.status).toBe(202);
    const done = await finished(retried.body as JobBody, owner);
    expect(done).toMatchObject({ status: 'completed', retryOf: started.id, counters: { documentsTotal: 2, documentsReindexed: 2 } });
    const chunks = documents.reduce((n, d) => n + d.chunkCount, 0);
    expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(chunks);
    expect(await t().vectors.count(builtin, { tenantId: owner.tenantId })).toBe(0);
    await expectVectorsWhereDocumentsSay(owner.tenantId, standInModel);
  });

  test('a batch or a start whose model the settings no longer name stands down, writing nothing', async () => {
    const owner = await registerTenant(t(), 'reindex-superseded');
    await storeDocuments(owner, 'superseded');
    await updateLlmSettings(deps(), auditOf(owner), owner.tenantId, await standInSettings(owner, 'text-embedding-3-large'), `user:${owner.userId}`);
    const call = { tenantId: owner.tenantId, mode: 'job' as const };
    expect(await resolveReindexTarget(deps(), call, { provider: 'openai', model: standInModel.model })).toEqual({
      superseded: 'The embedding model changed again (now text-embedding-3-large): the reindex started by that change moves the documents.',
    });
    const batch = await reindexBatch(deps(), {}, owner.tenantId, standInModel, null, 100);
    expect(batch).toMatchObject({ next: null, documentsReindexed: 0, superseded: expect.stringContaining('text-embedding-3-large') });
    expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(0);
    expect(await t().vectors.count({ model: 'text-embedding-3-large', dimensions: 8 }, { tenantId: owner.tenantId })).toBe(0);
    expect((await Document.findAll({ where: { tenantId: owner.tenantId } })).map((d) => d.embeddingModel)).toEqual(['hashing-384', 'hashing-384', 'hashing-384']);
  });
});

describe('an ingestion crossing a reindex', () => {
  /** A Markdown guide of several chunks about `topic`; `edition` changes its bytes. */
  const guide = (topic: string, edition = 1) =>
    `# The ${topic} guide, edition ${edition}\n\n${[1, 2, 3]
      .map((n) => `## ${topic} ${n}\n\nThe ${topic} service answers within a second in edition ${edition}. Operators page the on-call engineer when it does not, and the incident is reviewed.\n`)
      .join('\n')}`;

  /**
   * Uploads `parts` and holds the ingestion between embedding and storing while `meanwhile` runs:
   * the stand-in answers its embedding call late, and by then a transaction holds the job's items,
   * so the embedding step (which embedded with the model of before) cannot commit, nor storing
   * start, until `meanwhile` is done. Returns the finished ingestion job.
   */
  async function ingestHeldAcross(owner: Member, projectId: string, parts: UploadPart[], meanwhile: () => Promise<void>): Promise<JobBody> {
    standIn.requests.length = 0;
    standIn.script({ status: 200, delayMs: 3000 });
    const upload = await uploadDocuments(t(), owner.accessToken, projectId, parts);
    expect(upload.status).toBe(202);
    const jobId = (upload.body as JobBody).id;
    await waitUntil('the ingestion calls the embedding model', () => Promise.resolve(standIn.requests.some((r) => r.path.endsWith('/embeddings'))));
    const lock = await holdTransaction(async (client) => {
      await client.query('SELECT 1 FROM ingestion_items WHERE job_id = $1 FOR UPDATE', [jobId]);
    });
    try {
      await waitUntil('the embedding step waits to commit', async () => (await backendsBlockedBy(t().sequelize, lock.pid)) > 0);
      expect(await IngestionItem.count({ where: { jobId, state: 'chunked' } })).toBe(parts.length);
      await meanwhile();
    } finally {
      await lock.release();
    }
    return waitForJob(t(), owner.accessToken, jobId, isFinished, 'the ingestion');
  }

  /** Stores `name` (version `edition` of the `topic` guide) with the tenant's embedding model now, as the pipeline's steps do. */
  async function storeGuide(owner: Member, projectId: string, name: string, topic: string): Promise<void> {
    expect(await ingestInProcess(deps(), { tenantId: owner.tenantId, projectId }, [{ name, bytes: Buffer.from(guide(topic)) }], 10)).toMatchObject({ documents: 1, failed: 0 });
  }

  test('a version it replaces that a reindex moved meanwhile leaves no vectors behind in the collection the reindex moved it to', async () => {
    const owner = await registerTenant(t(), 'crossing-moved');
    const project = await createProject(t(), owner.accessToken, 'crossing-moved');
    await storeGuide(owner, project.id, 'billing.md', 'billing');
    const [v1] = await Document.findAll({ where: { projectId: project.id } });
    expect(v1).toMatchObject({ embeddingModel: builtin.model });
    // The model changes; the reindex of it runs while a new version of the document, embedded with the new model, waits to be stored.
    await updateLlmSettings(deps(), auditOf(owner), owner.tenantId, await standInSettings(owner), `user:${owner.userId}`);
    const job = await ingestHeldAcross(owner, project.id, [{ name: 'billing.md', content: guide('billing', 2), type: 'text/markdown' }], async () => {
      const { job: reindex } = await startReindex(deps(), auditOf(owner), { tenantId: owner.tenantId, requestedBy: `user:${owner.userId}` });
      expect(await finished(reindex, owner)).toMatchObject({ status: 'completed', counters: { documentsReindexed: 1 } });
      // The stored version is in the new collection now, where the ingestion's new version goes too.
      expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(v1?.chunkCount);
    });
    expect(job).toMatchObject({ status: 'completed', counters: { documentsStored: 1, documentsFailed: 0 } });

    const v2 = await Document.findOne({ where: { projectId: project.id }, rejectOnEmpty: true });
    expect(v2).toMatchObject({ status: 'stored', embeddingModel: standInModel.model, embeddingDimensions: standInModel.dimensions });
    expect(v2.contentSha256).not.toBe(v1?.contentSha256);
    // Only the new version's chunks and vectors: the replaced one's went from the collection it was in when replaced.
    expect(await storedDocuments(t(), owner.tenantId, project.id)).toMatchObject({ 'billing.md': { liveChunks: v2.chunkCount, allChunks: v2.chunkCount, vectors: v2.chunkCount } });
    expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(v2.chunkCount);
    await expectVectorsWhereDocumentsSay(owner.tenantId, standInModel);
  });

  test('versions embedded with the model of before a reindex fail, saying why, with nothing of them left; ingested again they are stored with the new model', async () => {
    const owner = await registerTenant(t(), 'crossing-stale');
    const project = await createProject(t(), owner.accessToken, 'crossing-stale');
    await updateLlmSettings(deps(), auditOf(owner), owner.tenantId, await standInSettings(owner), `user:${owner.userId}`);
    await storeGuide(owner, project.id, 'billing.md', 'billing');
    const v1 = await Document.findOne({ where: { projectId: project.id }, rejectOnEmpty: true });
    expect(v1).toMatchObject({ embeddingModel: standInModel.model });
    const parts: UploadPart[] = [
      { name: 'billing.md', content: guide('billing', 2), type: 'text/markdown' },
      { name: 'scheduling.md', content: guide('scheduling'), type: 'text/markdown' },
    ];
    // Embedded with the stand-in's model; before they are stored, the tenant goes back to the built-in one and its documents are reindexed.
    const job = await ingestHeldAcross(owner, project.id, parts, async () => {
      const put = await t().put('/api/v1/llm/settings', {}, { token: owner.accessToken });
      expect(await finished(put.body.reindexJob, owner)).toMatchObject({ status: 'completed', counters: { documentsReindexed: 1 } });
    });
    expect(job).toMatchObject({ status: 'completed', counters: { documentsStored: 0, documentsFailed: 2 } });
    const reason = `Not stored: embedded with ${standInModel.model}, but the tenant's embedding model changed to ${builtin.model} while this ingestion ran. Ingest the document again to store it with ${builtin.model}.`;
    expect(await finalEventData(job.id)).toMatchObject({
      failed: [
        { sourceKey: 'billing.md', error: reason },
        { sourceKey: 'scheduling.md', error: reason },
      ],
    });
    // The stored version stays live, reindexed; the new document failed; nothing of the versions not stored is left, staged vectors included.
    expect(await storedDocuments(t(), owner.tenantId, project.id)).toEqual({
      'billing.md': expect.objectContaining({ status: 'stored', liveChunks: v1.chunkCount, allChunks: v1.chunkCount, vectors: v1.chunkCount }),
      'scheduling.md': expect.objectContaining({ status: 'failed', allChunks: 0, vectors: 0 }),
    });
    expect(await Document.findOne({ where: { projectId: project.id, sourceKey: 'billing.md' }, rejectOnEmpty: true })).toMatchObject({ contentSha256: v1.contentSha256, embeddingModel: builtin.model });
    expect(await t().vectors.count(standInModel, { tenantId: owner.tenantId })).toBe(0);
    const [staged] = await t().sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM ingestion_vectors WHERE job_id = :jobId', { replacements: { jobId: job.id }, type: QueryTypes.SELECT });
    expect(staged?.n).toBe(0);

    const again = await uploadDocuments(t(), owner.accessToken, project.id, parts);
    expect(await waitForJob(t(), owner.accessToken, (again.body as JobBody).id, isFinished, 'the ingestion again')).toMatchObject({
      status: 'completed',
      counters: { documentsStored: 2, documentsFailed: 0 },
    });
    const stored = await Document.findAll({ where: { projectId: project.id } });
    expect(stored.map((d) => [d.status, d.embeddingModel])).toEqual([
      ['stored', builtin.model],
      ['stored', builtin.model],
    ]);
    await expectVectorsWhereDocumentsSay(owner.tenantId, standInModel);
  });
});
