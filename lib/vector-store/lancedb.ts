import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { connect, type Connection, type Table } from '@lancedb/lancedb';
import { Field, FixedSizeList, Float32, Int32, Schema, Utf8 } from 'apache-arrow';
import { batches, checkFilter, checkIds, checkPoints, checkSearch, collectionName, parseCollectionName, uuid, type CheckedFilter } from './contract';
import type { VectorCollection, VectorFilter, VectorMatch, VectorPoint, VectorStore } from './types';

/**
 * The embedded vector store: one LanceDB table per collection under `<AUDITFLOW_DATA_DIR>/lancedb`,
 * searched exactly (no ANN index: brute-force cosine over the rows that pass the filter, which
 * LanceDB applies before ranking, so another tenant's points can never take a top-k slot).
 *
 * Concurrency (verified against @lancedb/lancedb 0.37.1, lance 10; see test/lib/vector-store.test.ts):
 * - Two `mergeInsert`s of the same new ids running at once, in one process or in two, BOTH
 *   insert them (duplicate rows) unless the table declares `id` as its unenforced primary key.
 *   With it, Lance detects the conflict at commit and retries the merge (`numAttempts` > 1), and
 *   every id stays unique. So the key is part of the schema at creation (atomic, no window), and
 *   merges never use a scalar index on `id` (a merge through one skipped the check: duplicates).
 * - Within this process writes to a table are serialized anyway (`withWriteLock`): conflicts,
 *   retries and their wasted work then only arise between processes (API and workers).
 * - Deletes racing merges from other processes are retried by Lance the same way.
 * - A cached table does not see another process's commits unless the connection checks for new
 *   versions, so it is opened with `readConsistencyInterval: 0` (each read checks the latest
 *   manifest: a cheap local file lookup).
 * - Every write adds a fragment, and reads and merges slow down with their number (1,000 small
 *   fragments: ~10× slower search), so every `COMPACT_EVERY_WRITES` writes the table is compacted.
 *   A compaction that loses a race to another process's write fails with a retryable conflict
 *   and changes nothing; it is simply tried again later.
 */

const COMPACT_EVERY_WRITES = 50;
/** Old versions' files are removed after this; readers always read the latest version. */
const KEEP_OLD_VERSIONS_MS = 15 * 60_000;
/** Keeps one delete's SQL predicate short. */
const DELETE_IDS_PER_STATEMENT = 500;
const TABLE_NAMES_PAGE = 1000;
/** Lance field metadata that marks the (single-column) unenforced primary key. */
const PRIMARY_KEY_METADATA = new Map([['lance-schema:unenforced-primary-key:position', '1']]);
/** `_distance` named explicitly: Lance warns that it will stop adding it on its own. */
const RESULT_COLUMNS = ['id', 'tenant_id', 'project_id', 'document_id', 'chunk_index', '_distance'];

export interface LanceDbVectorStoreOptions {
  /** Compact a table after this many writes by this process (default 50). */
  compactEveryWrites?: number;
}

function tableSchema(c: VectorCollection): Schema {
  return new Schema(
    [
      new Field('id', new Utf8(), false, PRIMARY_KEY_METADATA),
      new Field('vector', new FixedSizeList(c.dimensions, new Field('item', new Float32(), true)), false),
      new Field('tenant_id', new Utf8(), false),
      new Field('project_id', new Utf8(), true),
      new Field('document_id', new Utf8(), false),
      new Field('chunk_index', new Int32(), false),
    ],
    // For people inspecting the files; the adapter itself reads the model from the table name.
    new Map([
      ['auditflow.model', c.model],
      ['auditflow.dimensions', String(c.dimensions)],
    ]),
  );
}

/** A SQL string literal. Values are validated UUIDs already; escaping keeps that from mattering. */
const sqlString = (value: string) => `'${value.replaceAll("'", "''")}'`;

function whereClause(filter: CheckedFilter): string {
  const clauses = [`tenant_id = ${sqlString(filter.tenantId)}`];
  if (filter.projectId !== undefined) clauses.push(`project_id = ${sqlString(filter.projectId)}`);
  if (filter.documentIds !== undefined) clauses.push(`document_id IN (${filter.documentIds.map(sqlString).join(', ')})`);
  return clauses.join(' AND ');
}

