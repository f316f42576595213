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

/** The columns a scope's conditions name: a chunk's, or a document's. */
const chunkScope = { tenant: 'c.tenant_id', project: 'c.project_id', document: 'c.document_id' };
const documentScope = { tenant: 'd.tenant_id', project: 'd.project_id', document: 'd.id' };

/** The conditions selecting the tenant's rows that match the request's filters (project, documents), on `columns`. */
function scopeConditions(request: SearchRequest, columns: typeof chunkScope): { where: string; replacements: Record<string, unknown> } {
  const conditions = [`${columns.tenant} = :tenantId`];
  const replacements: Record<string, unknown> = { tenantId: request.tenantId };
  if (request.projectId !== undefined) {
    conditions.push(`${columns.project} = :projectId`);
    replacements.projectId = request.projectId;
  }
  if (request.documentIds !== undefined) {
    // `IN ()` is not SQL: an empty list matches no document.
    conditions.push(request.documentIds.length === 0 ? 'false' : `${columns.document} IN (:documentIds)`);
    replacements.documentIds = request.documentIds;
  }
  return { where: conditions.join(' AND '), replacements };
}

/**
 * The chunks matching the request's filters are the live ones among `FROM document_chunks c` and
 * the joins of `liveChunkJoins`: a chunk of its document's stored version (`content_sha256`
 * equal), in a project not being deleted.
 */
const liveChunkJoins = `
  JOIN documents d ON d.id = c.document_id AND d.tenant_id = c.tenant_id AND d.content_sha256 = c.content_sha256
  JOIN projects p ON p.id = d.project_id AND p.deletion_job_id IS NULL`;

const chunkColumns = 'c.id, c.chunk_index, c.text, c.heading_path, c.start_offset, c.end_offset, d.id AS document_id, d.title, d.source_key, d.project_id';

/**
 * When points that are not live took places among the nearest, the store is asked again for this
 * many times as many (up to MAX_TOP_K): a batch being stored, or a document being removed, must
 * not leave a search with fewer results than it asked for.
 */
const REFILL_FACTOR = 4;

/** Nearest chunks to the query's embedding, by the tenant's current embedding model; nearest first. */
async function vectorSearch(deps: SearchDeps, request: SearchRequest, depth: number): Promise<SearchResult[]> {
  const call: LlmCall = { tenantId: request.tenantId, projectId: request.projectId ?? null, mode: 'interactive', actor: request.actor, activity: 'search', signal: request.signal };
  const embedding = await embedTexts(deps, call, [request.query]);
  const vector = embedding.vectors[0];
  if (!vector) return [];
  const collection = { model: embedding.model, dimensions: embedding.dimensions };
  const filter = { tenantId: request.tenantId, projectId: request.projectId, documentIds: request.documentIds };
  const { where, replacements } = scopeConditions(request, chunkScope);
  for (let asked = Math.min(depth, MAX_TOP_K); ; asked = Math.min(asked * REFILL_FACTOR, MAX_TOP_K)) {
    const matches = await deps.vectors.search(collection, vector, filter, asked);
    if (matches.length === 0) return [];
    // The store may hold vectors of a version not yet published, a replaced one or a deleted document for a moment: only live chunks count.
    const rows = await deps.sequelize.query<ChunkRow>(`SELECT ${chunkColumns} FROM document_chunks c ${liveChunkJoins} WHERE ${where} AND c.id IN (:ids)`, {
      replacements: { ...replacements, ids: matches.map((m) => m.id) },
      type: QueryTypes.SELECT,
    });
    const byId = new Map(rows.map((r) => [r.id, r]));
    const live = matches.flatMap((m) => {
      const row = byId.get(m.id);
      return row ? [resultOf(row, m.score)] : [];
    });
    if (live.length >= depth || matches.length < asked || asked === MAX_TOP_K) return live.slice(0, depth);
  }
}

/** A word of the query as Postgres indexes it (English stemming), and how common it is among the chunks. */
export interface QueryTerm {
  lexeme: string;
  /** The share of chunks holding it, from the planner's statistics; 0 when they do not track it (rarer than every word they do). */
  frequency: number;
}

/**
 * Keyword search ranks about this many chunks at most, when the words allow: ranking reads each
 * candidate's whole tsvector, so ranking every chunk holding a common word is what made it slow.
 */
export const KEYWORD_CANDIDATE_BUDGET = 1000;

const lexemeQuery = (lexeme: string) => `'${lexeme.replace(/[\\']/g, '\\$&')}'`;
const anyOf = (lexemes: string[]) => lexemes.map(lexemeQuery).join(' | ');

/** Each wider set of keyword candidates is estimated to hold up to this many times as many chunks as the one before. */
const CANDIDATE_WIDENING = 2;

/**
 * The tsqueries choosing the chunks to rank, in turn, each excluding those before it, until enough
 * are found. In a scope of at most `budget` chunks, or when nothing is known of the words'
 * frequencies, every chunk holding any word is ranked at once. Otherwise the rarest words come
 * first (as many as the statistics estimate `budget` chunks to hold), and each next set adds the
 * next words by rarity, up to CANDIDATE_WIDENING times as many chunks: a chunk holding a
 * distinctive word is ranked before one holding only words found everywhere, and those are
 * ranked only when too few chunks hold a rarer word.
 */
