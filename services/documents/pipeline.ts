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
import { effectiveLlmSettings, embedTexts, holdLlmSettings, type LlmCall, type LlmConfig, type LlmDeps } from '../llm';
import type { StepContext } from '../scans/pipeline';
import { DocumentFetchError, fetchDocument } from './fetch';
import { chunkId } from './identity';

/**
 * The steps of a document ingestion (issue 7, criteria 2-5).
 *
 * Per document, in order: `openDocuments` (its row, and whether these bytes are already stored),
 * `parseDocumentStep`, `chunkDocumentStep`; then per batch of documents: `stageChunks` (chunk rows
 * of the new versions, not yet live), `embedChunkTexts`, `storeVectors`, `publishVersions` (the new
 * versions become live; it names the versions they replaced), `removeReplacedVersion`. A plain
 * loop calling these does what the workflow does.
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
  | 'INGEST_BATCH_MAX_BYTES'
  | 'INGEST_FETCH_TIMEOUT_SECONDS'
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

/**
 * Points per vector-store write: a batch's versions go in one write, as every write costs a
 * commit (LanceDB: 200 documents of 16 points, 5.1 s written one document at a time, 0.65 s
 * fifty at a time), while the points of one write are held at once.
 */
const UPSERT_SLICE = 4096;
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

/** The version a new one replaced: its chunks and vectors are removed once the new one is live. */
export interface ReplacedVersion {
  contentSha256: string;
  collection: VectorCollection | null;
}

export interface OpenedDocument {
  documentId: string;
  /** These bytes are the stored version already: nothing to do. */
  unchanged: boolean;
}

/**
 * The documents' rows (each created `pending` when its project has no document with its source
 * key), in one statement, and whether each `contentSha256` is the version already stored; in the
 * order of `docs`, which must name distinct documents. A document stays as it was (its stored
 * version live) until `publishVersions` replaces it.
 */
