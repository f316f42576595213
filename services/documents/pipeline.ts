import { randomUUID } from 'node:crypto';
import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { IngestionItem } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import type { Config } from '../../lib/config';
import { chunkText, type Chunk } from '../../lib/documents/chunk';
import { formatOf, type DocumentFormat } from '../../lib/documents/formats';
import { DocumentParseError, parseDocument, type ParsedDocument } from '../../lib/documents/parse';
import { UnsafeSourceError } from '../../lib/net-guard';
import type { VectorCollection, VectorPoint, VectorStore } from '../../lib/vector-store';
import { embedTexts, type LlmCall, type LlmDeps } from '../llm';
import type { StepContext } from '../scans/pipeline';
import { DocumentFetchError, fetchDocument } from './fetch';
import { chunkId } from './identity';

/**
 * The steps of a document ingestion (issue 7, criteria 2-5).
 *
 * Per document, in order: `openDocument` (its row, and whether these bytes are already stored),
 * `parseDocumentStep`, `chunkDocumentStep`, `stageChunks` (chunk rows of the new version, not yet
 * live), `embedChunkTexts`, `storeVectors`, `publishVersions` (the new version becomes live, the
 * replaced one's rows and vectors go). A plain loop calling these does what the workflow does.
 *
 * The workflow runs them per batch of an ingestion job's `ingestion_items` rows, one stage over
 * every batch before the next (`fetchIngestionBatch` … `storeIngestionBatch`), passing what one
 * stage makes to the next through Postgres (parsed text on the item, chunk rows, staged vectors).
 * Each batch step only moves items from its input state to its output state, so a retried or
 * re-run step (a worker killed mid-batch) does the remaining work once: chunk ids and vector ids
 * are deterministic (UUID v5 of document, content hash, index), rows are inserted on conflict do
 * nothing and vectors upserted.
 */

export type IngestionConfig = Pick<
  Config,
  | 'INGEST_ALLOWED_HOSTS'
  | 'INGEST_MAX_DOCUMENT_BYTES'
  | 'INGEST_MAX_DOCUMENTS'
  | 'CHUNK_TARGET_TOKENS'
  | 'CHUNK_OVERLAP_TOKENS'
  | 'PARSER_TIMEOUT_SECONDS'
  | 'PARSER_MAX_MEMORY_MB'
  | 'ZIP_MAX_ENTRIES'
  | 'ZIP_MAX_INFLATED_BYTES'
  | 'ZIP_MAX_COMPRESSION_RATIO'
>;

export interface IngestionDeps {
  sequelize: Sequelize;
  blobs: BlobStore;
  vectors: VectorStore;
  config: IngestionConfig;
}

/** The embedding step also needs the LLM gateway. */
export type IngestionLlmDeps = IngestionDeps & LlmDeps & { config: IngestionConfig & LlmDeps['config'] };

/** How long fetching one document may take, redirects included. */
const FETCH_TIMEOUT_MS = 120_000;
/** Points per vector-store write. */
const UPSERT_SLICE = 256;
/** Item errors are shown to people: long parser or server messages are cut. */
const MAX_ERROR_LENGTH = 1000;

// ---------------------------------------------------------------------------------------------
// Per-document steps

/** A document about to be stored: where it comes from, what it is called, and the hash of its raw bytes. */
export interface DocumentIdentity {
  tenantId: string;
  projectId: string;
  sourceKey: string;
  sourceType: 'file' | 'url' | 'text';
  origin: string;
  title: string;
  format: DocumentFormat;
  bytes: number;
  contentSha256: string;
  jobId: string | null;
}

/** The version a new one replaces: its chunks and vectors are removed once the new one is live. */
export interface ReplacedVersion {
  contentSha256: string;
  collection: VectorCollection | null;
}

export interface OpenedDocument {
  documentId: string;
  /** These bytes are the stored version already: nothing to do. */
  unchanged: boolean;
  replaced: ReplacedVersion | null;
}

