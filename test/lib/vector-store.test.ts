import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from '@lancedb/lancedb';
import {
  collectionName,
  createVectorStore,
  LanceDbVectorStore,
  parseCollectionName,
  VectorDimensionError,
  VectorStoreInputError,
  type VectorCollection,
  type VectorFilter,
  type VectorPayload,
  type VectorPoint,
  type VectorStore,
  type VectorStoreConfig,
} from '../../lib/vector-store';

/**
 * One behavioural suite, run against LanceDB (embedded, in a temporary directory) and against
 * Qdrant when QDRANT_URL points at a server. No registry carries a Qdrant server, so without
 * QDRANT_URL the Qdrant run is reported as skipped, with that reason in its title.
 */

const repoRoot = path.resolve(__dirname, '../..');
/** Every collection of this run has it in its model name, so runs sharing a Qdrant server never meet. */
const runId = randomUUID().slice(0, 8);
const DIMS = 4;
const base: VectorCollection = { model: `vs-test-${runId}`, dimensions: DIMS };

interface Subject {
  kind: VectorStore['kind'];
  /** Why this store is not tested here, when it is not. */
  skipReason?: string;
  start(): Promise<StoreUnderTest>;
}

interface StoreUnderTest {
  /** A store over the same data each time: a second one stands for another process's view. */
  open(): VectorStore;
  close(): Promise<void>;
}

const config = (overrides: Partial<VectorStoreConfig>): VectorStoreConfig => ({
  VECTOR_STORE: undefined,
  QDRANT_URL: undefined,
  QDRANT_API_KEY: undefined,
  AUDITFLOW_DATA_DIR: '/nonexistent',
  ...overrides,
});

/** Opens stores through `createVectorStore` and closes them all at the end. */
function tracked(make: () => VectorStore, cleanUp: (store: VectorStore) => Promise<void>): StoreUnderTest {
  const opened: VectorStore[] = [];
  return {
    open() {
      const store = make();
      opened.push(store);
      return store;
    },
    async close() {
      const [first] = opened;
      if (first) await cleanUp(first);
      await Promise.all(opened.map((s) => s.close()));
    },
  };
}

const qdrantUrl = process.env.QDRANT_URL;

const subjects: Subject[] = [
  {
    kind: 'lancedb',
    async start() {
      const dataDir = await mkdtemp(path.join(tmpdir(), 'auditflow-vectors-'));
      return tracked(
        () => createVectorStore(config({ AUDITFLOW_DATA_DIR: dataDir })),
        () => rm(dataDir, { recursive: true, force: true }),
      );
    },
  },
  {
    kind: 'qdrant',
    skipReason: qdrantUrl === undefined ? 'QDRANT_URL is not set (no registry carries a Qdrant server)' : undefined,
    start() {
      const make = () => createVectorStore(config({ QDRANT_URL: qdrantUrl, QDRANT_API_KEY: process.env.QDRANT_API_KEY }));
      return Promise.resolve(
        tracked(make, async (store) => {
          // The server outlives the run: drop this run's collections.
          const { QdrantClient } = await import('@qdrant/js-client-rest');
          const url = new URL(qdrantUrl ?? '');
          const client = new QdrantClient({ url: url.origin, port: null, apiKey: process.env.QDRANT_API_KEY, checkCompatibility: false });
          for (const c of await store.listCollections()) if (c.model.includes(runId)) await client.deleteCollection(collectionName(c));
        }),
      );
    },
  },
];

// ---------------------------------------------------------------------------------------------
// Test data

const ids = () => ({ tenantId: randomUUID(), projectId: randomUUID(), documentId: randomUUID() });

function point(vector: number[], payload: Partial<VectorPayload> & Pick<VectorPayload, 'tenantId'>, id: string = randomUUID()): VectorPoint {
  return { id, vector, payload: { projectId: null, documentId: randomUUID(), chunkIndex: 0, ...payload } };
}

const cosine = (a: number[], b: number[]) => {
  const dot = a.reduce((s, x, i) => s + x * (b[i] ?? 0), 0);
  const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return dot / (norm(a) * norm(b));
};

/** A deterministic unit-ish vector for index `i`, distinct for distinct `i`. */
const vectorFor = (i: number) => [1, Math.sin(i + 1), Math.cos(i + 1), (i % 7) / 7];

const idsOf = (matches: Array<{ id: string }>) => matches.map((m) => m.id);

// ---------------------------------------------------------------------------------------------

