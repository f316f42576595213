import type { VectorCollection, VectorFilter, VectorPoint } from './types';

/**
 * Validation and naming shared by both adapters, so they accept and reject exactly the same
 * input (the behavioural suite runs against both).
 */

/** Bad input to a vector store: a malformed id, payload, vector, filter or collection. */
export class VectorStoreInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A vector whose length is not the collection's dimension (e.g. an embedding model changed size). */
export class VectorDimensionError extends VectorStoreInputError {
  constructor(
    readonly collection: string,
    readonly expected: number,
    readonly actual: number,
    what: string,
  ) {
    super(`${what} has ${actual} dimensions, but collection "${collection}" holds ${expected}-dimensional vectors.`);
  }
}

// ---------------------------------------------------------------------------------------------
// Collection names

/** Qdrant allows 255 characters and LanceDB stores a table as the directory `<name>.lance`. */
const MAX_COLLECTION_NAME_LENGTH = 200;
export const MAX_DIMENSIONS = 65_536;
const COLLECTION_PREFIX = 'chunks_';
/** Characters kept as they are; every other UTF-8 byte is written `_xx` (hex). */
const LITERAL = /^[a-z0-9.-]$/;
const NAME_PATTERN = /^chunks_(.+)_([1-9][0-9]*)$/;

/**
 * `chunks_<model>_<dimensions>`, with the model escaped reversibly into the characters both
 * stores accept ([a-z0-9.-], other bytes as `_xx`): e.g. `chunks_text-embedding-3-small_1536`,
 * `chunks_nomic-embed-text_3alatest_768`. Reversible so that `listCollections` can recover the
 * exact model from the name alone (no metadata that only some Qdrant versions keep), and
 * injective so that two models can never share a collection.
 */
export function collectionName(c: VectorCollection): string {
  checkCollection(c);
  let encoded = '';
  for (const byte of Buffer.from(c.model, 'utf8')) {
    const char = String.fromCharCode(byte);
    encoded += LITERAL.test(char) ? char : `_${byte.toString(16).padStart(2, '0')}`;
  }
  const name = `${COLLECTION_PREFIX}${encoded}_${c.dimensions}`;
  if (name.length > MAX_COLLECTION_NAME_LENGTH) {
    throw new VectorStoreInputError(`Embedding model name "${c.model.slice(0, 60)}…" is too long to name a collection.`);
  }
  return name;
}

/** The collection a name stands for, or null for a name that `collectionName` would not produce (not ours). */
export function parseCollectionName(name: string): VectorCollection | null {
  const match = NAME_PATTERN.exec(name);
  if (!match) return null;
  const [, encoded = '', dims = ''] = match;
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    if (encoded[i] === '_') {
      const hex = encoded.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(encoded.charCodeAt(i));
    }
  }
  const collection = { model: Buffer.from(bytes).toString('utf8'), dimensions: Number(dims) };
  // Round trip: rejects escapes of literal characters, invalid UTF-8 and out-of-range dimensions.
  try {
    return collectionName(collection) === name ? collection : null;
  } catch {
    return null;
  }
}

function checkCollection(c: VectorCollection): void {
  if (typeof c.model !== 'string' || c.model.trim() === '') throw new VectorStoreInputError('A collection needs a non-empty embedding model name.');
  if (!Number.isInteger(c.dimensions) || c.dimensions < 1 || c.dimensions > MAX_DIMENSIONS) {
    throw new VectorStoreInputError(`A collection's dimensions must be an integer from 1 to ${MAX_DIMENSIONS} (got ${String(c.dimensions)}).`);
  }
}

// ---------------------------------------------------------------------------------------------
// Ids, vectors, payloads, filters

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_CHUNK_INDEX = 2 ** 31 - 1;
export const MAX_TOP_K = 1000;

/**
 * The UUID in lower case (as Postgres and Qdrant print it), so the same id always compares equal.
 * Validating every id as a UUID is also what keeps LanceDB's SQL filters free of injection.
 */
export function uuid(value: unknown, what: string): string {
  if (typeof value !== 'string' || !UUID.test(value)) throw new VectorStoreInputError(`${what} must be a UUID (got ${JSON.stringify(value)}).`);
  return value.toLowerCase();
}

