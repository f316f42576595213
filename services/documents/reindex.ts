import { QueryTypes, type Sequelize } from 'sequelize';
import { Document, type Job } from '../../db';
import type { VectorCollection, VectorStore } from '../../lib/vector-store';
import type { EmbeddingTarget, ReindexCursor, ReindexParams } from '../../workflows/definitions';
import type { AuditScope } from '../audit';
import { startJob, type Idempotency } from '../jobs';
import type { LlmJobsDeps } from '../llm-checks';
import type { StepContext } from '../scans/pipeline';
import { embedChunkTexts, storeVectors, type VersionVectors } from './pipeline';
import { effectiveLlmSettings, embedTexts, updateLlmSettings, type EffectiveLlmSettings, type LlmCall, type LlmDeps, type StoredLlmSettings } from '../llm';

/**
 * Reindexing: when a tenant's embedding model changes, a `reindexDocuments` job moves every
 * stored document's vectors into the new model's collection. Per batch of whole documents it
 * embeds their live chunks again with the new model, upserts them under the same chunk ids, then
 * (per document, under a row lock) switches the document to the new collection and deletes its
 * vectors from the old one. Every step is safe to repeat: the ids are deterministic, and a
 * document that was switched is no longer a candidate.
 */

export type ReindexDeps = LlmDeps & { vectors: VectorStore };

export interface ReindexRequest {
  tenantId: string;
  requestedBy: string;
  /** For tests and very large tenants; defaults suit most. */
  tuning?: Partial<Pick<ReindexParams, 'batchSize' | 'batchesPerRun' | 'heartbeatTimeoutSeconds'>>;
  retryOf?: string;
  idempotency?: Idempotency;
}

const defaultTuning = { batchSize: 256, batchesPerRun: 200 };

/** Texts per embedding call within a batch: bounds the vectors held at once, and heartbeats come between calls. */
const EMBED_SLICE = 128;

/** Embedded once per tenant and model (then served from the LLM cache) to learn the model's dimensions. */
const DIMENSIONS_PROBE = 'AuditFlow reindex: the dimensions of this embedding model';

const targetOf = (settings: EffectiveLlmSettings): EmbeddingTarget => ({ provider: settings.embedding.provider, model: settings.embedding.model });

/** Starts a reindex of the tenant's documents into its current embedding model. */
export async function startReindex(deps: LlmJobsDeps, audit: AuditScope, request: ReindexRequest): Promise<{ job: Job; replayed: boolean }> {
  const target = targetOf(await effectiveLlmSettings(deps.config, request.tenantId));
  const params: ReindexParams = { llmTaskQueue: deps.config.TEMPORAL_LLM_TASK_QUEUE, target, ...defaultTuning, ...request.tuning };
  return startJob(deps, audit, {
    tenantId: request.tenantId,
    projectId: null,
    kind: 'reindexDocuments',
    title: `Reindex documents with ${target.provider} ${target.model}`,
    params: { ...params },
    requestedBy: request.requestedBy,
    retryOf: request.retryOf,
    idempotency: request.idempotency,
  });
}

/** A failed or cancelled reindex starts again, into whatever model the settings name now. */
export async function restartReindex(deps: LlmJobsDeps, audit: AuditScope, old: Job, requestedBy: string, idempotency?: Idempotency): Promise<{ job: Job; replayed: boolean }> {
  const { batchSize, batchesPerRun, heartbeatTimeoutSeconds } = old.params as unknown as ReindexParams;
  return startReindex(deps, audit, { tenantId: old.tenantId, requestedBy, tuning: { batchSize, batchesPerRun, heartbeatTimeoutSeconds }, retryOf: old.id, idempotency });
}

/**
 * Replaces the tenant's LLM settings (updateLlmSettings) and, when that changed the embedding
 * model while stored documents have vectors of another model, starts the reindex that moves
 * them (without it, vector search with the new model would find none of them). Returns that job.
 */
export async function updateLlmSettingsAndReindex(
  deps: LlmJobsDeps,
  audit: AuditScope,
  tenantId: string,
  settings: StoredLlmSettings,
  requestedBy: string,
): Promise<Job | null> {
  const before = targetOf(await effectiveLlmSettings(deps.config, tenantId));
  const after = await updateLlmSettings(deps, audit, tenantId, settings, requestedBy);
  const target = targetOf(after);
  if (before.provider === target.provider && before.model === target.model) return null;
  if ((await countReindexWork(deps.sequelize, tenantId, { model: target.model, dimensions: null })).documents === 0) return null;
  return (await startReindex(deps, audit, { tenantId, requestedBy })).job;
}

/** The documents a reindex into (:model, :dimensions) moves; with :dimensions null, those of another model. */
const OUTSIDE = `tenant_id = :tenantId AND status = 'stored' AND content_sha256 IS NOT NULL
  AND (embedding_model IS DISTINCT FROM :model OR (CAST(:dimensions AS integer) IS NOT NULL AND embedding_dimensions IS DISTINCT FROM CAST(:dimensions AS integer)))`;