/**
 * The document's row (created `pending` when the project has no document with this source key),
 * and whether `contentSha256` is the version already stored. The document stays as it was (its
 * stored version live) until `publishVersions` replaces it.
 */
export async function openDocument(sequelize: Sequelize, doc: DocumentIdentity): Promise<OpenedDocument> {
  const [row] = await sequelize.query<{ id: string; content_sha256: string | null; status: string; embedding_model: string | null; embedding_dimensions: number | null }>(
    `INSERT INTO documents (id, tenant_id, project_id, source_key, source_type, origin, title, format, bytes, status, last_job_id, created_at, updated_at)
     VALUES (:id, :tenantId, :projectId, :sourceKey, :sourceType, :origin, :title, :format, :bytes, 'pending', :jobId, now(), now())
     ON CONFLICT (project_id, source_key) DO UPDATE SET updated_at = documents.updated_at
     RETURNING id, content_sha256, status, embedding_model, embedding_dimensions`,
    { replacements: { id: randomUUID(), ...doc }, type: QueryTypes.SELECT },
  );
  if (!row) throw new Error(`no document row for ${doc.sourceKey}`);
  const stored = row.status === 'stored' && row.content_sha256 !== null;
  if (stored && row.content_sha256 === doc.contentSha256) {
    // Same bytes: the request still names it, so it now belongs to the request's origin (what a later sync compares).
    await sequelize.query('UPDATE documents SET origin = :origin, source_type = :sourceType, last_job_id = :jobId WHERE id = :id', {
      replacements: { id: row.id, origin: doc.origin, sourceType: doc.sourceType, jobId: doc.jobId },
    });
    return { documentId: row.id, unchanged: true, replaced: null };
  }
  const collection = row.embedding_model !== null && row.embedding_dimensions !== null ? { model: row.embedding_model, dimensions: row.embedding_dimensions } : null;
  return { documentId: row.id, unchanged: false, replaced: stored && row.content_sha256 ? { contentSha256: row.content_sha256, collection } : null };
}

export interface ParseSettings {
  timeoutMs: number;
  maxMemoryMb: number;
}

export const parseSettingsOf = (config: Pick<Config, 'PARSER_TIMEOUT_SECONDS' | 'PARSER_MAX_MEMORY_MB'>): ParseSettings => ({
  timeoutMs: config.PARSER_TIMEOUT_SECONDS * 1000,
  maxMemoryMb: config.PARSER_MAX_MEMORY_MB,
});

/** Bytes of a known format → normalised text and title; throws `DocumentParseError` for a document that cannot be parsed. */
export function parseDocumentStep(settings: ParseSettings, doc: { bytes: Buffer; format: DocumentFormat; name: string }, signal?: AbortSignal): Promise<ParsedDocument> {
  return parseDocument(doc, settings, { signal });
}

/** Text → token-aware chunks of the configured size and overlap. */
export function chunkDocumentStep(config: Pick<Config, 'CHUNK_TARGET_TOKENS' | 'CHUNK_OVERLAP_TOKENS'>, text: string): Chunk[] {
  return chunkText(text, { targetTokens: config.CHUNK_TARGET_TOKENS, overlapTokens: config.CHUNK_OVERLAP_TOKENS });
}

/** A document version's chunks, as stored. */
export interface VersionChunks {
  tenantId: string;
  projectId: string;
  documentId: string;
  contentSha256: string;
  chunks: Chunk[];
}

