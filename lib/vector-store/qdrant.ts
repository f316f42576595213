import { QdrantClient, type Schemas } from '@qdrant/js-client-rest';
import { batches, checkFilter, checkIds, checkPoints, checkSearch, collectionName, parseCollectionName, uuid, type CheckedFilter } from './contract';
import type { VectorCollection, VectorFilter, VectorMatch, VectorPayload, VectorPoint, VectorStore } from './types';

/**
 * Qdrant over REST: one collection per embedding model and dimension (cosine), laid out for
 * multitenancy as Qdrant's guide advises: `tenantId` is a keyword index with `is_tenant` (points
 * stored grouped by tenant) and the HNSW graph is built per tenant (`payload_m`) rather than
 * across tenants (`m: 0`), which is sound because every query here carries the tenant filter.
 * `projectId` and `documentId` are keyword indexes for the other filters and deletes.
 */

const UPSERT_POINTS_PER_REQUEST = 256;
const DELETE_IDS_PER_REQUEST = 1000;
const HNSW_PER_TENANT = { m: 0, payload_m: 16 };

type Filter = Schemas['Filter'];
type FieldCondition = Schemas['FieldCondition'];

const matchValue = (key: string, value: string): FieldCondition => ({ key, match: { value } });

function toFilter(filter: CheckedFilter): Filter {
  const must: FieldCondition[] = [matchValue('tenantId', filter.tenantId)];
  if (filter.projectId !== undefined) must.push(matchValue('projectId', filter.projectId));
  if (filter.documentIds !== undefined) must.push({ key: 'documentId', match: { any: filter.documentIds } });
  return { must };
}

function toPayload(payload: Record<string, unknown> | null | undefined): VectorPayload {
  const { tenantId, projectId, documentId, chunkIndex } = payload ?? {};
  if (typeof tenantId !== 'string' || (projectId !== null && typeof projectId !== 'string') || typeof documentId !== 'string' || typeof chunkIndex !== 'number') {
    throw new Error(`Unexpected Qdrant payload with keys ${JSON.stringify(Object.keys(payload ?? {}))}.`);
  }
  return { tenantId, projectId, documentId, chunkIndex };
}

/** The HTTP status of a failed request, from the client's ApiError (not exported by the client itself). */
function httpStatus(error: unknown): number | undefined {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' ? status : undefined;
}

/**
 * The client's errors carry only the HTTP status text ("Bad Request"); Qdrant's own explanation
 * is in the body, so it is lifted into the message.
 */
function describeFailure(operation: string, collection: string, error: unknown): Error {
  const status = httpStatus(error);
  const detail = (error as { data?: { status?: { error?: unknown } } } | null)?.data?.status?.error;
  const reason = typeof detail === 'string' ? detail : error instanceof Error ? error.message : String(error);
  return new Error(`Qdrant ${operation} on collection "${collection}" failed${status === undefined ? '' : ` (HTTP ${status})`}: ${reason}`, { cause: error });
}

export class QdrantVectorStore implements VectorStore {
  readonly kind = 'qdrant' as const;
  private readonly client: QdrantClient;
  /** Collections this process has created or checked (with their payload indexes). */
  private readonly ensured = new Map<string, Promise<void>>();
  private closed = false;

  constructor(url: string, apiKey?: string) {
    const parsed = new URL(url);
    this.client = new QdrantClient({
      // The client would add :6333 to a URL without a port and drop a path; pass both explicitly
      // so that QDRANT_URL means what it says (e.g. https://qdrant.example.com/prefix on port 443).
      url: parsed.origin,
      port: null,
      prefix: parsed.pathname.replace(/\/+$/, '') || undefined,
      apiKey,
      // The check is a fire-and-forget request that can only print a warning.
      checkCompatibility: false,
    });
  }

  async ensureCollection(c: VectorCollection): Promise<void> {
    await this.ensure(collectionName(c), c);
  }

  async upsert(c: VectorCollection, points: VectorPoint[]): Promise<void> {
    const name = collectionName(c);
    const checked = checkPoints(c, name, points);
    await this.ensure(name, c);
    for (const slice of batches(checked, UPSERT_POINTS_PER_REQUEST)) {
      await this.call('upsert', name, () =>
        this.client.upsert(name, { wait: true, points: slice.map((p) => ({ id: p.id, vector: p.vector, payload: { ...p.payload } })) }),
      );
    }
  }

  async search(c: VectorCollection, vector: number[], filter: VectorFilter, topK: number): Promise<VectorMatch[]> {
    const search = checkSearch(c, vector, filter, topK);
    if (search === null) return [];
    const { name, filter: checkedFilter } = search;
    const response = await this.read('query', name, { points: [] }, () =>
      this.client.query(name, { query: vector, filter: toFilter(checkedFilter), limit: topK, with_payload: true, with_vector: false }),
    );
    return response.points.map((p) => ({ id: String(p.id), score: p.score, payload: toPayload(p.payload) }));
  }