function toRow(point: VectorPoint): Record<string, unknown> {
  return {
    id: point.id,
    vector: point.vector,
    tenant_id: point.payload.tenantId,
    project_id: point.payload.projectId,
    document_id: point.payload.documentId,
    chunk_index: point.payload.chunkIndex,
  };
}

function toMatch(row: unknown): VectorMatch {
  const r = row as Record<string, unknown>;
  const { id, tenant_id, project_id, document_id, chunk_index, _distance } = r;
  if (
    typeof id !== 'string' ||
    typeof tenant_id !== 'string' ||
    (project_id !== null && typeof project_id !== 'string') ||
    typeof document_id !== 'string' ||
    typeof chunk_index !== 'number' ||
    typeof _distance !== 'number'
  ) {
    throw new Error(`Unexpected LanceDB result row: ${JSON.stringify(Object.keys(r))}`);
  }
  // Cosine distance is 1 − cosine similarity.
  return { id, score: 1 - _distance, payload: { tenantId: tenant_id, projectId: project_id, documentId: document_id, chunkIndex: chunk_index } };
}

// ---------------------------------------------------------------------------------------------
// Per-table write serialization within this process

const writeQueues = new Map<string, Promise<void>>();

/** Runs `work` after every earlier write to the same table (keyed by its path) in this process has finished. */
async function withWriteLock<T>(key: string, work: () => Promise<T>): Promise<T> {
  const previous = writeQueues.get(key) ?? Promise.resolve();
  let release: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  writeQueues.set(key, done);
  await previous; // never rejects: it is an earlier writer's `done`
  try {
    return await work();
  } finally {
    release();
    if (writeQueues.get(key) === done) writeQueues.delete(key);
  }
}

// ---------------------------------------------------------------------------------------------

export class LanceDbVectorStore implements VectorStore {
  readonly kind = 'lancedb' as const;
  private connection: Promise<Connection> | undefined;
  /** Open tables by name; an entry resolving to null (no such table) is dropped once settled. */
  private readonly tables = new Map<string, Promise<Table | null>>();
  private readonly writesSinceCompaction = new Map<string, number>();
  private readonly compactEveryWrites: number;
  private closed = false;

  constructor(
    readonly directory: string,
    options: LanceDbVectorStoreOptions = {},
  ) {
    this.compactEveryWrites = options.compactEveryWrites ?? COMPACT_EVERY_WRITES;
  }

  async ensureCollection(c: VectorCollection): Promise<void> {
    await this.table(collectionName(c), c);
  }

  async upsert(c: VectorCollection, points: VectorPoint[]): Promise<void> {
    const name = collectionName(c);
    const checked = checkPoints(c, name, points);
    const table = await this.table(name, c);
    if (checked.length === 0) return;
    await this.write(name, table, () =>
      table
        .mergeInsert('id')
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        // The conflict check that keeps ids unique across processes is skipped on the index path.
        .useIndex(false)
        .execute(checked.map(toRow)),
    );
  }

  async search(c: VectorCollection, vector: number[], filter: VectorFilter, topK: number): Promise<VectorMatch[]> {
    const search = checkSearch(c, vector, filter, topK);
    if (search === null) return [];
    const { name, filter: checkedFilter } = search;
    const table = await this.table(name);
    if (table === null) return [];
    const rows: unknown[] = await table
      .vectorSearch(Float32Array.from(vector))
      .distanceType('cosine')
      .where(whereClause(checkedFilter))
      .select(RESULT_COLUMNS)
      .limit(topK)
      .toArray();
    return rows.map(toMatch);
  }

  async deleteByDocument(c: VectorCollection, filter: { tenantId: string; documentId: string }): Promise<void> {
    const tenantId = uuid(filter.tenantId, 'The filter tenantId');
    const documentId = uuid(filter.documentId, 'The filter documentId');
    await this.deleteWhere(c, `tenant_id = ${sqlString(tenantId)} AND document_id = ${sqlString(documentId)}`);
  }

  async deleteByProject(c: VectorCollection, filter: { tenantId: string; projectId: string }): Promise<void> {
    const tenantId = uuid(filter.tenantId, 'The filter tenantId');
    const projectId = uuid(filter.projectId, 'The filter projectId');
    await this.deleteWhere(c, `tenant_id = ${sqlString(tenantId)} AND project_id = ${sqlString(projectId)}`);
  }