/** Writes the chunk rows of new versions (not live until published); rows already there are kept. */
export async function stageChunks(sequelize: Sequelize, versions: VersionChunks[], transaction?: Transaction): Promise<void> {
  const rows = versions.flatMap((v) => v.chunks.map((c) => ({ ...v, chunk: c, id: chunkId(v.documentId, v.contentSha256, c.index) })));
  for (let i = 0; i < rows.length; i += 1000) {
    const slice = rows.slice(i, i + 1000);
    await sequelize.query(
      `INSERT INTO document_chunks (id, tenant_id, project_id, document_id, content_sha256, chunk_index, text, heading_path, start_offset, end_offset, tokens)
       SELECT * FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:tenants]::uuid[], ARRAY[:projects]::uuid[], ARRAY[:documents]::uuid[], ARRAY[:hashes]::text[],
                            ARRAY[:indexes]::int[], ARRAY[:texts]::text[], ARRAY[:headings]::jsonb[], ARRAY[:starts]::int[], ARRAY[:ends]::int[], ARRAY[:tokens]::int[])
       ON CONFLICT (id) DO NOTHING`,
      {
        replacements: {
          ids: slice.map((r) => r.id),
          tenants: slice.map((r) => r.tenantId),
          projects: slice.map((r) => r.projectId),
          documents: slice.map((r) => r.documentId),
          hashes: slice.map((r) => r.contentSha256),
          indexes: slice.map((r) => r.chunk.index),
          texts: slice.map((r) => r.chunk.text),
          headings: slice.map((r) => JSON.stringify(r.chunk.headingPath)),
          starts: slice.map((r) => r.chunk.start),
          ends: slice.map((r) => r.chunk.end),
          tokens: slice.map((r) => r.chunk.tokens),
        },
        transaction,
      },
    );
  }
}

/** What a chunk's vector is made of. */
export interface EmbeddableChunk {
  text: string;
  headingPath: string[];
}

/**
 * A chunk's text as embedded: its headings first, then its text. A passage often never names
 * what its section is about ("Pass a number of days…" under "ms › Examples"), and without the
 * headings its vector misses what a question asks for.
 */
export function embeddingInputOf(chunk: EmbeddableChunk): string {
  return chunk.headingPath.length === 0 ? chunk.text : `${chunk.headingPath.join(' › ')}\n\n${chunk.text}`;
}

/** Vectors of chunks from the tenant's embedding model, and the collection they belong in. */
export async function embedChunkTexts(deps: LlmDeps, call: LlmCall, chunks: readonly EmbeddableChunk[]): Promise<{ vectors: number[][]; collection: VectorCollection }> {
  const embedded = await embedTexts(deps, call, chunks.map(embeddingInputOf));
  return { vectors: embedded.vectors, collection: { model: embedded.model, dimensions: embedded.dimensions } };
}

const isZeroVector = (v: number[]) => v.every((x) => x === 0);

/**
 * Upserts the vectors of a version's chunks (ids from `chunkId`). A text with no features at all
 * (the hashing embedder gives punctuation alone a zero vector) has no direction to compare: its
 * chunk stays searchable by keyword only.
 */
export async function storeVectors(
  vectors: VectorStore,
  collection: VectorCollection,
  version: { tenantId: string; projectId: string; documentId: string; contentSha256: string },
  points: Array<{ chunkIndex: number; vector: number[] }>,
): Promise<string[]> {
  const all: VectorPoint[] = points
    .filter((p) => !isZeroVector(p.vector))
    .map((p) => ({
      id: chunkId(version.documentId, version.contentSha256, p.chunkIndex),
      vector: p.vector,
      payload: { tenantId: version.tenantId, projectId: version.projectId, documentId: version.documentId, chunkIndex: p.chunkIndex },
    }));
  for (let i = 0; i < all.length; i += UPSERT_SLICE) await vectors.upsert(collection, all.slice(i, i + UPSERT_SLICE));
  return all.map((p) => p.id);
}

/** A version whose chunk rows and vectors are written, ready to become its document's live version. */
export interface PublishedVersion {
  identity: DocumentIdentity;
  documentId: string;
  chunkCount: number;
  tokenCount: number;
  collection: VectorCollection;
}

