import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Op, QueryTypes, type CreationAttributes, type Sequelize } from 'sequelize';
import { IngestionItem } from '../../db';
import { formatOf } from '../../lib/documents/formats';
import { ArchiveRejectedError, extractZip } from '../../lib/zip-extract';
import type { StepContext } from '../scans/pipeline';
import type { IngestionDeps } from './pipeline';

/**
 * Planning an ingestion job: its uploaded archives are expanded into one item per supported
 * entry (the entry's path is the document's source key, `archive:<file name>` its origin), a
 * second item with a source key already in the request fails as a duplicate, and the rest are
 * numbered into batches. Done once, in one transaction: a re-run finds the plan made.
 */

export interface IngestionPlan {
  batches: number;
  documentsTotal: number;
}

/**
 * Archive entries are packed into blobs of up to this many bytes (an entry this large or larger
 * gets a blob of its own): a put syncs its file to disk, so a few thousand small entries cost
 * seconds put one by one, and the parsing step reads a pack once for all its documents.
 */
const PACK_BYTES = 8 * 1024 * 1024;

/** Where an archive's entries are kept, under the job's blob prefix (removed with it): packs of several, and entries of their own. */
const packBlobKey = (blobPrefix: string, archiveSeq: number, pack: number) => `${blobPrefix}entries/${archiveSeq}/pack-${pack}`;
const entryBlobKey = (blobPrefix: string, archiveSeq: number, index: number) => `${blobPrefix}entries/${archiveSeq}/${index}`;

async function planOf(sequelize: Sequelize, jobId: string): Promise<IngestionPlan> {
  const [row] = await sequelize.query<{ batches: number; total: number }>(
    `SELECT coalesce(max(batch) + 1, 0)::int AS batches, count(*) FILTER (WHERE state NOT IN ('expanded', 'removed'))::int AS total
     FROM ingestion_items WHERE job_id = :jobId`,
    { replacements: { jobId }, type: QueryTypes.SELECT },
  );
  return { batches: row?.batches ?? 0, documentsTotal: row?.total ?? 0 };
}

/** Not planned yet: an archive waits to be expanded, or a document for its batch. */
async function planned(jobId: string): Promise<boolean> {
  const waiting = await IngestionItem.count({ where: { jobId, state: 'pending', [Op.or]: [{ sourceType: 'archive' }, { batch: null }] } });
  return waiting === 0;
}

/** Relative paths ('/'-separated) of the regular files under `root`, sorted. */
async function filesUnder(root: string): Promise<string[]> {
  const names = (await readdir(root, { recursive: true })).map(String).sort();
  const files: string[] = [];
  for (const name of names) if ((await stat(path.join(root, name))).isFile()) files.push(name.split(path.sep).join('/'));
  return files;
}

type EntryItem = CreationAttributes<IngestionItem>;

/**
 * The items of one archive's supported entries (other entries are skipped, as a scan skips
 * files it does not analyze); an entry above the document size limit becomes a failed item.
 * Entries go to the blob store in packs, in order, at most `packEntries` (the batch size) to a
 * pack, so a batch reads about one; under keys the same on every run.
 */