export function keywordCandidates(terms: QueryTerm[], scopeChunks: number, budget = KEYWORD_CANDIDATE_BUDGET): string[] {
  const byRarity = [...terms].sort((a, b) => a.frequency - b.frequency || a.lexeme.localeCompare(b.lexeme));
  if (scopeChunks <= budget) return [anyOf(byRarity.map((t) => t.lexeme))];
  const widths: string[][] = [];
  let estimate = 0;
  let limit = budget;
  for (const term of byRarity) {
    estimate += term.frequency * scopeChunks;
    if (widths.length === 0 || estimate > limit) {
      widths.push([]);
      while (estimate > limit) limit *= CANDIDATE_WIDENING;
    }
    widths.at(-1)?.push(term.lexeme);
  }
  const queries: string[] = [];
  let before: string[] = [];
  for (const words of widths) {
    const current = [...before, ...words];
    queries.push(before.length === 0 ? anyOf(current) : `(${anyOf(current)}) & !(${anyOf(before)})`);
    before = current;
  }
  return queries;
}

/** The query's lexemes (stemmed, stop words dropped), each with its frequency, and how many chunks the request's scope holds. */
async function queryTerms(sequelize: Sequelize, request: SearchRequest): Promise<{ terms: QueryTerm[]; scopeChunks: number }> {
  const { where, replacements } = scopeConditions(request, documentScope);
  const rows = await sequelize.query<{ lexeme: string; frequency: number | null; scope_chunks: string }>(
    // pg_stats' element frequencies of search_vector are kept by ANALYZE (autovacuum): free to read, and close enough to choose by.
    `SELECT l.lexeme, s.frequency, scope.chunks AS scope_chunks
     FROM unnest(tsvector_to_array(to_tsvector('english', :query))) AS l(lexeme)
     CROSS JOIN (SELECT coalesce(sum(d.chunk_count), 0) AS chunks FROM documents d WHERE ${where} AND d.status = 'stored') scope
     LEFT JOIN (
       SELECT e.lexeme, e.frequency
       FROM pg_stats st, unnest(st.most_common_elems::text::text[], st.most_common_elem_freqs) AS e(lexeme, frequency)
       WHERE st.schemaname = current_schema() AND st.tablename = 'document_chunks' AND st.attname = 'search_vector'
     ) s ON s.lexeme = l.lexeme`,
    { replacements: { ...replacements, query: request.query }, type: QueryTypes.SELECT },
  );
  return { terms: rows.map((r) => ({ lexeme: r.lexeme, frequency: r.frequency ?? 0 })), scopeChunks: Number(rows[0]?.scope_chunks ?? 0) };
}

/**
 * The `depth` best chunks among those matching `candidates`, ranked by `ranking`. The candidates
 * are found through the GIN index and ranked first, materialized, so that the planner, which
 * misjudges the joins of small tables, never ranks chunk by chunk document after document; only
 * the chunks returned are read whole.
 */
async function rankedChunks(sequelize: Sequelize, request: SearchRequest, query: { candidates: string; ranking: string }, depth: number): Promise<ChunkRow[]> {
  const { where, replacements } = scopeConditions(request, chunkScope);
  return sequelize.query<ChunkRow>(
    `WITH matches AS MATERIALIZED (
       SELECT c.id, c.tenant_id, c.document_id, c.content_sha256, c.chunk_index, ts_rank_cd(c.search_vector, CAST(:ranking AS tsquery)) AS rank
       FROM document_chunks c
       WHERE ${where} AND c.search_vector @@ CAST(:candidates AS tsquery)
     ), best AS (
       SELECT c.id, c.rank FROM matches c ${liveChunkJoins}
       ORDER BY c.rank DESC, c.chunk_index, d.source_key, c.id
       LIMIT :depth
     )
     SELECT ${chunkColumns}, best.rank
     FROM best JOIN document_chunks c ON c.id = best.id JOIN documents d ON d.id = c.document_id
     ORDER BY best.rank DESC, c.chunk_index, d.source_key, c.id`,
    { replacements: { ...replacements, ...query, depth }, type: QueryTypes.SELECT },
  );
}

/**
 * Chunks matching the query's words (English stemming, stop words dropped, headings weighted above
 * text), best first: the more of them a chunk holds, and the closer together, the better. Any
 * word, not all: a question in plain words rarely has every one of its words in the passage that
 * answers it; but at scale, chunks holding a distinctive word come first (`keywordCandidates`).
 * Ties go to the earlier chunk of a document (ids are random per document, and equal ranks are common).
 */
async function keywordSearch(sequelize: Sequelize, request: SearchRequest, depth: number): Promise<SearchResult[]> {
  const { terms, scopeChunks } = await queryTerms(sequelize, request);
  if (terms.length === 0) return [];
  const ranking = anyOf(terms.map((t) => t.lexeme));
  const rows: ChunkRow[] = [];
  for (const candidates of keywordCandidates(terms, scopeChunks)) {
    rows.push(...(await rankedChunks(sequelize, request, { candidates, ranking }, depth - rows.length)));
    if (rows.length >= depth) break;
  }
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