/** Makes the versions live: each document's row now names its new content hash, chunk count and collection. */
export async function publishVersions(sequelize: Sequelize, versions: PublishedVersion[], transaction?: Transaction): Promise<void> {
  for (const v of versions) {
    await sequelize.query(
      `UPDATE documents SET content_sha256 = :contentSha256, status = 'stored', error = NULL, chunk_count = :chunkCount, token_count = :tokenCount,
         embedding_model = :model, embedding_dimensions = :dimensions, title = :title, format = :format, bytes = :bytes,
         origin = :origin, source_type = :sourceType, last_job_id = :jobId, updated_at = now()
       WHERE id = :documentId`,
      { replacements: { ...v.identity, documentId: v.documentId, chunkCount: v.chunkCount, tokenCount: v.tokenCount, ...v.collection }, transaction },
    );
  }
}

/**
 * Removes one version of a document (one it replaced, or one never published): its vectors, then
 * its chunk rows. Safe to run again; the caller never names the live version.
 */
export async function removeReplacedVersion(deps: { sequelize: Sequelize; vectors: VectorStore }, tenantId: string, documentId: string, replaced: ReplacedVersion): Promise<void> {
  const rows = await deps.sequelize.query<{ id: string }>('SELECT id FROM document_chunks WHERE document_id = :documentId AND content_sha256 = :hash', {
    replacements: { documentId, hash: replaced.contentSha256 },
    type: QueryTypes.SELECT,
  });
  if (rows.length === 0) return;
  if (replaced.collection) await deps.vectors.deleteByIds(replaced.collection, { tenantId }, rows.map((r) => r.id));
  await deps.sequelize.query('DELETE FROM document_chunks WHERE document_id = :documentId AND content_sha256 = :hash', { replacements: { documentId, hash: replaced.contentSha256 } });
}

// ---------------------------------------------------------------------------------------------
// Batch steps of an ingestion job

const itemsOf = (jobId: string, batch: number, state: IngestionItem['state']) =>
  IngestionItem.findAll({ where: { jobId, batch, state }, order: [['seq', 'ASC']] });

const errorText = (message: string) => (message.length > MAX_ERROR_LENGTH ? `${message.slice(0, MAX_ERROR_LENGTH)}…` : message);

/**
 * Fails items with their errors (each item only from the state it was read in, so a late retry
 * cannot fail an item another run moved on). A document that never had a stored version says why too.
 */
export async function failIngestionItems(sequelize: Sequelize, items: Array<{ item: IngestionItem; error: string }>): Promise<void> {
  for (const { item, error } of items) {
    const message = errorText(error);
    const [, meta] = await sequelize.query("UPDATE ingestion_items SET state = 'failed', error = :message, parsed_text = NULL WHERE job_id = :jobId AND seq = :seq AND state = :state", {
      replacements: { message, jobId: item.jobId, seq: item.seq, state: item.state },
    });
    if ((meta as { rowCount?: number }).rowCount && item.documentId) {
      await sequelize.query("UPDATE documents SET status = 'failed', error = :message, updated_at = now() WHERE id = :id AND content_sha256 IS NULL", {
        replacements: { message, id: item.documentId },
      });
    }
  }
}

function identityOf(item: IngestionItem, format: DocumentFormat, title: string): DocumentIdentity {
  return {
    tenantId: item.tenantId,
    projectId: item.projectId,
    sourceKey: item.sourceKey,
    sourceType: item.sourceType === 'archive' ? 'file' : item.sourceType,
    origin: item.origin,
    title,
    format,
    bytes: item.bytes ?? 0,
    contentSha256: item.contentSha256 ?? '',
    jobId: item.jobId,
  };
}

async function readBlob(blobs: BlobStore, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of await blobs.get(key)) parts.push(typeof part === 'string' ? Buffer.from(part) : part);
  return Buffer.concat(parts);
}

/** Where a job keeps the documents it fetched, under its blob prefix (removed with it). */
export const fetchedBlobKey = (blobPrefix: string, seq: number) => `${blobPrefix}fetched/${seq}`;