export async function openDocuments(sequelize: Sequelize, docs: readonly DocumentIdentity[]): Promise<OpenedDocument[]> {
  if (docs.length === 0) return [];
  const column = <T>(value: (d: DocumentIdentity) => T) => docs.map(value);
  const rows = await sequelize.query<{ id: string; project_id: string; source_key: string; content_sha256: string | null; status: string }>(
    `INSERT INTO documents (id, tenant_id, project_id, source_key, source_type, origin, title, format, bytes, status, last_job_id, created_at, updated_at)
     SELECT id, tenant_id, project_id, source_key, source_type, origin, title, format, bytes, 'pending', job_id, now(), now()
     FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:tenants]::uuid[], ARRAY[:projects]::uuid[], ARRAY[:sourceKeys]::text[], ARRAY[:sourceTypes]::text[],
                 ARRAY[:origins]::text[], ARRAY[:titles]::text[], ARRAY[:formats]::text[], ARRAY[:bytes]::bigint[], ARRAY[:jobIds]::uuid[])
            AS d(id, tenant_id, project_id, source_key, source_type, origin, title, format, bytes, job_id)
     ON CONFLICT (project_id, source_key) DO UPDATE SET updated_at = documents.updated_at
     RETURNING id, project_id, source_key, content_sha256, status`,
    {
      replacements: {
        ids: docs.map(() => randomUUID()),
        tenants: column((d) => d.tenantId),
        projects: column((d) => d.projectId),
        sourceKeys: column((d) => d.sourceKey),
        sourceTypes: column((d) => d.sourceType),
        origins: column((d) => d.origin),
        titles: column((d) => d.title),
        formats: column((d) => d.format),
        bytes: column((d) => d.bytes),
        jobIds: column((d) => d.jobId),
      },
      type: QueryTypes.SELECT,
    },
  );
  const rowOf = new Map(rows.map((r) => [`${r.project_id}/${r.source_key}`, r]));
  const opened = docs.map((doc) => {
    const row = rowOf.get(`${doc.projectId}/${doc.sourceKey}`);
    if (!row) throw new Error(`no document row for ${doc.sourceKey}`);
    return { doc, documentId: row.id, unchanged: row.status === 'stored' && row.content_sha256 === doc.contentSha256 };
  });
  const unchanged = opened.filter((o) => o.unchanged);
  if (unchanged.length > 0) {
    // Same bytes: the request still names them, so they now belong to the request's origin (what a later sync compares).
    await sequelize.query(
      `UPDATE documents d SET origin = u.origin, source_type = u.source_type, last_job_id = u.job_id
       FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:origins]::text[], ARRAY[:sourceTypes]::text[], ARRAY[:jobIds]::uuid[]) AS u(id, origin, source_type, job_id)
       WHERE d.id = u.id`,
      {
        replacements: {
          ids: unchanged.map((o) => o.documentId),
          origins: unchanged.map((o) => o.doc.origin),
          sourceTypes: unchanged.map((o) => o.doc.sourceType),
          jobIds: unchanged.map((o) => o.doc.jobId),
        },
      },
    );
  }
  return opened.map(({ documentId, unchanged: same }) => ({ documentId, unchanged: same }));
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

/** A document version, as its chunks' vectors are keyed and filtered. */
export interface VersionKey {
  tenantId: string;
  projectId: string;
  documentId: string;
  contentSha256: string;
}

/** A document version's chunks, as stored. */
export interface VersionChunks extends VersionKey {
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

/** The vectors of some of a version's chunks. */
export interface VersionVectors {
  version: VersionKey;
  points: Array<{ chunkIndex: number; vector: number[] }>;
}

/**
 * Upserts the vectors of versions' chunks (ids from `chunkId`), all of them in as few writes as
 * `UPSERT_SLICE` allows; returns each version's point ids, in order. A text with no features at
 * all (the hashing embedder gives punctuation alone a zero vector) has no direction to compare:
 * its chunk stays searchable by keyword only.
 */
export async function storeVectors(vectors: VectorStore, collection: VectorCollection, versions: readonly VersionVectors[]): Promise<string[][]> {
  const perVersion: VectorPoint[][] = versions.map(({ version: v, points }) =>
    points
      .filter((p) => !isZeroVector(p.vector))
      .map((p) => ({
        id: chunkId(v.documentId, v.contentSha256, p.chunkIndex),
        vector: p.vector,
        payload: { tenantId: v.tenantId, projectId: v.projectId, documentId: v.documentId, chunkIndex: p.chunkIndex },
      })),
  );
  const all = perVersion.flat();
  for (let i = 0; i < all.length; i += UPSERT_SLICE) await vectors.upsert(collection, all.slice(i, i + UPSERT_SLICE));
  return perVersion.map((points) => points.map((p) => p.id));
}

/** A version whose chunk rows and vectors are written, ready to become its document's live version. */
export interface PublishedVersion {
  identity: DocumentIdentity;
  documentId: string;
  chunkCount: number;
  tokenCount: number;
  collection: VectorCollection;
}

const collectionOf = (model: string | null, dimensions: number | null): VectorCollection | null => (model !== null && dimensions !== null ? { model, dimensions } : null);

/**
 * Makes the versions live, in one statement: each document's row now names its new content hash,
 * chunk count and collection. Returns, per document published, the version it replaced (null when
 * it had none), read under the row lock: that is the one to remove, in the collection it is in
 * now, whatever a reindex or another ingestion did since the document was opened. A document
 * deleted meanwhile is left out.
 */
export async function publishVersions(sequelize: Sequelize, versions: readonly PublishedVersion[], transaction?: Transaction): Promise<Map<string, ReplacedVersion | null>> {
  if (versions.length === 0) return new Map();
  const column = <T>(value: (v: PublishedVersion) => T) => versions.map(value);
  const rows = await sequelize.query<{ id: string; sha: string | null; model: string | null; dimensions: number | null }>(
    // Locked in id order, so two publishes sharing documents cannot deadlock.
    `WITH previous AS MATERIALIZED (
       SELECT id, content_sha256, embedding_model, embedding_dimensions FROM documents WHERE id = ANY(ARRAY[:ids]::uuid[]) ORDER BY id FOR UPDATE
     )
     UPDATE documents d SET content_sha256 = v.sha, status = 'stored', error = NULL, chunk_count = v.chunks, token_count = v.tokens,
       embedding_model = v.model, embedding_dimensions = v.dimensions, title = v.title, format = v.format, bytes = v.bytes,
       origin = v.origin, source_type = v.source_type, last_job_id = v.job_id, updated_at = now()
     FROM unnest(ARRAY[:ids]::uuid[], ARRAY[:hashes]::text[], ARRAY[:chunks]::int[], ARRAY[:tokens]::int[], ARRAY[:models]::text[], ARRAY[:dimensions]::int[],
                 ARRAY[:titles]::text[], ARRAY[:formats]::text[], ARRAY[:bytes]::bigint[], ARRAY[:origins]::text[], ARRAY[:sourceTypes]::text[], ARRAY[:jobIds]::uuid[])
            AS v(id, sha, chunks, tokens, model, dimensions, title, format, bytes, origin, source_type, job_id)
     JOIN previous p ON p.id = v.id
     WHERE d.id = v.id
     RETURNING d.id, p.content_sha256 AS sha, p.embedding_model AS model, p.embedding_dimensions AS dimensions`,
    {
      replacements: {
        ids: column((v) => v.documentId),
        hashes: column((v) => v.identity.contentSha256),
        chunks: column((v) => v.chunkCount),
        tokens: column((v) => v.tokenCount),
        models: column((v) => v.collection.model),
        dimensions: column((v) => v.collection.dimensions),
        titles: column((v) => v.identity.title),
        formats: column((v) => v.identity.format),
        bytes: column((v) => v.identity.bytes),
        origins: column((v) => v.identity.origin),
        sourceTypes: column((v) => v.identity.sourceType),
        jobIds: column((v) => v.identity.jobId),
      },
      type: QueryTypes.SELECT,
      transaction,
    },
  );
  return new Map(rows.map((r) => [r.id, r.sha === null ? null : { contentSha256: r.sha, collection: collectionOf(r.model, r.dimensions) }]));
}

/**
 * Removes what a replaced version leaves behind once `live` is published: another version's
 * vectors, then its chunk rows; the same version (the same bytes, published by another job) in
 * another collection, its vectors there. Without `live`, `replaced` is a version never published
 * (or no longer live), removed whole. Safe to run again.
 */
export async function removeReplacedVersion(
  deps: { sequelize: Sequelize; vectors: VectorStore },
  tenantId: string,
  documentId: string,
  replaced: ReplacedVersion,
  live?: { contentSha256: string; collection: VectorCollection },
): Promise<void> {
  const sameVersion = live?.contentSha256 === replaced.contentSha256;
  if (sameVersion && (replaced.collection === null || sameCollection(replaced.collection, live.collection))) return;
  const rows = await deps.sequelize.query<{ id: string }>('SELECT id FROM document_chunks WHERE document_id = :documentId AND content_sha256 = :hash', {
    replacements: { documentId, hash: replaced.contentSha256 },
    type: QueryTypes.SELECT,
  });
  if (rows.length === 0) return;
  if (replaced.collection) await deps.vectors.deleteByIds(replaced.collection, { tenantId }, rows.map((r) => r.id));
  if (sameVersion) return;
  await deps.sequelize.query('DELETE FROM document_chunks WHERE document_id = :documentId AND content_sha256 = :hash', { replacements: { documentId, hash: replaced.contentSha256 } });
}

const sameCollection = (a: VectorCollection, b: VectorCollection) => a.model === b.model && a.dimensions === b.dimensions;

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

/**
 * Reads items' documents: a blob of its own whole, a packed one (`blobOffset` set) as its slice of
 * its pack, each pack read once (a batch's items are in seq order, and so are the packs).
 */
function documentReader(blobs: BlobStore): (item: IngestionItem) => Promise<Buffer> {
  let pack: { key: string; bytes: Promise<Buffer> } | null = null;
  return async (item) => {
    const key = item.blobKey ?? '';
    if (item.blobOffset === null) return readBlob(blobs, key);
    if (pack?.key !== key) pack = { key, bytes: readBlob(blobs, key) };
    const start = item.blobOffset;
    return (await pack.bytes).subarray(start, start + (item.bytes ?? 0));
  };
}

/** Where a job keeps the documents it fetched, under its blob prefix (removed with it). */
export const fetchedBlobKey = (blobPrefix: string, seq: number) => `${blobPrefix}fetched/${seq}`;

/**
 * Fetching: a URL's document goes to the blob store (refused, unreadable or unsupported ones fail);
 * every document's row is opened, and documents whose bytes are already stored are `unchanged`.
 */
export async function fetchIngestionBatch(deps: IngestionDeps, jobId: string, blobPrefix: string, batch: number, context: StepContext = {}): Promise<void> {
  const failures: Array<{ item: IngestionItem; error: string }> = [];
  const toOpen: Array<{ item: IngestionItem; format: DocumentFormat }> = [];
  for (const item of await itemsOf(jobId, batch, 'pending')) {
    context.signal?.throwIfAborted();
    if (item.sourceType === 'url' && item.blobKey === null) {
      try {
        const fetched = await fetchDocument(item.url ?? item.name, { allowedHosts: deps.config.INGEST_ALLOWED_HOSTS, maxBytes: deps.config.INGEST_MAX_DOCUMENT_BYTES, timeoutMs: deps.config.INGEST_FETCH_TIMEOUT_SECONDS * 1000 }, context.signal);
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
    toOpen.push({ item, format });
    context.heartbeat?.({ batch, seq: item.seq });
  }
  const opened = await openDocuments(deps.sequelize, toOpen.map(({ item, format }) => identityOf(item, format, item.title ?? item.name)));
  if (toOpen.length > 0) {
    // Only from `pending`: an item a cancellation failed meanwhile stays failed.
    await deps.sequelize.query(
      `UPDATE ingestion_items i SET format = o.format, document_id = o.document_id, state = o.state
       FROM unnest(ARRAY[:seqs]::int[], ARRAY[:formats]::text[], ARRAY[:documentIds]::uuid[], ARRAY[:states]::text[]) AS o(seq, format, document_id, state)
       WHERE i.job_id = :jobId AND i.seq = o.seq AND i.state = 'pending'`,
      {
        replacements: {
          jobId,
          seqs: toOpen.map((o) => o.item.seq),
          formats: toOpen.map((o) => o.format),
          documentIds: opened.map((o) => o.documentId),
          states: opened.map((o) => (o.unchanged ? 'unchanged' : 'fetched')),
        },
      },
    );
  }
  await failIngestionItems(deps.sequelize, failures);
}

/**
 * Parsing: each fetched document's bytes → normalised text, staged on its items in one statement
 * at the end of the batch (a retry parses the batch again); a document that cannot be parsed fails alone.
 */
export async function parseIngestionBatch(deps: IngestionDeps, jobId: string, batch: number, context: StepContext = {}): Promise<void> {
  const settings = parseSettingsOf(deps.config);
  const read = documentReader(deps.blobs);
  const parsed: Array<{ seq: number; text: string; title: string }> = [];
  const failures: Array<{ item: IngestionItem; error: string }> = [];
  for (const item of await itemsOf(jobId, batch, 'fetched')) {
    context.signal?.throwIfAborted();
    try {
      const bytes = await read(item);
      const document = await parseDocumentStep(settings, { bytes, format: item.format as DocumentFormat, name: item.name }, context.signal);
      parsed.push({ seq: item.seq, text: document.text, title: item.title ?? document.title ?? item.name });
    } catch (err) {
      if (!(err instanceof DocumentParseError)) throw err;
      failures.push({ item, error: `${err.message} (${err.code})` });
    }
    context.heartbeat?.({ batch, seq: item.seq });
  }
  // Only from `fetched`: an item a cancellation failed meanwhile stays failed.
  if (parsed.length > 0) {
    await deps.sequelize.query(
      `UPDATE ingestion_items i SET state = 'parsed', parsed_text = p.text, title = p.title
       FROM unnest(ARRAY[:seqs]::int[], ARRAY[:texts]::text[], ARRAY[:titles]::text[]) AS p(seq, text, title)
       WHERE i.job_id = :jobId AND i.seq = p.seq AND i.state = 'fetched'`,
      { replacements: { jobId, seqs: parsed.map((p) => p.seq), texts: parsed.map((p) => p.text), titles: parsed.map((p) => p.title) } },
    );
  }
  await failIngestionItems(deps.sequelize, failures);
}

/** Chunking: each parsed text → chunk rows of its new version (staged, not live), in one transaction with the items' new state. */
export async function chunkIngestionBatch(deps: IngestionDeps, jobId: string, batch: number, context: StepContext = {}): Promise<void> {
  const items = await itemsOf(jobId, batch, 'parsed');
  if (items.length === 0) return;
  const chunked = items.map((item) => ({ item, chunks: chunkDocumentStep(deps.config, item.parsedText ?? '') }));
  context.heartbeat?.({ batch, chunked: chunked.length });
  await deps.sequelize.transaction(async (transaction) => {
    // Only from `parsed`: an item a cancellation failed meanwhile gets no chunks.
    const moved = await deps.sequelize.query<{ seq: number }>(
      `UPDATE ingestion_items i SET state = 'chunked', chunk_count = u.count, token_count = u.tokens, parsed_text = NULL
       FROM unnest(ARRAY[:seqs]::int[], ARRAY[:counts]::int[], ARRAY[:tokens]::int[]) AS u(seq, count, tokens)
       WHERE i.job_id = :jobId AND i.seq = u.seq AND i.state = 'parsed'
       RETURNING i.seq`,
      {
        replacements: {
          jobId,
          seqs: chunked.map((c) => c.item.seq),
          counts: chunked.map((c) => c.chunks.length),
          tokens: chunked.map((c) => c.chunks.reduce((sum, chunk) => sum + chunk.tokens, 0)),
        },
        type: QueryTypes.SELECT,
        transaction,
      },
    );
    const seqs = new Set(moved.map((r) => r.seq));
    const versions = chunked.filter((c) => seqs.has(c.item.seq)).map(({ item, chunks }) => ({ ...versionOf(item), chunks }));
    await stageChunks(deps.sequelize, versions, transaction);
  });
}

const versionOf = (item: IngestionItem): VersionKey => ({ tenantId: item.tenantId, projectId: item.projectId, documentId: item.documentId ?? '', contentSha256: item.contentSha256 ?? '' });

/** From the chunk rows (`c`) of the new versions of the items `:seqs` (`i`) of job `:jobId`, and what `join` adds. */
const fromStagedChunks = (join = '') => `FROM ingestion_items i JOIN document_chunks c ON c.document_id = i.document_id AND c.content_sha256 = i.content_sha256 ${join}
  WHERE i.job_id = :jobId AND i.seq = ANY(ARRAY[:seqs]::int[])`;

/**
 * Embedding (on the LLM task queue): the batch's staged chunks → vectors from the tenant's
 * embedding model, in one gateway call, staged in `ingestion_vectors` with the items' collection.
 */
export async function embedIngestionBatch(deps: IngestionLlmDeps, jobId: string, batch: number, call: LlmCall, context: StepContext = {}): Promise<void> {
  const items = await itemsOf(jobId, batch, 'chunked');
  if (items.length === 0) return;
  const seqs = items.map((i) => i.seq);
  const all = await deps.sequelize.query<{ id: string; text: string; headingPath: string[] }>(
    `SELECT c.id, c.text, c.heading_path AS "headingPath" ${fromStagedChunks()} ORDER BY i.seq, c.chunk_index`,
    { replacements: { jobId, seqs }, type: QueryTypes.SELECT },
  );
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
      { where: { jobId, batch, state: 'chunked', seq: seqs }, transaction },
    );
  });
}

const vectorOf = (bytes: Buffer) => Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / Float32Array.BYTES_PER_ELEMENT));

