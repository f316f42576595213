import { QueryTypes, type Sequelize } from 'sequelize';
import { MAX_TOP_K, type VectorStore } from '../../lib/vector-store';
import { embedTexts, type LlmCall, type LlmDeps } from '../llm';
import { getProject } from '../projects';

/**
 * Searching a tenant's knowledge base (issue 7, criterion 7): by meaning (the query's embedding
 * against the chunk vectors), by words (Postgres full-text search over the chunks), or both,
 * fused by reciprocal rank. Only live chunks are found: those of a document's stored version, in
 * a project that is not being deleted. The tenant comes from the caller's token and filters every
 * query, in Postgres and in the vector store.
 */

export type SearchDeps = LlmDeps & { vectors: VectorStore };

export const searchModes = ['vector', 'keyword', 'hybrid'] as const;
export type SearchMode = (typeof searchModes)[number];

export interface SearchRequest {
  tenantId: string;
  query: string;
  projectId?: string;
  /** Restricts the search to these documents; an empty list finds nothing. */
  documentIds?: string[];
  topK: number;
  mode: SearchMode;
  /** Who asks, for the vault's access log when the embedding model's key is a secret. */
  actor?: string;
  signal?: AbortSignal;
}

export interface SearchResult {
  /** Vector: cosine similarity. Keyword: Postgres's cover-density rank. Hybrid: the fused reciprocal-rank score. */
  score: number;
  document: { id: string; title: string; sourceKey: string; projectId: string };
  chunk: { id: string; index: number; text: string; headingPath: string[]; start: number; end: number };
}

/** Reciprocal rank fusion's constant: damps the weight of the very first ranks (Cormack et al., 2009). */
const RRF_K = 60;
/** Each list a hybrid search fuses is this many times deeper than the results wanted (at least MIN_FUSION_DEPTH). */
const FUSION_DEPTH_FACTOR = 4;
const MIN_FUSION_DEPTH = 20;

interface ChunkRow {
  id: string;
  chunk_index: number;
  text: string;
  heading_path: string[];
  start_offset: number;
  end_offset: number;
  document_id: string;
  title: string;
  source_key: string;
  project_id: string;
  /** Keyword search's rank; absent from rows loaded by id. */
  rank?: number;
}

const resultOf = (row: ChunkRow, score: number): SearchResult => ({
  score,
  document: { id: row.document_id, title: row.title, sourceKey: row.source_key, projectId: row.project_id },
  chunk: { id: row.id, index: row.chunk_index, text: row.text, headingPath: row.heading_path, start: row.start_offset, end: row.end_offset },
});

/**
 * The conditions selecting the tenant's live chunks that match the request's filters: a chunk of
 * its document's stored version (`content_sha256` equal), in a project not being deleted. Used
 * after `FROM document_chunks c` and the joins of `liveChunkJoins`.
 */
function liveChunkConditions(request: SearchRequest): { where: string; replacements: Record<string, unknown> } {
  const conditions = ['c.tenant_id = :tenantId'];
  const replacements: Record<string, unknown> = { tenantId: request.tenantId };
  if (request.projectId !== undefined) {
    conditions.push('c.project_id = :projectId');
    replacements.projectId = request.projectId;
  }
  if (request.documentIds !== undefined) {
    // `IN ()` is not SQL: an empty list matches no document.
    conditions.push(request.documentIds.length === 0 ? 'false' : 'c.document_id IN (:documentIds)');
    replacements.documentIds = request.documentIds;
  }
  return { where: conditions.join(' AND '), replacements };
}

const liveChunkJoins = `
  JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id AND d.content_sha256 = c.content_sha256
  JOIN projects p ON p.id = d.project_id AND p.deletion_job_id IS NULL`;

const chunkColumns = 'c.id, c.chunk_index, c.text, c.heading_path, c.start_offset, c.end_offset, d.id AS document_id, d.title, d.source_key, d.project_id';