/**
 * Fetching: a URL's document goes to the blob store (refused, unreadable or unsupported ones fail);
 * every document's row is opened, and documents whose bytes are already stored are `unchanged`.
 */
export async function fetchIngestionBatch(deps: IngestionDeps, jobId: string, blobPrefix: string, batch: number, context: StepContext = {}): Promise<void> {
  const failures: Array<{ item: IngestionItem; error: string }> = [];
  for (const item of await itemsOf(jobId, batch, 'pending')) {
    context.signal?.throwIfAborted();
    if (item.sourceType === 'url' && item.blobKey === null) {
      try {
        const fetched = await fetchDocument(item.url ?? item.name, { allowedHosts: deps.config.INGEST_ALLOWED_HOSTS, maxBytes: deps.config.INGEST_MAX_DOCUMENT_BYTES, timeoutMs: FETCH_TIMEOUT_MS }, context.signal);
        const format = formatOf(fetched.url, fetched.mediaType ?? undefined) ?? formatOf(item.name, fetched.mediaType ?? undefined);
        if (format === null) {
          failures.push({ item, error: `${item.name} is of a type we cannot parse (${fetched.mediaType ?? 'no Content-Type'}).` });
          continue;
        }
        const stored = await deps.blobs.put(fetchedBlobKey(blobPrefix, item.seq), fetched.bytes, { contentType: fetched.mediaType ?? undefined });
        await item.update({ blobKey: stored.key, bytes: stored.bytes, contentSha256: stored.sha256, mediaType: fetched.mediaType, format });
      } catch (err) {
        if (err instanceof UnsafeSourceError || err instanceof DocumentFetchError) {
          failures.push({ item, error: err.message });
          continue;
        }
        throw err;
      }
    }
    const format = (item.format as DocumentFormat | null) ?? formatOf(item.name, item.mediaType ?? undefined);
    if (format === null) {
      failures.push({ item, error: `${item.name} is of a type we cannot parse.` });
      continue;
    }
    const opened = await openDocument(deps.sequelize, identityOf(item, format, item.title ?? item.name));
    // Only from `pending`: an item a cancellation failed meanwhile stays failed.
    await IngestionItem.update(
      {
        format,
        documentId: opened.documentId,
        state: opened.unchanged ? 'unchanged' : 'fetched',
        replacedSha256: opened.replaced?.contentSha256 ?? null,
        replacedModel: opened.replaced?.collection?.model ?? null,
        replacedDimensions: opened.replaced?.collection?.dimensions ?? null,
      },
      { where: { jobId, seq: item.seq, state: 'pending' } },
    );
    context.heartbeat?.({ batch, seq: item.seq });
  }
  await failIngestionItems(deps.sequelize, failures);
}

/** Parsing: each fetched document's bytes → normalised text, staged on its item; a document that cannot be parsed fails alone. */
export async function parseIngestionBatch(deps: IngestionDeps, jobId: string, batch: number, context: StepContext = {}): Promise<void> {
  const settings = parseSettingsOf(deps.config);
  for (const item of await itemsOf(jobId, batch, 'fetched')) {
    context.signal?.throwIfAborted();
    try {
      const bytes = await readBlob(deps.blobs, item.blobKey ?? '');
      const parsed = await parseDocumentStep(settings, { bytes, format: item.format as DocumentFormat, name: item.name }, context.signal);
      await IngestionItem.update(
        { parsedText: parsed.text, title: item.title ?? parsed.title ?? item.name, state: 'parsed' },
        { where: { jobId, seq: item.seq, state: 'fetched' } },
      );
    } catch (err) {
      if (!(err instanceof DocumentParseError)) throw err;
      await failIngestionItems(deps.sequelize, [{ item, error: `${err.message} (${err.code})` }]);
    }
    context.heartbeat?.({ batch, seq: item.seq });
  }
}

