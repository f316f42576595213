/**
 * A second process writing to a LanceDB vector store, for test/lib/vector-store.test.ts:
 * `node --import tsx test/lib/vector-store-writer.ts '<json>'` upserts (and deletes) the points it
 * is given, batch after batch, from the moment a line arrives on stdin; it prints `ready` once the
 * store is open and `done` at the end.
 */
import { LanceDbVectorStore, type VectorCollection, type VectorPoint } from '../../lib/vector-store';

interface WriterInput {
  directory: string;
  collection: VectorCollection;
  batches: VectorPoint[][];
  /** Point ids deleted after the batch with the same index. */
  deletions: string[][];
  compactEveryWrites: number;
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? '{}') as WriterInput;
  const store = new LanceDbVectorStore(input.directory, { compactEveryWrites: input.compactEveryWrites });
  await store.ensureCollection(input.collection);
  process.stdout.write('ready\n');
  // Start together with the test process: it writes `go` when it starts its own writes.
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  for (const [i, batch] of input.batches.entries()) {
    await store.upsert(input.collection, batch);
    const deletions = input.deletions[i] ?? [];
    // Every point of the run belongs to one tenant: the deletions are that tenant's.
    if (deletions.length > 0) await store.deleteByIds(input.collection, { tenantId: batch[0]?.payload.tenantId ?? '' }, deletions);
  }
  await store.close();
  process.stdout.write('done\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