/** Deps of the storing step: it reads the tenant's embedding model. */
export type IngestionStoreDeps = IngestionDeps & { config: IngestionConfig & LlmConfig };

const itemCollection = (item: IngestionItem): VectorCollection => ({ model: item.embeddingModel ?? '', dimensions: item.embeddingDimensions ?? 0 });

/**
 * Storing: the batch's staged vectors go to the vector store in one write, then, in one
 * transaction, the new versions become live and their items `stored`, each item recording the
 * version its document had until then; then those versions are removed (rows and vectors) and the
 * staged vectors dropped. Run again, it upserts the same points and removes what is left.
 *
 * A version embedded with a model the tenant's settings no longer name (changed, and the tenant's
 * documents reindexed, while this job ran) is not published: the reindex would never move it, so
 * vector search with the new model would never find it. Its item fails, saying so; ingesting the
 * document again stores it with the new model.
 */
export async function storeIngestionBatch(deps: IngestionStoreDeps, jobId: string, batch: number, context: StepContext = {}): Promise<void> {
  const items = await itemsOf(jobId, batch, 'embedded');
  const tenantId = items[0]?.tenantId;
  if (tenantId === undefined) return finishStoredBatch(deps, jobId, batch);
  const model = await tenantEmbeddingModel(deps.config, tenantId);
  // One model, so one collection: the batch was embedded in one call.
  const storable = items.filter((item) => item.embeddingModel === model);
  const staged = await deps.sequelize.query<{ document_id: string; chunk_index: number; vector: Buffer }>(
    `SELECT c.document_id, c.chunk_index, v.vector ${fromStagedChunks('JOIN ingestion_vectors v ON v.chunk_id = c.id')} ORDER BY i.seq, c.chunk_index`,
    { replacements: { jobId, seqs: storable.map((item) => item.seq) }, type: QueryTypes.SELECT },
  );
  const points = new Map<string, VersionVectors['points']>();
  for (const s of staged) {
    const point = { chunkIndex: s.chunk_index, vector: vectorOf(s.vector) };
    const list = points.get(s.document_id);
    if (list) list.push(point);
    else points.set(s.document_id, [point]);
  }
  context.signal?.throwIfAborted();
  context.heartbeat?.({ batch, staged: staged.length });
  const collection = storable[0] ? itemCollection(storable[0]) : null;
  const ids = collection ? await storeVectors(deps.vectors, collection, storable.map((item) => ({ version: versionOf(item), points: points.get(item.documentId ?? '') ?? [] }))) : [];

  const { current, moved, published } = await deps.sequelize.transaction(async (transaction) => {
    // Read again just before publishing, and held until this commits: a reindex started by a change
    // since then would never move these versions, and a change now waits for them to be published.
    await holdLlmSettings(deps.sequelize, tenantId, transaction);
    const now = await tenantEmbeddingModel(deps.config, tenantId);
    // Only from `embedded`, rows locked: a cancellation's cleanup either ran first (nothing is published) or waits for this commit.
    const moved = await deps.sequelize.query<{ seq: number }>(
      "UPDATE ingestion_items SET state = 'stored' WHERE job_id = :jobId AND seq = ANY(ARRAY[:seqs]::int[]) AND state = 'embedded' RETURNING seq",
      { replacements: { jobId, seqs: storable.filter((item) => item.embeddingModel === now).map((item) => item.seq) }, type: QueryTypes.SELECT, transaction },
    );
    const seqs = new Set(moved.map((r) => r.seq));
    const toPublish = storable.filter((item) => seqs.has(item.seq));
    const replaced = await publishVersions(
      deps.sequelize,
      toPublish.map((item) => ({
        identity: identityOf(item, item.format as DocumentFormat, item.title ?? item.name),
        documentId: item.documentId ?? '',
        chunkCount: item.chunkCount,
        tokenCount: item.tokenCount,
        collection: itemCollection(item),
      })),
      transaction,
    );
    // What each document held until now, for `finishStoredBatch` to remove (also when a retry runs it).
    const publishedItems = toPublish.filter((item) => replaced.has(item.documentId ?? ''));
    const before = publishedItems.map((item) => replaced.get(item.documentId ?? '') ?? null);
    if (publishedItems.length > 0) {
      await deps.sequelize.query(
        `UPDATE ingestion_items i SET replaced_sha256 = r.sha, replaced_model = r.model, replaced_dimensions = r.dimensions
         FROM unnest(ARRAY[:seqs]::int[], ARRAY[:hashes]::text[], ARRAY[:models]::text[], ARRAY[:dimensions]::int[]) AS r(seq, sha, model, dimensions)
         WHERE i.job_id = :jobId AND i.seq = r.seq`,
        {
          replacements: {
            jobId,
            seqs: publishedItems.map((item) => item.seq),
            hashes: before.map((r) => r?.contentSha256 ?? null),
            models: before.map((r) => r?.collection?.model ?? null),
            dimensions: before.map((r) => r?.collection?.dimensions ?? null),
          },
          transaction,
        },
      );
    }
    return { current: now, moved: seqs, published: new Set(publishedItems.map((item) => item.seq)) };
  });

  // Points upserted for versions not published (a cancellation took the item, the document went, the model changed) belong to no live version.
  // An item another attempt of this step stored meanwhile is the exception: its points are live.
  const unmoved = storable.filter((item) => !moved.has(item.seq)).map((item) => item.seq);
  const storedElsewhere = new Set(unmoved.length === 0 ? [] : (await IngestionItem.findAll({ where: { jobId, seq: unmoved, state: 'stored' }, attributes: ['seq'] })).map((item) => item.seq));
  const stray = storable.flatMap((item, i) => (published.has(item.seq) || storedElsewhere.has(item.seq) ? [] : (ids[i] ?? [])));
  if (collection && stray.length > 0) await deps.vectors.deleteByIds(collection, { tenantId }, stray);
  const stale = items.filter((item) => item.embeddingModel !== model || item.embeddingModel !== current);
  if (stale.length > 0) await failStaleItems(deps, stale, current);
  await finishStoredBatch(deps, jobId, batch);
}