export type ResolvedTarget = { collection: VectorCollection } | { superseded: string };

/**
 * The collection the job fills: the tenant's embedding model now, with its dimensions learnt from
 * one (cached) embedding. When the settings no longer name the job's model, a later change has
 * started a newer reindex, and this one stands down.
 */
export async function resolveReindexTarget(deps: LlmDeps, call: LlmCall, target: EmbeddingTarget): Promise<ResolvedTarget> {
  const probe = await embedTexts(deps, call, [DIMENSIONS_PROBE]);
  if (probe.model !== target.model) return { superseded: supersededBy(probe.model) };
  return { collection: { model: probe.model, dimensions: probe.dimensions } };
}

const supersededBy = (model: string) => `The embedding model changed again (now ${model}): the reindex started by that change moves the documents.`;

/** What is left to move into `c` (with dimensions null: out of any collection of its model): documents and their live chunks. */
export async function countReindexWork(sequelize: Sequelize, tenantId: string, c: { model: string; dimensions: number | null }): Promise<{ documents: number; chunks: number }> {
  const [row] = await sequelize.query<{ documents: number; chunks: number }>(
    `SELECT count(*)::int AS documents, coalesce(sum(chunk_count), 0)::int AS chunks FROM documents WHERE ${OUTSIDE}`,
    { replacements: { tenantId, ...c }, type: QueryTypes.SELECT },
  );
  return row ?? { documents: 0, chunks: 0 };
}

export interface ReindexBatchResult {
  /** Where the next batch starts; null when this pass found no document after the cursor. */
  next: ReindexCursor | null;
  documentsReindexed: number;
  chunksReindexed: number;
  /** Set when the settings changed again mid-batch: nothing of the batch was switched. */
  superseded?: string;
}

interface Candidate {
  id: string;
  projectId: string;
  contentSha256: string;
  chunkCount: number;
  embeddingModel: string | null;
  embeddingDimensions: number | null;
}

interface ChunkRow {
  id: string;
  projectId: string;
  documentId: string;
  chunkIndex: number;
  text: string;
  headingPath: string[];
}

/** The next documents to move after `cursor`, whole, up to `batchSize` chunks (at least one document, however large). */
async function nextCandidates(sequelize: Sequelize, tenantId: string, c: VectorCollection, cursor: ReindexCursor | null, batchSize: number): Promise<Candidate[]> {
  const rows = await sequelize.query<Candidate>(
    `SELECT id, project_id AS "projectId", content_sha256 AS "contentSha256", chunk_count AS "chunkCount",
            embedding_model AS "embeddingModel", embedding_dimensions AS "embeddingDimensions"
       FROM documents
      WHERE ${OUTSIDE} ${cursor ? 'AND (project_id, id) > (:afterProject, :afterDocument)' : ''}
      ORDER BY project_id, id
      LIMIT :batchSize`,
    { replacements: { tenantId, ...c, afterProject: cursor?.projectId ?? null, afterDocument: cursor?.documentId ?? null, batchSize }, type: QueryTypes.SELECT },
  );
  let chunks = 0;
  const batch = rows.filter((d, i) => (chunks += d.chunkCount) <= batchSize || i === 0);
  return batch;
}

/** The live chunks of `documents` (their content hash as read), in slices, in (project, document, chunk) order. */
async function* liveChunks(sequelize: Sequelize, documents: Candidate[]): AsyncGenerator<ChunkRow[]> {
  let after: ChunkRow | undefined;
  for (;;) {
    const slice: ChunkRow[] = await sequelize.query<ChunkRow>(
      `SELECT c.id, c.project_id AS "projectId", c.document_id AS "documentId", c.chunk_index AS "chunkIndex", c.text, c.heading_path AS "headingPath"
         FROM document_chunks c
         JOIN unnest(ARRAY[:ids]::uuid[], ARRAY[:hashes]::text[]) AS live(document_id, content_sha256)
           ON live.document_id = c.document_id AND live.content_sha256 = c.content_sha256
        ${after ? 'WHERE (c.project_id, c.document_id, c.chunk_index) > (:project, :document, :chunk)' : ''}
        ORDER BY c.project_id, c.document_id, c.chunk_index
        LIMIT :limit`,
      {
        replacements: {
          ids: documents.map((d) => d.id),
          hashes: documents.map((d) => d.contentSha256),
          project: after?.projectId ?? null,
          document: after?.documentId ?? null,
          chunk: after?.chunkIndex ?? null,
          limit: EMBED_SLICE,
        },
        type: QueryTypes.SELECT,
      },
    );
    if (slice.length === 0) return;
    yield slice;
    after = slice[slice.length - 1];
  }
}

/** Consecutive items with the same key (the order of `liveChunks` keeps each project's and each document's together). */
function runsOf<T>(items: T[], key: (item: T) => string): T[][] {
  const runs: T[][] = [];
  for (const item of items) {
    const run = runs[runs.length - 1];
    if (run?.[0] !== undefined && key(run[0]) === key(item)) run.push(item);
    else runs.push([item]);
  }
  return runs;
}