async function expandArchive(deps: IngestionDeps, archive: IngestionItem, blobPrefix: string, firstSeq: number, packEntries: number, context: StepContext): Promise<EntryItem[]> {
  const dir = await mkdtemp(path.join(tmpdir(), 'auditflow-ingest-archive-'));
  try {
    const file = path.join(dir, 'archive.zip');
    await deps.blobs.getToFile(archive.blobKey ?? '', file);
    const tree = path.join(dir, 'tree');
    const limits = { maxEntries: deps.config.ZIP_MAX_ENTRIES, maxInflatedBytes: deps.config.ZIP_MAX_INFLATED_BYTES, maxCompressionRatio: deps.config.ZIP_MAX_COMPRESSION_RATIO };
    await extractZip(file, tree, limits, context.signal);
    const entries = (await filesUnder(tree)).filter((name) => formatOf(name) !== null);
    const items: EntryItem[] = [];
    const pack: { parts: Buffer[]; items: EntryItem[]; bytes: number; number: number } = { parts: [], items: [], bytes: 0, number: 0 };
    const putPack = async () => {
      if (pack.items.length === 0) return;
      const key = packBlobKey(blobPrefix, archive.seq, pack.number);
      await deps.blobs.put(key, Buffer.concat(pack.parts));
      items.push(...pack.items.map((item) => ({ ...item, blobKey: key })));
      Object.assign(pack, { parts: [], items: [], bytes: 0, number: pack.number + 1 });
      context.heartbeat?.({ archive: archive.seq, stored: items.length });
    };
    for (const [index, name] of entries.entries()) {
      context.signal?.throwIfAborted();
      const common = {
        jobId: archive.jobId,
        seq: firstSeq + index,
        tenantId: archive.tenantId,
        projectId: archive.projectId,
        sourceKey: name,
        sourceType: 'file' as const,
        origin: `archive:${archive.name}`,
        name,
        expandedFrom: archive.seq,
        format: formatOf(name),
      };
      const full = path.join(tree, name);
      const { size } = await stat(full);
      if (size > deps.config.INGEST_MAX_DOCUMENT_BYTES) {
        items.push({ ...common, bytes: size, state: 'failed', error: `${name} is larger than ${deps.config.INGEST_MAX_DOCUMENT_BYTES} bytes (INGEST_MAX_DOCUMENT_BYTES).` });
      } else if (size >= PACK_BYTES) {
        const stored = await deps.blobs.put(entryBlobKey(blobPrefix, archive.seq, index), createReadStream(full));
        items.push({ ...common, blobKey: stored.key, bytes: stored.bytes, contentSha256: stored.sha256 });
      } else {
        if (pack.bytes + size > PACK_BYTES || pack.items.length >= packEntries) await putPack();
        const bytes = await readFile(full);
        pack.items.push({ ...common, blobOffset: pack.bytes, bytes: bytes.length, contentSha256: createHash('sha256').update(bytes).digest('hex') });
        pack.parts.push(bytes);
        pack.bytes += bytes.length;
      }
    }
    await putPack();
    return items.sort((a, b) => a.seq - b.seq);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Batch numbers for documents of these sizes, in order: a batch takes up to `maxDocuments`
 * documents and `maxBytes` bytes (a larger document is a batch of its own), as a batch's
 * documents are held in memory together. A URL's size is unknown until it is fetched: 0 here.
 */
export function batchesOf(sizes: readonly number[], maxDocuments: number, maxBytes: number): number[] {
  let batch = 0;
  let documents = 0;
  let bytes = 0;
  return sizes.map((size) => {
    if (documents > 0 && (documents >= maxDocuments || bytes + size > maxBytes)) {
      batch += 1;
      documents = 0;
      bytes = 0;
    }
    documents += 1;
    bytes += size;
    return batch;
  });
}

/**
 * Expands the job's archives and numbers its documents into batches of up to `batchSize`
 * documents and INGEST_BATCH_MAX_BYTES, in request order. An archive that cannot be extracted, or
 * that would take the job past INGEST_MAX_DOCUMENTS, fails as a whole (listed with the job's
 * failed documents).
 */
export async function planIngestion(deps: IngestionDeps, jobId: string, blobPrefix: string, batchSize: number, context: StepContext = {}): Promise<IngestionPlan> {
  if (await planned(jobId)) return planOf(deps.sequelize, jobId);
  const archives = await IngestionItem.findAll({ where: { jobId, sourceType: 'archive', state: 'pending' }, order: [['seq', 'ASC']] });
  let nextSeq = ((await IngestionItem.max<number | null, IngestionItem>('seq', { where: { jobId } })) ?? -1) + 1;
  let documents = await IngestionItem.count({ where: { jobId, sourceType: { [Op.ne]: 'archive' } } });
  const entries: EntryItem[] = [];
  const outcomes: Array<{ seq: number; error: string | null }> = [];
  for (const archive of archives) {
    try {
      const items = await expandArchive(deps, archive, blobPrefix, nextSeq, batchSize, context);
      if (documents + items.length > deps.config.INGEST_MAX_DOCUMENTS) {
        outcomes.push({ seq: archive.seq, error: `${archive.name} holds ${items.length} documents: with the rest of the request that is more than ${deps.config.INGEST_MAX_DOCUMENTS} (INGEST_MAX_DOCUMENTS).` });
        continue;
      }
      entries.push(...items);
      nextSeq += items.length;
      documents += items.length;
      outcomes.push({ seq: archive.seq, error: null });
    } catch (err) {
      if (!(err instanceof ArchiveRejectedError)) throw err;
      outcomes.push({ seq: archive.seq, error: `${archive.name} was rejected: ${err.message}` });
    }
  }
  await deps.sequelize.transaction(async (transaction) => {
    await IngestionItem.bulkCreate(entries, { transaction, ignoreDuplicates: true });
    for (const o of outcomes) {
      await IngestionItem.update(o.error === null ? { state: 'expanded' } : { state: 'failed', error: o.error }, { where: { jobId, seq: o.seq }, transaction });
    }
    const replacements = { jobId };
    // The first item with a source key is the document; a later one in the same request cannot also be.
    await deps.sequelize.query(
      `UPDATE ingestion_items i SET state = 'failed', error = 'Another document of this request has the same source key (' || i.source_key || ').'
       FROM (SELECT seq, row_number() OVER (PARTITION BY source_key ORDER BY seq) AS n FROM ingestion_items
             WHERE job_id = :jobId AND source_type <> 'archive' AND state = 'pending') d
       WHERE i.job_id = :jobId AND i.seq = d.seq AND d.n > 1`,
      { replacements, transaction },
    );
    const pending = await deps.sequelize.query<{ seq: number; bytes: string | null }>(
      "SELECT seq, bytes FROM ingestion_items WHERE job_id = :jobId AND source_type <> 'archive' AND state = 'pending' ORDER BY seq",
      { replacements, type: QueryTypes.SELECT, transaction },
    );
    const batches = batchesOf(pending.map((p) => Number(p.bytes ?? 0)), batchSize, deps.config.INGEST_BATCH_MAX_BYTES);
    await deps.sequelize.query(
      `UPDATE ingestion_items i SET batch = b.batch FROM unnest(ARRAY[:seqs]::int[], ARRAY[:batches]::int[]) AS b(seq, batch)
       WHERE i.job_id = :jobId AND i.seq = b.seq`,
      { replacements: { jobId, seqs: pending.map((p) => p.seq), batches }, transaction },
    );
  });
  return planOf(deps.sequelize, jobId);
}