/** Nearest chunks to the query's embedding, by the tenant's current embedding model; nearest first. */
async function vectorSearch(deps: SearchDeps, request: SearchRequest, depth: number): Promise<SearchResult[]> {
  const call: LlmCall = { tenantId: request.tenantId, projectId: request.projectId ?? null, mode: 'interactive', actor: request.actor, activity: 'search', signal: request.signal };
  const embedding = await embedTexts(deps, call, [request.query]);
  const vector = embedding.vectors[0];
  if (!vector) return [];
  const matches = await deps.vectors.search(
    { model: embedding.model, dimensions: embedding.dimensions },
    vector,
    { tenantId: request.tenantId, projectId: request.projectId, documentIds: request.documentIds },
    Math.min(depth, MAX_TOP_K),
  );
  if (matches.length === 0) return [];
  // The store may still hold vectors of a replaced version or a deleted document for a moment: only live chunks count.
  const { where, replacements } = liveChunkConditions(request);
  const rows = await deps.sequelize.query<ChunkRow>(`SELECT ${chunkColumns} FROM document_chunks c ${liveChunkJoins} WHERE ${where} AND c.id IN (:ids)`, {
    replacements: { ...replacements, ids: matches.map((m) => m.id) },
    type: QueryTypes.SELECT,
  });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return matches.flatMap((m) => {
    const row = byId.get(m.id);
    return row ? [resultOf(row, m.score)] : [];
  });
}

/**
 * Chunks matching any of the query's words (English stemming, stop words dropped, headings weighted
 * above text), best first: the more of them a chunk holds, and the closer together, the better.
 * Any, not all: a question in plain words rarely has every one of its words in the passage that
 * answers it. Ties go to the earlier chunk of a document (ids are random per document, and equal
 * ranks are common).
 */
async function keywordSearch(sequelize: Sequelize, request: SearchRequest, depth: number): Promise<SearchResult[]> {
  const { where, replacements } = liveChunkConditions(request);
  const rows = await sequelize.query<ChunkRow>(
    // The query's lexemes (its tsvector: stemmed, stop words dropped), quoted and OR-ed into a tsquery;
    // backslashes (chr(92)) go first, so quote_literal never writes the E'' form a tsquery does not read.
    `WITH q AS (
       SELECT array_to_string(ARRAY(SELECT quote_literal(replace(l, chr(92), '')) FROM unnest(tsvector_to_array(to_tsvector('english', :query))) l), ' | ')::tsquery AS query
     )
     SELECT ${chunkColumns}, ts_rank_cd(c.search_vector, q.query) AS rank
     FROM q, document_chunks c ${liveChunkJoins}
     WHERE ${where} AND c.search_vector @@ q.query
     ORDER BY rank DESC, c.chunk_index, d.source_key, c.id
     LIMIT :depth`,
    { replacements: { ...replacements, query: request.query, depth }, type: QueryTypes.SELECT },
  );
  return rows.map((row) => resultOf(row, Number(row.rank)));
}

/** Reciprocal rank fusion: each chunk scores Σ 1/(k + rank) over the lists it appears in. */
function fuse(lists: SearchResult[][], topK: number): SearchResult[] {
  const fused = new Map<string, SearchResult>();
  for (const list of lists) {
    list.forEach((result, i) => {
      const contribution = 1 / (RRF_K + i + 1);
      const seen = fused.get(result.chunk.id);
      if (seen) seen.score += contribution;
      else fused.set(result.chunk.id, { ...result, score: contribution });
    });
  }
  // Ties go by document and position, not by id: ids are random per document, and results should not be.
  const byPlace = (a: SearchResult, b: SearchResult) => a.document.sourceKey.localeCompare(b.document.sourceKey) || a.chunk.index - b.chunk.index || a.chunk.id.localeCompare(b.chunk.id);
  return [...fused.values()].sort((a, b) => b.score - a.score || byPlace(a, b)).slice(0, topK);
}

/** The `topK` chunks of the tenant best matching `query`, best first. */
export async function searchDocuments(deps: SearchDeps, request: SearchRequest): Promise<SearchResult[]> {
  // A project of another tenant, or being deleted, is not found rather than silently empty.
  if (request.projectId !== undefined) await getProject(request.tenantId, request.projectId);
  if (request.documentIds?.length === 0) return [];
  switch (request.mode) {
    case 'vector':
      return vectorSearch(deps, request, request.topK);
    case 'keyword':
      return keywordSearch(deps.sequelize, request, request.topK);
    case 'hybrid': {
      const depth = Math.max(request.topK * FUSION_DEPTH_FACTOR, MIN_FUSION_DEPTH);
      const [byMeaning, byWords] = await Promise.all([vectorSearch(deps, request, depth), keywordSearch(deps.sequelize, request, depth)]);
      return fuse([byMeaning, byWords], request.topK);
    }
  }
}
