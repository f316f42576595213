import { Op, QueryTypes, type Sequelize } from 'sequelize';
import { IngestionItem, Job } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import type { IngestCounters, IngestStage } from '../../workflows/definitions';
import { recordJobEvent } from '../jobs';
import { failIngestionItems, removeReplacedVersion, type IngestionDeps } from './pipeline';
import { removeDocuments } from './removal';

/**
 * How an ingestion job ends, and what it reports on the way: its counters are always read from
 * its items (so a batch retried after a crash is never counted twice), a sync removes the
 * documents its origins no longer name, and a job that ends early leaves no half-stored version.
 */

/** The job's counters, from the state of its items. */
export async function ingestionCounters(sequelize: Sequelize, jobId: string): Promise<IngestCounters> {
  const [row] = await sequelize.query<Record<keyof IngestCounters, number>>(
    `SELECT count(*) FILTER (WHERE state NOT IN ('expanded', 'removed'))::int AS "documentsTotal",
            count(*) FILTER (WHERE state = 'stored')::int AS "documentsStored",
            count(*) FILTER (WHERE state = 'unchanged')::int AS "documentsUnchanged",
            count(*) FILTER (WHERE state = 'failed')::int AS "documentsFailed",
            count(*) FILTER (WHERE state = 'removed')::int AS "documentsRemoved",
            coalesce(sum(chunk_count) FILTER (WHERE state IN ('chunked', 'embedded', 'stored')), 0)::int AS "chunksCreated",
            coalesce(sum(chunk_count) FILTER (WHERE state IN ('embedded', 'stored')), 0)::int AS "embeddingsGenerated"
     FROM ingestion_items WHERE job_id = :jobId`,
    { replacements: { jobId }, type: QueryTypes.SELECT },
  );
  if (!row) throw new Error(`no counters for job ${jobId}`);
  return row;
}

/** Records a progress event (once per `step`) with the stage and the counters as they stand; returns the counters. */
export async function reportIngestionProgress(sequelize: Sequelize, jobId: string, step: string, stage: IngestStage | 'removing'): Promise<IngestCounters> {
  const counters = await ingestionCounters(sequelize, jobId);
  await recordJobEvent(sequelize, jobId, { type: 'progress', stage, counters: { ...counters }, dedupeKey: `progress:${step}` });
  return counters;
}

/**
 * Fails the job's items that have not reached `stored` yet, removing what they staged (chunk
 * rows, and vectors already written for them): after a cancellation or a failure, or for the
 * documents left unembedded when the tenant's LLM budget ran out.
 */
export async function failUnstoredItems(deps: Pick<IngestionDeps, 'sequelize' | 'vectors'>, jobId: string, error: string, states: readonly IngestionItem['state'][] = ['pending', 'fetched', 'parsed', 'chunked', 'embedded']): Promise<void> {
  const items = await IngestionItem.findAll({ where: { jobId, state: { [Op.in]: [...states] } }, order: [['seq', 'ASC']] });
  for (const item of items) {
    if (!['chunked', 'embedded'].includes(item.state) || item.documentId === null || item.contentSha256 === null) continue;
    // The same bytes may have been published meanwhile by another job: the live version is never removed.
    const [live] = await deps.sequelize.query<{ content_sha256: string | null }>('SELECT content_sha256 FROM documents WHERE id = :id', {
      replacements: { id: item.documentId },
      type: QueryTypes.SELECT,
    });
    if (live?.content_sha256 === item.contentSha256) continue;
    const collection = item.embeddingModel !== null && item.embeddingDimensions !== null ? { model: item.embeddingModel, dimensions: item.embeddingDimensions } : null;
    await removeReplacedVersion(deps, item.tenantId, item.documentId, { contentSha256: item.contentSha256, collection });
  }
  await failIngestionItems(deps.sequelize, items.map((item) => ({ item, error })));
}

/**
 * A sync: removes the project's documents of the request's origins (its URL list, each archive,
 * its loose files, its text) that the request does not name, each recorded as a `removed` item.
 * Safe to run again. Returns how many documents went.
 */
