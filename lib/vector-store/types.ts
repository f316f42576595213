/**
 * The vector-store contract shared by the LanceDB and Qdrant adapters. Every id in it (point,
 * tenant, project, document) is a UUID; the adapters validate them, so a filter can never be
 * turned into something other than an equality test.
 */

export type VectorStoreKind = 'lancedb' | 'qdrant';

export interface VectorPayload {
  tenantId: string;
  projectId: string | null;
  documentId: string;
  /** Position of the chunk within its document (a non-negative 32-bit integer). */
  chunkIndex: number;
}

export interface VectorPoint {
  /** A UUID, deterministic and chosen by the caller, so retries replace rather than duplicate. */
  id: string;
  vector: number[];
  payload: VectorPayload;
}

export interface VectorMatch {
  id: string;
  /** Cosine similarity: higher is closer (1 = same direction). */
  score: number;
  payload: VectorPayload;
}

export interface VectorFilter {
  /** Required on every query: one tenant never sees another's points. */
  tenantId: string;
  projectId?: string;
  /** Restricts to these documents; an empty list matches nothing. */
  documentIds?: string[];
}

/** One collection per embedding model and dimension: vectors of different models never mix. */
export interface VectorCollection {
  model: string;
  dimensions: number;
}

export interface VectorStore {
  readonly kind: VectorStoreKind;
  /**
   * Creates the collection for an embedding model and dimension if missing (safe to call
   * concurrently, from several processes too). Its name comes from `collectionName()`.
   */
  ensureCollection(c: VectorCollection): Promise<void>;
  /**
   * Inserts or replaces points by id (the same id twice leaves one point; within one call the
   * last occurrence wins). Creates the collection if missing.
   * @throws VectorDimensionError when a vector's length is not `c.dimensions`.
   * @throws VectorStoreInputError for a malformed id, payload, or a zero/non-finite vector.
   */
  upsert(c: VectorCollection, points: VectorPoint[]): Promise<void>;
  /**
   * The `topK` points nearest to `vector` by cosine similarity among those matching `filter`,
   * nearest first. A collection that does not exist yet, or a zero query vector, yields [].
   */
  search(c: VectorCollection, vector: number[], filter: VectorFilter, topK: number): Promise<VectorMatch[]>;
  deleteByDocument(c: VectorCollection, filter: { tenantId: string; documentId: string }): Promise<void>;
  /** Deletes points by id (ids are deterministic per document and chunk, so globally unique). */
  /** Deletes the tenant's points with these ids (another tenant's points are never touched, whatever the ids). */
  deleteByIds(c: VectorCollection, filter: { tenantId: string }, ids: string[]): Promise<void>;
  deleteByProject(c: VectorCollection, filter: { tenantId: string; projectId: string }): Promise<void>;
  count(c: VectorCollection, filter: VectorFilter): Promise<number>;
  /** Every collection this store holds (of ours), so project deletion can clean each model's. */
  listCollections(): Promise<VectorCollection[]>;
  close(): Promise<void>;
}