/** The model the tenant's settings name for embeddings now. */
async function tenantEmbeddingModel(config: LlmConfig, tenantId: string): Promise<string> {
  return (await effectiveLlmSettings(config, tenantId)).embedding.model;
}

/** Items embedded with a model the tenant no longer uses: their staged chunk rows go (their vectors went already), and they fail. */
async function failStaleItems(deps: IngestionDeps, items: IngestionItem[], model: string): Promise<void> {
  const live = await deps.sequelize.query<{ id: string; content_sha256: string | null }>('SELECT id, content_sha256 FROM documents WHERE id = ANY(ARRAY[:ids]::uuid[])', {
    replacements: { ids: items.map((item) => item.documentId ?? '') },
    type: QueryTypes.SELECT,
  });
  const liveHash = new Map(live.map((d) => [d.id, d.content_sha256]));
  for (const item of items) {
    // The same bytes published meanwhile by another job are live: never removed.
    if (item.documentId === null || item.contentSha256 === null || liveHash.get(item.documentId) === item.contentSha256) continue;
    await removeReplacedVersion(deps, item.tenantId, item.documentId, { contentSha256: item.contentSha256, collection: null });
  }
  await failIngestionItems(
    deps.sequelize,
    items.map((item) => ({
      item,
      error: `Not stored: embedded with ${item.embeddingModel ?? 'another model'}, but the tenant's embedding model changed to ${model} while this ingestion ran. Ingest the document again to store it with ${model}.`,
    })),
  );
}

/** The versions the batch's stored items replaced are removed, and their staged vectors dropped; idempotent. */
async function finishStoredBatch(deps: IngestionDeps, jobId: string, batch: number): Promise<void> {
  for (const item of await itemsOf(jobId, batch, 'stored')) {
    if (item.replacedSha256 === null || item.documentId === null) continue;
    const replaced = { contentSha256: item.replacedSha256, collection: collectionOf(item.replacedModel, item.replacedDimensions) };
    await removeReplacedVersion(deps, item.tenantId, item.documentId, replaced, { contentSha256: item.contentSha256 ?? '', collection: itemCollection(item) });
  }
  await deps.sequelize.query(
    `DELETE FROM ingestion_vectors WHERE job_id = :jobId AND chunk_id IN (
       SELECT c.id FROM ingestion_items i JOIN document_chunks c ON c.document_id = i.document_id AND c.content_sha256 = i.content_sha256
       WHERE i.job_id = :jobId AND i.batch = :batch AND i.state = 'stored')`,
    { replacements: { jobId, batch } },
  );
}