/** Chunking: each parsed text → chunk rows of its new version (staged, not live), in one transaction with the items' new state. */
export async function chunkIngestionBatch(deps: IngestionDeps, jobId: string, batch: number, context: StepContext = {}): Promise<void> {
  const items = await itemsOf(jobId, batch, 'parsed');
  const chunked = items.map((item) => ({ item, chunks: chunkDocumentStep(deps.config, item.parsedText ?? '') }));
  context.heartbeat?.({ batch, chunked: chunked.length });
  await deps.sequelize.transaction(async (transaction) => {
    for (const { item, chunks } of chunked) {
      const tokens = chunks.reduce((sum, c) => sum + c.tokens, 0);
      // Only from `parsed`: an item a cancellation failed meanwhile gets no chunks.
      const [, meta] = await deps.sequelize.query(
        "UPDATE ingestion_items SET state = 'chunked', chunk_count = :count, token_count = :tokens, parsed_text = NULL WHERE job_id = :jobId AND seq = :seq AND state = 'parsed'",
        { replacements: { count: chunks.length, tokens, jobId, seq: item.seq }, transaction },
      );
      if (!(meta as { rowCount?: number }).rowCount) continue;
      await stageChunks(deps.sequelize, [{ tenantId: item.tenantId, projectId: item.projectId, documentId: item.documentId ?? '', contentSha256: item.contentSha256 ?? '', chunks }], transaction);
    }
  });
}

interface StagedChunk {
  id: string;
  chunk_index: number;
  text: string;
  headingPath: string[];
}

/** The chunk rows of an item's new version, in order. */
function stagedChunksOf(sequelize: Sequelize, item: IngestionItem): Promise<StagedChunk[]> {
  return sequelize.query<StagedChunk>('SELECT id, chunk_index, text, heading_path AS "headingPath" FROM document_chunks WHERE document_id = :documentId AND content_sha256 = :hash ORDER BY chunk_index', {
    replacements: { documentId: item.documentId, hash: item.contentSha256 },
    type: QueryTypes.SELECT,
  });
}

/**
 * Embedding (on the LLM task queue): the batch's staged chunks → vectors from the tenant's
 * embedding model, in one gateway call, staged in `ingestion_vectors` with the items' collection.
 */
export async function embedIngestionBatch(deps: IngestionLlmDeps, jobId: string, batch: number, call: LlmCall, context: StepContext = {}): Promise<void> {
  const items = await itemsOf(jobId, batch, 'chunked');
  if (items.length === 0) return;
  const chunks = await Promise.all(items.map((item) => stagedChunksOf(deps.sequelize, item)));
  const all = chunks.flat();
  const { vectors, collection } = await embedChunkTexts(deps, call, all);
  context.heartbeat?.({ batch, embedded: all.length });
  await deps.sequelize.transaction(async (transaction) => {
    for (let i = 0; i < all.length; i += 1000) {
      await deps.sequelize.query(
        `INSERT INTO ingestion_vectors (chunk_id, job_id, vector)
         SELECT c, :jobId, v FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:vectors]::bytea[]) AS s(c, v)
         ON CONFLICT (chunk_id) DO UPDATE SET vector = EXCLUDED.vector, job_id = EXCLUDED.job_id`,
        {
          replacements: { jobId, ids: all.slice(i, i + 1000).map((c) => c.id), vectors: vectors.slice(i, i + 1000).map((v) => Buffer.from(Float32Array.from(v).buffer)) },
          transaction,
        },
      );
    }
    await IngestionItem.update(
      { state: 'embedded', embeddingModel: collection.model, embeddingDimensions: collection.dimensions },
      { where: { jobId, batch, state: 'chunked', seq: items.map((i) => i.seq) }, transaction },
    );
  });
}

const vectorOf = (bytes: Buffer) => Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));

/**
 * Storing: the batch's staged vectors go to the vector store, then, in one transaction, each
 * document's new version becomes live and its item `stored`; then the versions they replaced are
 * removed (rows and vectors) and the staged vectors dropped. Run again, it upserts the same points
 * and removes what is left.
 */
