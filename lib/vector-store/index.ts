import path from 'node:path';
import type { Config } from '../config';
import { LanceDbVectorStore } from './lancedb';
import { QdrantVectorStore } from './qdrant';
import type { VectorStore } from './types';

/**
 * Chunk vectors behind one interface: LanceDB embedded under the data directory by default,
 * Qdrant when QDRANT_URL is set (or VECTOR_STORE says so). Callers hold one store per process:
 * it caches its connection and open collections.
 */

export type { VectorCollection, VectorFilter, VectorMatch, VectorPayload, VectorPoint, VectorStore, VectorStoreKind } from './types';
export { collectionName, parseCollectionName, MAX_DIMENSIONS, MAX_TOP_K, VectorDimensionError, VectorStoreInputError } from './contract';
export { LanceDbVectorStore, type LanceDbVectorStoreOptions } from './lancedb';
export { QdrantVectorStore } from './qdrant';

export type VectorStoreConfig = Pick<Config, 'VECTOR_STORE' | 'QDRANT_URL' | 'QDRANT_API_KEY' | 'AUDITFLOW_DATA_DIR'>;

export function createVectorStore(config: VectorStoreConfig): VectorStore {
  const kind = config.VECTOR_STORE ?? (config.QDRANT_URL === undefined ? 'lancedb' : 'qdrant');
  if (kind === 'lancedb') return new LanceDbVectorStore(path.join(config.AUDITFLOW_DATA_DIR, 'lancedb'));
  // The config schema rejects VECTOR_STORE=qdrant without QDRANT_URL; this guards hand-built configs.
  if (config.QDRANT_URL === undefined) throw new Error('VECTOR_STORE=qdrant needs QDRANT_URL.');
  return new QdrantVectorStore(config.QDRANT_URL, config.QDRANT_API_KEY);
}