  async deleteByIds(c: VectorCollection, filter: { tenantId: string }, ids: string[]): Promise<void> {
    const tenantId = uuid(filter.tenantId, 'The filter tenantId');
    const checked = checkIds(ids);
    for (const slice of batches(checked, DELETE_IDS_PER_STATEMENT)) {
      await this.deleteWhere(c, `tenant_id = ${sqlString(tenantId)} AND id IN (${slice.map(sqlString).join(', ')})`);
    }
  }

  async count(c: VectorCollection, filter: VectorFilter): Promise<number> {
    const name = collectionName(c);
    const checkedFilter = checkFilter(filter);
    if (checkedFilter === null) return 0;
    const table = await this.table(name);
    return table === null ? 0 : table.countRows(whereClause(checkedFilter));
  }

  async listCollections(): Promise<VectorCollection[]> {
    const names = await this.tableNames(await this.db());
    return names.map(parseCollectionName).filter((c): c is VectorCollection => c !== null);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const tables = await Promise.allSettled(this.tables.values());
    this.tables.clear();
    for (const t of tables) if (t.status === 'fulfilled' && t.value !== null) t.value.close();
    const connection = await this.connection?.catch(() => undefined);
    connection?.close();
  }

  // -------------------------------------------------------------------------------------------

  private db(): Promise<Connection> {
    if (this.closed) return Promise.reject(new Error('The LanceDB vector store is closed.'));
    this.connection ??= (async () => {
      await mkdir(this.directory, { recursive: true });
      return connect(this.directory, { readConsistencyInterval: 0 });
    })().catch((error: unknown) => {
      this.connection = undefined; // let a later call try again
      throw error;
    });
    return this.connection;
  }

  /** The open table `name`; created from `createAs` when missing, else null when missing. */
  private table(name: string, createAs: VectorCollection): Promise<Table>;
  private table(name: string): Promise<Table | null>;
  private async table(name: string, createAs?: VectorCollection): Promise<Table | null> {
    for (;;) {
      let entry = this.tables.get(name);
      if (entry === undefined) {
        entry = this.open(name, createAs);
        this.tables.set(name, entry);
      }
      const forget = () => {
        if (this.tables.get(name) === entry) this.tables.delete(name);
      };
      let table: Table | null;
      try {
        table = await entry;
      } catch (error) {
        forget();
        throw error;
      }
      if (table !== null) return table;
      forget();
      // A concurrent read found no table; a caller that creates it goes round again.
      if (createAs === undefined) return null;
    }
  }

  private async open(name: string, createAs: VectorCollection | undefined): Promise<Table | null> {
    const db = await this.db();
    // `existOk` makes creation idempotent, also when several processes race to create it.
    if (createAs !== undefined) return db.createEmptyTable(name, tableSchema(createAs), { existOk: true });
    try {
      return await db.openTable(name);
    } catch (error) {
      if (!(await this.tableNames(db)).includes(name)) return null;
      throw error;
    }
  }

  private async tableNames(db: Connection): Promise<string[]> {
    const names: string[] = [];
    for (;;) {
      const page = await db.tableNames({ limit: TABLE_NAMES_PAGE, ...(names.length > 0 ? { startAfter: names[names.length - 1] } : {}) });
      names.push(...page);
      if (page.length < TABLE_NAMES_PAGE) return names;
    }
  }

  private async deleteWhere(c: VectorCollection, predicate: string): Promise<void> {
    const name = collectionName(c);
    const table = await this.table(name);
    if (table === null) return;
    await this.write(name, table, () => table.delete(predicate));
  }

  private async write(name: string, table: Table, work: () => Promise<unknown>): Promise<void> {
    await withWriteLock(path.resolve(this.directory, name), async () => {
      await work();
      const writes = (this.writesSinceCompaction.get(name) ?? 0) + 1;
      this.writesSinceCompaction.set(name, writes);
      if (writes < this.compactEveryWrites) return;
      this.writesSinceCompaction.set(name, 0);
      try {
        await table.optimize({ cleanupOlderThan: new Date(Date.now() - KEEP_OLD_VERSIONS_MS) });
      } catch {
        // Lost a race to another process's commit (a retryable conflict that changed nothing),
        // or a transient I/O error: the write itself is done, compaction runs again later.
      }
    });
  }
}