export async function storeIngestionBatch(deps: IngestionDeps, jobId: string, batch: number, context: StepContext = {}): Promise<void> {
  const items = await itemsOf(jobId, batch, 'embedded');
  const written = new Map<number, { ids: string[]; collection: VectorCollection }>();
  for (const item of items) {
    context.signal?.throwIfAborted();
    const collection = { model: item.embeddingModel ?? '', dimensions: item.embeddingDimensions ?? 0 };
    const staged = await deps.sequelize.query<{ chunk_index: number; vector: Buffer }>(
      `SELECT c.chunk_index, v.vector FROM document_chunks c JOIN ingestion_vectors v ON v.chunk_id = c.id
       WHERE c.document_id = :documentId AND c.content_sha256 = :hash ORDER BY c.chunk_index`,
      { replacements: { documentId: item.documentId, hash: item.contentSha256 }, type: QueryTypes.SELECT },
    );
    const version = { tenantId: item.tenantId, projectId: item.projectId, documentId: item.documentId ?? '', contentSha256: item.contentSha256 ?? '' };
    const ids = await storeVectors(deps.vectors, collection, version, staged.map((s) => ({ chunkIndex: s.chunk_index, vector: vectorOf(s.vector) })));
    written.set(item.seq, { ids, collection });
    context.heartbeat?.({ batch, seq: item.seq });
  }
  const published = await deps.sequelize.transaction(async (transaction) => {
    // Only from `embedded`, rows locked: a cancellation's cleanup either ran first (nothing is published) or waits for this commit.
    const rows = await deps.sequelize.query<{ seq: number }>("UPDATE ingestion_items SET state = 'stored' WHERE job_id = :jobId AND batch = :batch AND state = 'embedded' RETURNING seq", {
      replacements: { jobId, batch },
      type: QueryTypes.SELECT,
      transaction,
    });
    const seqs = new Set(rows.map((r) => r.seq));
    const versions = items
      .filter((item) => seqs.has(item.seq))
      .map((item) => ({
        identity: identityOf(item, item.format as DocumentFormat, item.title ?? item.name),
        documentId: item.documentId ?? '',
        chunkCount: item.chunkCount,
        tokenCount: item.tokenCount,
        collection: { model: item.embeddingModel ?? '', dimensions: item.embeddingDimensions ?? 0 },
      }));
    await publishVersions(deps.sequelize, versions, transaction);
    return seqs;
  });
  // Points upserted for items a cancellation took meanwhile would belong to no live version.
  for (const [seq, { ids, collection }] of written) {
    if (!published.has(seq) && ids.length > 0) await deps.vectors.deleteByIds(collection, { tenantId: items[0]?.tenantId ?? '' }, ids);
  }
  await finishStoredBatch(deps, jobId, batch);
}

/** The versions the batch's stored items replaced are removed, and their staged vectors dropped; idempotent. */
async function finishStoredBatch(deps: IngestionDeps, jobId: string, batch: number): Promise<void> {
  for (const item of await itemsOf(jobId, batch, 'stored')) {
    if (item.replacedSha256 === null || item.replacedSha256 === item.contentSha256 || item.documentId === null) continue;
    const collection = item.replacedModel !== null && item.replacedDimensions !== null ? { model: item.replacedModel, dimensions: item.replacedDimensions } : null;
    await removeReplacedVersion(deps, item.tenantId, item.documentId, { contentSha256: item.replacedSha256, collection });
  }
  await deps.sequelize.query(
    `DELETE FROM ingestion_vectors WHERE job_id = :jobId AND chunk_id IN (
       SELECT c.id FROM ingestion_items i JOIN document_chunks c ON c.document_id = i.document_id AND c.content_sha256 = i.content_sha256
       WHERE i.job_id = :jobId AND i.batch = :batch AND i.state = 'stored')`,
    { replacements: { jobId, batch } },
  );
}