function behaviours(subject: Subject): void {
  let under: StoreUnderTest;
  let store: VectorStore;
  beforeAll(async () => {
    under = await subject.start();
    store = under.open();
    await store.ensureCollection(base);
  });
  afterAll(() => under?.close());

  it(`is the ${subject.kind} store`, () => {
    expect(store.kind).toBe(subject.kind);
  });

  it('returns the nearest points first, with cosine similarity as the score, and their payloads', async () => {
    const { tenantId, projectId, documentId } = ids();
    const query = [1, 0, 0, 0];
    const same = point([2, 0, 0, 0], { tenantId, projectId, documentId, chunkIndex: 0 });
    const near = point([1, 1, 0, 0], { tenantId, projectId, documentId, chunkIndex: 1 });
    const orthogonal = point([0, 1, 0, 0], { tenantId, documentId, chunkIndex: 2 });
    const opposite = point([-1, 0.2, 0, 0], { tenantId, documentId, chunkIndex: 3 });
    await store.upsert(base, [orthogonal, opposite, near, same]);

    const matches = await store.search(base, query, { tenantId }, 3);
    expect(idsOf(matches)).toEqual([same.id, near.id, orthogonal.id]);
    matches.forEach((m, i) => expect(m.score).toBeCloseTo(cosine(query, [same, near, orthogonal][i]?.vector ?? []), 4));
    expect(matches[0]?.score).toBeCloseTo(1, 4);
    expect(matches[0]?.payload).toEqual(same.payload);
    expect(matches[2]?.payload).toEqual({ tenantId, projectId: null, documentId, chunkIndex: 2 });

    const all = await store.search(base, query, { tenantId }, 10);
    expect(idsOf(all)).toEqual([same.id, near.id, orthogonal.id, opposite.id]);
    const scores = all.map((m) => m.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
  });

  it('replaces a point upserted again under the same id, leaving exactly one', async () => {
    const { tenantId, documentId } = ids();
    const points = [0, 1, 2].map((i) => point(vectorFor(i), { tenantId, documentId, chunkIndex: i }));
    await store.upsert(base, points);
    await store.upsert(base, points);
    expect(await store.count(base, { tenantId })).toBe(3);

    // The same id with a new vector and payload: replaced, not added.
    const moved = { ...points[0], vector: [0, 0, 0, 1], payload: { ...points[0]!.payload, chunkIndex: 7 } } as VectorPoint;
    await store.upsert(base, [moved]);
    expect(await store.count(base, { tenantId })).toBe(3);
    const [top] = await store.search(base, [0, 0, 0, 1], { tenantId }, 1);
    expect(top).toMatchObject({ id: moved.id, payload: { chunkIndex: 7 } });
    expect(top?.score).toBeCloseTo(1, 4);
  });

  it('keeps the last occurrence of an id repeated within one upsert', async () => {
    const { tenantId } = ids();
    const id = randomUUID();
    await store.upsert(base, [point([1, 0, 0, 0], { tenantId, chunkIndex: 1 }, id), point([0, 1, 0, 0], { tenantId, chunkIndex: 2 }, id)]);
    expect(await store.count(base, { tenantId })).toBe(1);
    expect(await store.search(base, [0, 1, 0, 0], { tenantId }, 5)).toEqual([expect.objectContaining({ id, payload: expect.objectContaining({ chunkIndex: 2 }) })]);
  });

  it('treats ids case-insensitively (stored and returned in lower case)', async () => {
    const { tenantId } = ids();
    const id = randomUUID();
    await store.upsert(base, [point([1, 0, 0, 0], { tenantId: tenantId.toUpperCase() }, id.toUpperCase())]);
    await store.upsert(base, [point([1, 0, 0, 0], { tenantId }, id)]);
    expect(await store.count(base, { tenantId: tenantId.toUpperCase() })).toBe(1);
    expect(idsOf(await store.search(base, [1, 0, 0, 0], { tenantId }, 5))).toEqual([id]);
  });

  it("never returns another tenant's points, even when they are the nearest", async () => {
    const mine = ids();
    const theirs = ids();
    const query = [0, 0, 1, 0];
    const theirPoints = [0, 1, 2, 3, 4].map((i) => point([0, 0, 1, i / 100], { tenantId: theirs.tenantId, projectId: mine.projectId, documentId: mine.documentId, chunkIndex: i }));
    const myPoints = [0, 1].map((i) => point([1, i, 0.1, 0], { tenantId: mine.tenantId, projectId: mine.projectId, documentId: mine.documentId, chunkIndex: i }));
    await store.upsert(base, [...theirPoints, ...myPoints]);

    const matches = await store.search(base, query, { tenantId: mine.tenantId }, 5);
    expect(idsOf(matches).sort()).toEqual(idsOf(myPoints).sort());
    // The same project and document ids do not open a way in either.
    expect(idsOf(await store.search(base, query, { tenantId: mine.tenantId, projectId: mine.projectId, documentIds: [mine.documentId] }, 5)).sort()).toEqual(idsOf(myPoints).sort());
    expect(await store.count(base, { tenantId: mine.tenantId })).toBe(2);
    expect(await store.count(base, { tenantId: theirs.tenantId })).toBe(5);
    expect(await store.search(base, query, { tenantId: randomUUID() }, 5)).toEqual([]);
  });

  it('narrows to a project and to a set of documents', async () => {
    const { tenantId } = ids();
    const [projectA, projectB] = [randomUUID(), randomUUID()];
    const [doc1, doc2, doc3] = [randomUUID(), randomUUID(), randomUUID()];
    const inA1 = point(vectorFor(1), { tenantId, projectId: projectA, documentId: doc1 });
    const inA2 = point(vectorFor(2), { tenantId, projectId: projectA, documentId: doc2 });
    const inB3 = point(vectorFor(3), { tenantId, projectId: projectB, documentId: doc3 });
    const noProject = point(vectorFor(4), { tenantId, projectId: null, documentId: doc1 });
    await store.upsert(base, [inA1, inA2, inB3, noProject]);
    const search = (filter: Omit<VectorFilter, 'tenantId'>) => store.search(base, [1, 0, 0, 0], { tenantId, ...filter }, 10).then((m) => idsOf(m).sort());

    expect(await search({ projectId: projectA })).toEqual([inA1.id, inA2.id].sort());
    expect(await search({ projectId: projectB })).toEqual([inB3.id]);
    expect(await search({ documentIds: [doc1, doc3] })).toEqual([inA1.id, inB3.id, noProject.id].sort());
    expect(await search({ projectId: projectA, documentIds: [doc1, doc3] })).toEqual([inA1.id]);
    expect(await search({})).toEqual([inA1.id, inA2.id, inB3.id, noProject.id].sort());
    // An empty document list matches nothing (not everything).
    expect(await search({ documentIds: [] })).toEqual([]);
    expect(await store.count(base, { tenantId, documentIds: [] })).toBe(0);
    expect(await store.count(base, { tenantId, projectId: projectA })).toBe(2);
    expect(await store.count(base, { tenantId, documentIds: [doc1] })).toBe(2);
  });

  it("deletes a document's points within its tenant only", async () => {
    const mine = ids();
    const theirs = ids();
    const otherDoc = randomUUID();
    await store.upsert(base, [
      ...[0, 1, 2].map((i) => point(vectorFor(i), { tenantId: mine.tenantId, documentId: mine.documentId, chunkIndex: i })),
      point(vectorFor(3), { tenantId: mine.tenantId, documentId: otherDoc }),
      // Same document id under another tenant: out of reach of the first tenant's delete.
      point(vectorFor(4), { tenantId: theirs.tenantId, documentId: mine.documentId }),
    ]);
    await store.deleteByDocument(base, { tenantId: mine.tenantId, documentId: mine.documentId });
    expect(await store.count(base, { tenantId: mine.tenantId })).toBe(1);
    expect(await store.count(base, { tenantId: mine.tenantId, documentIds: [otherDoc] })).toBe(1);
    expect(await store.count(base, { tenantId: theirs.tenantId, documentIds: [mine.documentId] })).toBe(1);
    // Idempotent.
    await store.deleteByDocument(base, { tenantId: mine.tenantId, documentId: mine.documentId });
    expect(await store.count(base, { tenantId: mine.tenantId })).toBe(1);
  });

  it('deletes points by id, ignoring ids that are not there', async () => {
    const { tenantId } = ids();
    const points = [0, 1, 2, 3].map((i) => point(vectorFor(i), { tenantId, chunkIndex: i }));
    await store.upsert(base, points);
    await store.deleteByIds(base, { tenantId }, [points[0]!.id, points[2]!.id.toUpperCase(), randomUUID()]);
    expect(idsOf(await store.search(base, [1, 0, 0, 0], { tenantId }, 10)).sort()).toEqual([points[1]!.id, points[3]!.id].sort());
    await store.deleteByIds(base, { tenantId }, []);
    expect(await store.count(base, { tenantId })).toBe(2);
  });

  it("never deletes another tenant's points, even given their ids", async () => {
    const theirs = point(vectorFor(0), { tenantId: ids().tenantId });
    await store.upsert(base, [theirs]);
    await store.deleteByIds(base, { tenantId: ids().tenantId }, [theirs.id]);
    expect(await store.count(base, { tenantId: theirs.payload.tenantId })).toBe(1);
  });

  it("deletes a project's points within its tenant only", async () => {
    const mine = ids();
    const theirs = ids();
    const otherProject = randomUUID();
    await store.upsert(base, [
      ...[0, 1].map((i) => point(vectorFor(i), { tenantId: mine.tenantId, projectId: mine.projectId })),
      point(vectorFor(2), { tenantId: mine.tenantId, projectId: otherProject }),
      point(vectorFor(3), { tenantId: mine.tenantId, projectId: null }),
      point(vectorFor(4), { tenantId: theirs.tenantId, projectId: mine.projectId }),
    ]);
    await store.deleteByProject(base, { tenantId: mine.tenantId, projectId: mine.projectId });
    expect(await store.count(base, { tenantId: mine.tenantId, projectId: mine.projectId })).toBe(0);
    expect(await store.count(base, { tenantId: mine.tenantId })).toBe(2);
    expect(await store.count(base, { tenantId: theirs.tenantId, projectId: mine.projectId })).toBe(1);
  });

  it('keeps collections of different models and dimensions apart, and lists them with their exact model names', async () => {
    const { tenantId } = ids();
    const otherModel: VectorCollection = { model: `BAAI/bge-small-${runId}:v1.5`, dimensions: DIMS };
    const otherDims: VectorCollection = { model: base.model, dimensions: 3 };
    const inBase = point([1, 0, 0, 0], { tenantId });
    const inOtherModel = point([1, 0, 0, 0], { tenantId });
    const inOtherDims = point([1, 0, 0], { tenantId });
    await store.upsert(base, [inBase]);
    await store.upsert(otherModel, [inOtherModel]);
    await store.upsert(otherDims, [inOtherDims]);

    expect(idsOf(await store.search(base, [1, 0, 0, 0], { tenantId }, 10))).toEqual([inBase.id]);
    expect(idsOf(await store.search(otherModel, [1, 0, 0, 0], { tenantId }, 10))).toEqual([inOtherModel.id]);
    expect(idsOf(await store.search(otherDims, [1, 0, 0], { tenantId }, 10))).toEqual([inOtherDims.id]);
    await store.deleteByIds(otherModel, { tenantId }, [inBase.id]); // an id from another collection: nothing happens
    expect(await store.count(base, { tenantId })).toBe(1);

    const ours = (await store.listCollections()).filter((c) => c.model.includes(runId));
    expect(ours).toEqual(expect.arrayContaining([base, otherModel, otherDims]));
    expect(ours).toHaveLength(3);
    expect(collectionName(otherModel)).toMatch(/^chunks_[a-z0-9._-]+_4$/);
    expect(parseCollectionName(collectionName(otherModel))).toEqual(otherModel);
  });

  it('answers reads and deletes on a collection never created with nothing', async () => {
    const missing: VectorCollection = { model: `never-created-${runId}`, dimensions: 8 };
    const { tenantId, projectId, documentId } = ids();
    expect(await store.search(missing, vectorFor(1).concat(vectorFor(2)), { tenantId }, 5)).toEqual([]);
    expect(await store.count(missing, { tenantId })).toBe(0);
    await store.deleteByDocument(missing, { tenantId, documentId });
    await store.deleteByProject(missing, { tenantId, projectId });
    await store.deleteByIds(missing, { tenantId }, [randomUUID()]);
    expect((await store.listCollections()).filter((c) => c.model === missing.model)).toEqual([]);
  });

  it('leaves every point exactly once after 10 concurrent upserts of overlapping batches', async () => {
    const { tenantId, documentId } = ids();
    const pointIds: string[] = Array.from({ length: 55 }, () => randomUUID());
    const pointAt = (i: number) => point(vectorFor(i), { tenantId, documentId, chunkIndex: i }, pointIds[i]);
    // Batch b holds points 5b … 5b+9: each overlaps the next by five ids.
    const batches = Array.from({ length: 10 }, (_, b) => Array.from({ length: 10 }, (_, i) => pointAt(5 * b + i)));
    await Promise.all(batches.map((batch) => store.upsert(base, batch)));

    expect(await store.count(base, { tenantId })).toBe(55);
    const found = await store.search(base, [1, 0, 0, 0], { tenantId }, 100);
    expect(idsOf(found).sort()).toEqual([...pointIds].sort());
    for (const m of found) expect(m.payload.chunkIndex).toBe(pointIds.indexOf(m.id));
  });

  it('shows writes made through one store to another over the same data at once', async () => {
    const { tenantId } = ids();
    const reader = under.open();
    expect(await reader.count(base, { tenantId })).toBe(0); // opens and caches the collection
    await store.upsert(base, [point(vectorFor(1), { tenantId })]);
    expect(await reader.count(base, { tenantId })).toBe(1);
    expect(await reader.search(base, vectorFor(1), { tenantId }, 5)).toHaveLength(1);
  });

  it('rejects a vector of the wrong dimension with a clear error, writing nothing of the batch', async () => {
    const { tenantId } = ids();
    const good = point([1, 0, 0, 0], { tenantId });
    const bad = point([1, 0, 0], { tenantId });
    const attempt = store.upsert(base, [good, bad]);
    await expect(attempt).rejects.toThrow(VectorDimensionError);
    await expect(attempt).rejects.toThrow(`The vector of point ${bad.id} has 3 dimensions, but collection "${collectionName(base)}" holds 4-dimensional vectors.`);
    expect(await store.count(base, { tenantId })).toBe(0);
    await expect(store.search(base, [1, 0, 0, 0, 0], { tenantId }, 5)).rejects.toThrow('The query vector has 5 dimensions');
  });

  it('rejects malformed ids, filters and vectors', async () => {
    const { tenantId } = ids();
    const reject = (promise: Promise<unknown>, message: string | RegExp) => expect(promise).rejects.toThrow(message instanceof RegExp ? message : new RegExp(message));
    await reject(store.upsert(base, [point([1, 0, 0, 0], { tenantId }, 'chunk-1')]), 'A point id must be a UUID');
    await reject(store.upsert(base, [point([1, 0, 0, 0], { tenantId: "x' OR 1=1 --" })]), 'tenantId must be a UUID');
    await reject(store.upsert(base, [point([0, 0, 0, 0], { tenantId })]), 'is all zeros');
    await reject(store.upsert(base, [point([1, Number.NaN, 0, 0], { tenantId })]), 'finite numbers');
    await reject(store.upsert(base, [point([1, 0, 0, 0], { tenantId, chunkIndex: -1 })]), 'chunkIndex must be an integer');
    // A caller that loses the tenant (e.g. from untyped JSON) gets an error, never every tenant's points.
    await reject(store.search(base, [1, 0, 0, 0], {} as VectorFilter, 5), 'The filter tenantId must be a UUID');
    await reject(store.count(base, { tenantId: "' OR '1'='1" }), 'The filter tenantId must be a UUID');
    await reject(store.search(base, [1, 0, 0, 0], { tenantId, documentIds: ["') OR ('1'='1"] }, 5), 'A filter documentId must be a UUID');
    await reject(store.deleteByDocument(base, { tenantId, documentId: '*' }), 'The filter documentId must be a UUID');
    await reject(store.deleteByProject(base, { tenantId: '', projectId: randomUUID() }), 'The filter tenantId must be a UUID');
    await reject(store.deleteByIds(base, { tenantId }, ["' OR 1=1"]), 'A point id must be a UUID');
    await reject(store.search(base, [1, 0, 0, 0], { tenantId }, 0), 'topK must be an integer');
    await reject(store.ensureCollection({ model: ' ', dimensions: 4 }), 'non-empty embedding model name');
    await reject(store.ensureCollection({ model: 'm', dimensions: 1.5 }), 'dimensions must be an integer');
    await expect(store.upsert(base, [point([1, 0, 0, 0], { tenantId }, 'x')])).rejects.toBeInstanceOf(VectorStoreInputError);
    // A zero query vector has no direction: nothing is near it.
    expect(await store.search(base, [0, 0, 0, 0], { tenantId }, 5)).toEqual([]);
  });
}

const runnable = subjects.filter((s) => s.skipReason === undefined);
const skipped = subjects.filter((s) => s.skipReason !== undefined);

describe.each(runnable)('$kind vector store', behaviours);
// describe.skip.each needs at least one row; with QDRANT_URL set nothing is skipped.
if (skipped.length > 0) describe.skip.each(skipped)('$kind vector store — skipped: $skipReason', behaviours);

// ---------------------------------------------------------------------------------------------
// LanceDB is embedded: several processes (API, workers) write the same files. What keeps ids
// unique and readers current across them is verified here with a real second process.

describe('lancedb vector store across processes', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'auditflow-vectors-mp-'));
  });
  afterAll(() => rm(directory, { recursive: true, force: true }));

  /**
   * Starts the writer process: `ready` resolves once it has opened the store, `go()` starts its
   * writes, `finished` resolves with its output.
   */
  function writer(input: object): { ready: Promise<void>; go(): void; finished: Promise<string> } {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'vector-store-writer.ts'), JSON.stringify(input)], {
      cwd: repoRoot,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    let onReady = () => undefined as void;
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('ready')) onReady();
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const finished = new Promise<string>((resolve, reject) =>
      child.once('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`writer exited with ${code}:\n${output}`)))),
    );
    // A writer that dies before it is ready fails `ready` too, instead of leaving the test waiting.
    return { ready: Promise.race([ready, finished.then(() => undefined)]), go: () => child.stdin.end('go\n'), finished };
  }

  it('leaves every id exactly once when two processes upsert overlapping ids, delete and compact at the same time', async () => {
    const collection: VectorCollection = { model: 'multi-process', dimensions: DIMS };
    const { tenantId, documentId } = ids();
    const BATCHES = 30;
    const shared = Array.from({ length: 4 * BATCHES }, () => randomUUID());
    const own = { parent: Array.from({ length: 2 * BATCHES }, () => randomUUID()), child: Array.from({ length: 2 * BATCHES }, () => randomUUID()) };
    const at = (id: string, i: number) => point(vectorFor(i), { tenantId, documentId, chunkIndex: i }, id);
    // Both processes run the same work from the same moment: each batch inserts four new shared ids
    // (the same ones in both processes: without Lance's conflict check they come out duplicated)
    // and two ids of the process's own, then deletes one of those.
    const work = (mine: string[]) => ({
      batches: Array.from({ length: BATCHES }, (_, b) => [
        ...shared.slice(4 * b, 4 * b + 4).map((id) => at(id, shared.indexOf(id))),
        ...mine.slice(2 * b, 2 * b + 2).map((id, i) => at(id, 1000 + 2 * b + i)),
      ]),
      deletions: Array.from({ length: BATCHES }, (_, b) => [mine[2 * b]!]),
    });

    const store = new LanceDbVectorStore(directory, { compactEveryWrites: 4 });
    await store.ensureCollection(collection);
    const child = writer({ directory, collection, ...work(own.child), compactEveryWrites: 4 });
    await child.ready;
    child.go();
    const { batches, deletions } = work(own.parent);
    for (const [b, batch] of batches.entries()) {
      await store.upsert(collection, batch);
      await store.deleteByIds(collection, { tenantId }, deletions[b] ?? []);
    }
    expect(await child.finished).toContain('done');

    const expected = [...shared, ...own.parent.filter((_, i) => i % 2 === 1), ...own.child.filter((_, i) => i % 2 === 1)];
    expect(await store.count(collection, { tenantId })).toBe(expected.length);
    expect(idsOf(await store.search(collection, [1, 0, 0, 0], { tenantId }, 1000)).sort()).toEqual(expected.sort());
    await store.close();
  });

  it('compacts a table as writes add fragments', async () => {
    const collection: VectorCollection = { model: 'compaction', dimensions: DIMS };
    const { tenantId } = ids();
    const store = new LanceDbVectorStore(directory, { compactEveryWrites: 10 });
    for (let i = 0; i < 23; i++) await store.upsert(collection, [point(vectorFor(i), { tenantId, chunkIndex: i })]);
    await store.deleteByIds(collection, { tenantId }, [randomUUID()]);
    const db = await connect(directory);
    const table = await db.openTable(collectionName(collection));
    // 24 writes, each adding a fragment; compacted after the 10th and 20th.
    expect((await table.stats()).fragmentStats.numFragments).toBeLessThanOrEqual(5);
    expect(await store.count(collection, { tenantId })).toBe(23);
    table.close();
    db.close();
    await store.close();
  });
});