export async function removeAbsentDocuments(deps: Pick<IngestionDeps, 'sequelize' | 'vectors'>, jobId: string): Promise<number> {
  const job = await Job.findByPk(jobId, { rejectOnEmpty: true });
  const replacements = { jobId, tenantId: job.tenantId, projectId: job.projectId };
  const absent = await deps.sequelize.query<{ id: string; source_key: string; source_type: string; origin: string; title: string }>(
    `SELECT d.id, d.source_key, d.source_type, d.origin, d.title FROM documents d
     WHERE d.tenant_id = :tenantId AND d.project_id = :projectId
       AND d.origin IN (SELECT origin FROM ingestion_items WHERE job_id = :jobId AND source_type <> 'archive' AND state <> 'removed'
                        UNION SELECT 'archive:' || name FROM ingestion_items WHERE job_id = :jobId AND source_type = 'archive' AND state = 'expanded')
       AND d.source_key NOT IN (SELECT source_key FROM ingestion_items WHERE job_id = :jobId AND state <> 'removed')
     ORDER BY d.source_key`,
    { replacements, type: QueryTypes.SELECT },
  );
  if (absent.length === 0) return 0;
  await deps.sequelize.query(
    `INSERT INTO ingestion_items (job_id, seq, tenant_id, project_id, source_key, source_type, origin, name, title, state, document_id)
     SELECT :jobId, m.next + a.n, :tenantId, :projectId, a.source_key, a.source_type, a.origin, a.source_key, a.title, 'removed', a.id
     FROM (SELECT coalesce(max(seq), -1) + 1 AS next FROM ingestion_items WHERE job_id = :jobId) m,
          unnest(ARRAY[:ids]::uuid[], ARRAY[:keys]::text[], ARRAY[:types]::text[], ARRAY[:origins]::text[], ARRAY[:titles]::text[]) WITH ORDINALITY AS a(id, source_key, source_type, origin, title, n)
     WHERE NOT EXISTS (SELECT 1 FROM ingestion_items r WHERE r.job_id = :jobId AND r.state = 'removed' AND r.source_key = a.source_key)`,
    {
      replacements: {
        ...replacements,
        ids: absent.map((d) => d.id),
        keys: absent.map((d) => d.source_key),
        types: absent.map((d) => d.source_type),
        origins: absent.map((d) => d.origin),
        titles: absent.map((d) => d.title),
      },
    },
  );
  let removed = 0;
  for (let i = 0; i < absent.length; i += 100) removed += await removeDocuments(deps, job.tenantId, absent.slice(i, i + 100).map((d) => d.id));
  return removed;
}

export interface FailedDocument {
  sourceKey: string;
  name: string;
  error: string;
}

export type IngestSummary = IngestCounters & { durationMs: number };

/**
 * Completes the job: its counters and duration, and in the final event's data every failed
 * document with its error (read here, never carried through workflow history). The job's blobs
 * (uploads, fetched documents, archive entries) are deleted: what was stored is in Postgres and
 * the vector store, and a completed job is not retried.
 */
export async function completeIngestion(deps: { sequelize: Sequelize; blobs: BlobStore }, jobId: string, blobPrefix: string): Promise<IngestSummary> {
  const counters = await ingestionCounters(deps.sequelize, jobId);
  const job = await Job.findByPk(jobId, { rejectOnEmpty: true });
  const durationMs = Date.now() - (job.startedAt ?? job.createdAt).getTime();
  const failed = (await IngestionItem.findAll({ where: { jobId, state: 'failed' }, attributes: ['sourceKey', 'name', 'error'], order: [['seq', 'ASC']] })).map(
    (i): FailedDocument => ({ sourceKey: i.sourceKey, name: i.name, error: i.error ?? 'failed' }),
  );
  const removed = (await IngestionItem.findAll({ where: { jobId, state: 'removed' }, attributes: ['sourceKey'], order: [['seq', 'ASC']] })).map((i) => i.sourceKey);
  await deps.blobs.deletePrefix(blobPrefix);
  const summary = { ...counters, durationMs };
  await recordJobEvent(deps.sequelize, jobId, { type: 'completed', status: 'completed', stage: 'completed', counters: summary, data: { failed, removed }, dedupeKey: 'terminal' });
  return summary;
}