/**
 * One batch: the next documents after `cursor` that are outside `c`, whole. Their chunks are
 * embedded with the tenant's model and upserted into `c` under their own ids; then each document
 * whose content is still the one read is switched to `c` and its vectors deleted from its old
 * collection, in one transaction holding its row (an ingestion replacing it meanwhile waits, and
 * a failure leaves it unswitched, to be done again). Vectors written for a document that changed
 * or went meanwhile are removed again.
 */
export async function reindexBatch(
  deps: ReindexDeps,
  context: StepContext,
  tenantId: string,
  c: VectorCollection,
  cursor: ReindexCursor | null,
  batchSize: number,
): Promise<ReindexBatchResult> {
  const documents = await nextCandidates(deps.sequelize, tenantId, c, cursor, batchSize);
  const last = documents[documents.length - 1];
  if (!last) return { next: null, documentsReindexed: 0, chunksReindexed: 0 };
  const byId = new Map(documents.map((d) => [d.id, d]));
  /** Per document, the ids of the live chunks embedded so far (their points in `c`, but for texts with a zero vector). */
  const written = new Map<string, string[]>(documents.map((d) => [d.id, []]));
  const discardWritten = () => deps.vectors.deleteByIds(c, { tenantId }, [...written.values()].flat());
  try {
    for await (const slice of liveChunks(deps.sequelize, documents)) {
      // The slice's vectors go in one write, whatever documents and projects they belong to.
      const slicePoints: VersionVectors[] = [];
      for (const run of runsOf(slice, (chunk) => chunk.projectId)) {
        const call: LlmCall = { tenantId, projectId: run[0]?.projectId, jobId: context.jobId, activity: context.activity, mode: 'job', signal: context.signal };
        const { vectors, collection } = await embedChunkTexts(deps, call, run);
        if (collection.model !== c.model || collection.dimensions !== c.dimensions) {
          await discardWritten();
          return { next: cursor, documentsReindexed: 0, chunksReindexed: 0, superseded: supersededBy(collection.model) };
        }
        let at = 0;
        for (const chunks of runsOf(run, (chunk) => chunk.documentId)) {
          const d = byId.get(chunks[0]?.documentId ?? '');
          const points = chunks.map((chunk, i) => ({ chunkIndex: chunk.chunkIndex, vector: vectors[at + i] ?? [] }));
          at += chunks.length;
          if (!d) continue;
          slicePoints.push({ version: { tenantId, projectId: d.projectId, documentId: d.id, contentSha256: d.contentSha256 }, points });
          written.get(d.id)?.push(...chunks.map((chunk) => chunk.id));
        }
      }
      await storeVectors(deps.vectors, c, slicePoints);
      context.heartbeat?.({ cursor, chunks: [...written.values()].reduce((n, ids) => n + ids.length, 0) });
    }
  } catch (err) {
    // Cancelled or failed mid-batch: the documents stay where they were, so their new vectors go (a retry writes them again).
    if (context.signal?.aborted) await discardWritten().catch(() => undefined);
    throw err;
  }

  let documentsReindexed = 0;
  let chunksReindexed = 0;
  const stale: string[] = [];
  for (const d of documents) {
    const ids = written.get(d.id) ?? [];
    const switched = await switchDocument(deps, tenantId, d, c, ids);
    if (switched === 'switched') {
      documentsReindexed += 1;
      chunksReindexed += ids.length;
    } else if (switched === 'changed') {
      stale.push(...ids);
    }
  }
  if (stale.length > 0) await deps.vectors.deleteByIds(c, { tenantId }, stale);
  return { next: { projectId: last.projectId, documentId: last.id }, documentsReindexed, chunksReindexed };
}

/**
 * Switches one document to `c` if it is still the version whose chunks were written there, and
 * deletes those chunks' vectors from its old collection, in one transaction on its row.
 * `changed`: its content changed or it is gone (the written vectors are stale); `done`: another
 * run switched it already (the written vectors are its live ones).
 */
async function switchDocument(deps: ReindexDeps, tenantId: string, d: Candidate, c: VectorCollection, chunkIds: string[]): Promise<'switched' | 'changed' | 'done'> {
  return deps.sequelize.transaction(async (transaction) => {
    const row = await Document.findOne({ where: { id: d.id, tenantId }, transaction, lock: transaction.LOCK.UPDATE });
    if (!row || row.contentSha256 !== d.contentSha256) return 'changed';
    const { embeddingModel: model, embeddingDimensions: dimensions } = row;
    if (model === c.model && dimensions === c.dimensions) return 'done';
    await row.update({ embeddingModel: c.model, embeddingDimensions: c.dimensions }, { transaction });
    // Inside the transaction: if the delete fails, the switch rolls back and a retry does both.
    if (model !== null && dimensions !== null && chunkIds.length > 0) await deps.vectors.deleteByIds({ model, dimensions }, { tenantId }, chunkIds);
    return 'switched';
  });
}