/** Checks a vector's length and values; false for a zero vector (which has no direction). */
export function checkVector(vector: unknown, c: VectorCollection, name: string, what: string): { nonZero: boolean } {
  if (!Array.isArray(vector)) throw new VectorStoreInputError(`${what} must be an array of numbers.`);
  if (vector.length !== c.dimensions) throw new VectorDimensionError(name, c.dimensions, vector.length, what);
  let nonZero = false;
  for (const value of vector as unknown[]) {
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new VectorStoreInputError(`${what} must contain only finite numbers.`);
    if (value !== 0) nonZero = true;
  }
  return { nonZero };
}

/**
 * Validated copies of `points` with ids in lower case and only the last occurrence of each id
 * (what Qdrant does natively; LanceDB's merge rejects a batch with a repeated key).
 */
export function checkPoints(c: VectorCollection, name: string, points: VectorPoint[]): VectorPoint[] {
  if (!Array.isArray(points)) throw new VectorStoreInputError('upsert expects an array of points.');
  const byId = new Map<string, VectorPoint>();
  for (const point of points) {
    const id = uuid(point.id, 'A point id');
    const what = `The vector of point ${id}`;
    if (!checkVector(point.vector, c, name, what).nonZero) {
      throw new VectorStoreInputError(`${what} is all zeros: cosine similarity is undefined for it.`);
    }
    const p = point.payload as Partial<VectorPoint['payload']> | undefined;
    if (typeof p !== 'object' || p === null) throw new VectorStoreInputError(`Point ${id} has no payload.`);
    if (!Number.isInteger(p.chunkIndex) || (p.chunkIndex as number) < 0 || (p.chunkIndex as number) > MAX_CHUNK_INDEX) {
      throw new VectorStoreInputError(`Point ${id}: chunkIndex must be an integer from 0 to ${MAX_CHUNK_INDEX}.`);
    }
    byId.delete(id); // so the surviving occurrence also takes the last position
    byId.set(id, {
      id,
      vector: point.vector,
      payload: {
        tenantId: uuid(p.tenantId, `Point ${id}: tenantId`),
        projectId: p.projectId === null ? null : uuid(p.projectId, `Point ${id}: projectId`),
        documentId: uuid(p.documentId, `Point ${id}: documentId`),
        chunkIndex: p.chunkIndex as number,
      },
    });
  }
  return [...byId.values()];
}

export interface CheckedFilter {
  tenantId: string;
  projectId?: string;
  /** Present and non-empty, or absent (an empty list is answered without asking the store). */
  documentIds?: string[];
}

/** The filter with validated ids, or null when it can match nothing (`documentIds: []`). */
export function checkFilter(filter: VectorFilter): CheckedFilter | null {
  if (typeof filter !== 'object' || filter === null) throw new VectorStoreInputError('A filter with a tenantId is required.');
  const checked: CheckedFilter = { tenantId: uuid(filter.tenantId, 'The filter tenantId') };
  if (filter.projectId !== undefined) checked.projectId = uuid(filter.projectId, 'The filter projectId');
  if (filter.documentIds !== undefined) {
    if (!Array.isArray(filter.documentIds)) throw new VectorStoreInputError('The filter documentIds must be an array of UUIDs.');
    if (filter.documentIds.length === 0) return null;
    checked.documentIds = [...new Set(filter.documentIds.map((id) => uuid(id, 'A filter documentId')))];
  }
  return checked;
}

export function checkTopK(topK: number): void {
  if (!Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) {
    throw new VectorStoreInputError(`topK must be an integer from 1 to ${MAX_TOP_K} (got ${String(topK)}).`);
  }
}

/** Validated ids in lower case, without repeats. */
export function checkIds(ids: string[]): string[] {
  if (!Array.isArray(ids)) throw new VectorStoreInputError('deleteByIds expects an array of UUIDs.');
  return [...new Set(ids.map((id) => uuid(id, 'A point id')))];
}

/** `items` in consecutive slices of at most `size`. */
export function* batches<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/**
 * A search's inputs checked the same way by every store: the collection's name and the checked
 * filter, or null when nothing can match (a filter on no documents, or a zero query vector).
 */
export function checkSearch(c: VectorCollection, vector: number[], filter: VectorFilter, topK: number): { name: string; filter: CheckedFilter } | null {
  const name = collectionName(c);
  const checkedFilter = checkFilter(filter);
  checkTopK(topK);
  const { nonZero } = checkVector(vector, c, name, 'The query vector');
  return checkedFilter === null || !nonZero ? null : { name, filter: checkedFilter };
}