  async deleteByDocument(c: VectorCollection, filter: { tenantId: string; documentId: string }): Promise<void> {
    const tenantId = uuid(filter.tenantId, 'The filter tenantId');
    const documentId = uuid(filter.documentId, 'The filter documentId');
    await this.deleteMatching(c, { must: [matchValue('tenantId', tenantId), matchValue('documentId', documentId)] });
  }

  async deleteByProject(c: VectorCollection, filter: { tenantId: string; projectId: string }): Promise<void> {
    const tenantId = uuid(filter.tenantId, 'The filter tenantId');
    const projectId = uuid(filter.projectId, 'The filter projectId');
    await this.deleteMatching(c, { must: [matchValue('tenantId', tenantId), matchValue('projectId', projectId)] });
  }

  async deleteByIds(c: VectorCollection, filter: { tenantId: string }, ids: string[]): Promise<void> {
    const tenantId = uuid(filter.tenantId, 'The filter tenantId');
    const checked = checkIds(ids);
    for (const slice of batches(checked, DELETE_IDS_PER_REQUEST)) {
      await this.deleteMatching(c, { must: [matchValue('tenantId', tenantId), { has_id: slice }] });
    }
  }

  async count(c: VectorCollection, filter: VectorFilter): Promise<number> {
    const name = collectionName(c);
    const checkedFilter = checkFilter(filter);
    if (checkedFilter === null) return 0;
    const result = await this.read('count', name, { count: 0 }, () => this.client.count(name, { filter: toFilter(checkedFilter), exact: true }));
    return result.count;
  }

  async listCollections(): Promise<VectorCollection[]> {
    this.assertOpen();
    const { collections } = await this.call('list collections', '*', () => this.client.getCollections());
    return collections
      .map((c) => parseCollectionName(c.name))
      .filter((c): c is VectorCollection => c !== null)
      .sort((a, b) => collectionName(a).localeCompare(collectionName(b)));
  }

  /** The REST client holds no resources beyond keep-alive sockets, which close when idle. */
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------------------------

  private ensure(name: string, c: VectorCollection): Promise<void> {
    let ensured = this.ensured.get(name);
    if (ensured === undefined) {
      ensured = this.createIfMissing(name, c).catch((error: unknown) => {
        this.ensured.delete(name); // let a later call try again
        throw error;
      });
      this.ensured.set(name, ensured);
    }
    return ensured;
  }

  private async createIfMissing(name: string, c: VectorCollection): Promise<void> {
    const { exists } = await this.call('exists', name, () => this.client.collectionExists(name));
    if (!exists) {
      try {
        await this.client.createCollection(name, { vectors: { size: c.dimensions, distance: 'Cosine' }, hnsw_config: HNSW_PER_TENANT });
      } catch (error) {
        // Another process may have created it between our check and our request.
        const { exists: nowExists } = await this.call('exists', name, () => this.client.collectionExists(name));
        if (!nowExists) throw describeFailure('create collection', name, error);
      }
    } else {
      await this.checkVectorParams(name, c);
    }
    // Creating an index that exists is accepted, so a collection someone else created gets them too.
    const indexes: Array<[string, Schemas['PayloadFieldSchema']]> = [
      ['tenantId', { type: 'keyword', is_tenant: true }],
      ['projectId', 'keyword'],
      ['documentId', 'keyword'],
    ];
    for (const [field_name, field_schema] of indexes) {
      await this.call('create payload index', name, () => this.client.createPayloadIndex(name, { field_name, field_schema, wait: true }));
    }
  }

  /** A collection of ours made by hand with other vector parameters would fail every upsert obscurely. */
  private async checkVectorParams(name: string, c: VectorCollection): Promise<void> {
    const info = await this.call('get collection', name, () => this.client.getCollection(name));
    const vectors = info.config.params.vectors;
    const params = vectors !== undefined && vectors !== null && 'size' in vectors ? (vectors as Schemas['VectorParams']) : undefined;
    if (params?.size !== c.dimensions || params.distance !== 'Cosine') {
      throw new Error(`Qdrant collection "${name}" exists with vector parameters ${JSON.stringify(vectors)}; expected one unnamed ${c.dimensions}-dimensional Cosine vector.`);
    }
  }

  private async deleteMatching(c: VectorCollection, filter: Filter): Promise<void> {
    const name = collectionName(c);
    await this.read('delete', name, undefined, () => this.client.delete(name, { wait: true, filter }));
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('The Qdrant vector store is closed.');
  }

  private async call<T>(operation: string, collection: string, request: () => Promise<T>): Promise<T> {
    this.assertOpen();
    try {
      return await request();
    } catch (error) {
      throw describeFailure(operation, collection, error);
    }
  }

  /** Like `call`, but a collection that does not exist yet answers `whenMissing` (nothing to read or delete). */
  private async read<T, F>(operation: string, collection: string, whenMissing: F, request: () => Promise<T>): Promise<T | F> {
    this.assertOpen();
    try {
      return await request();
    } catch (error) {
      if (httpStatus(error) === 404) return whenMissing;
      throw describeFailure(operation, collection, error);
    }
  }
}
