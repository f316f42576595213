import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Op, type CreationAttributes } from 'sequelize';
import { IngestionItem, Job } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import type { Config } from '../../lib/config';
import { AppError, ConflictError } from '../../lib/errors';
import { formatOf } from '../../lib/documents/formats';
import { inspectZip } from '../../lib/zip-extract';
import type { IngestParams } from '../../workflows/definitions';
import type { AuditScope } from '../audit';
import { startJob, type Idempotency } from '../jobs';
import type { LlmJobsDeps } from '../llm-checks';
import { getProject, projectForNewJob } from '../projects';
import { checkDocumentUrl } from './fetch';

/**
 * Starting a document ingestion (issue 7, criterion 1): what the request names is checked at
 * once (file types → 415 naming the file, sizes → 413, URLs → 422 before anything connects, and
 * 409 while another ingestion of the project is queued or running),
 * uploads and texts go to the blob store under the job's prefix in the project's, and each
 * document (or archive, expanded by the job) becomes an `ingestion_items` row in the job's own
 * transaction. The workflow gets the job id, the blob prefix and its tuning: never a document.
 */

export type StartIngestionDeps = LlmJobsDeps & {
  blobs: BlobStore;
  config: Pick<
    Config,
    'INGEST_ALLOWED_HOSTS' | 'INGEST_MAX_DOCUMENT_BYTES' | 'INGEST_MAX_DOCUMENTS' | 'UPLOAD_MAX_BYTES' | 'ZIP_MAX_ENTRIES' | 'ZIP_MAX_INFLATED_BYTES' | 'ZIP_MAX_COMPRESSION_RATIO'
  >;
};

/** An uploaded file, still in the temporary file the API received it into. */
export interface UploadedDocument {
  path: string;
  /** The client's file name: the document's source key (and a label), never a path to use. */
  fileName: string;
  mediaType: string;
  bytes: number;
  sha256: string;
}

export type IngestionSource = { kind: 'files'; files: UploadedDocument[] } | { kind: 'urls'; urls: string[] } | { kind: 'text'; title: string; text: string };

export interface IngestionRequest {
  tenantId: string;
  projectId: string;
  requestedBy: string;
  mode: IngestParams['mode'];
  source: IngestionSource;
  /** Tuning for tests and very large ingestions; defaults suit most. */
  tuning?: Partial<Pick<IngestParams, 'batchSize' | 'parallelism' | 'batchesPerRun' | 'heartbeatTimeoutSeconds'>>;
  retryOf?: string;
  idempotency?: Idempotency;
}

const defaultTuning = { batchSize: 100, parallelism: 4, batchesPerRun: 200 };

/** Media types clients give a ZIP part; a `.zip` name counts too. */
const zipMediaTypes = new Set(['application/zip', 'application/x-zip-compressed', 'application/x-zip']);
const isArchive = (part: { fileName: string; mediaType: string }) => zipMediaTypes.has(part.mediaType) || /\.zip$/i.test(part.fileName);

/**
 * Which uploaded parts an ingestion takes, decided from the part's name and media type before
 * its bytes are read: a ZIP (up to UPLOAD_MAX_BYTES), or a document of a format we parse (up to
 * INGEST_MAX_DOCUMENT_BYTES); anything else answers 415 naming the file. Returns the part's size limit.
 */
export function documentUploadLimit(config: StartIngestionDeps['config'], part: { fileName: string; mediaType: string }): number {
  if (isArchive(part)) return config.UPLOAD_MAX_BYTES;
  if (formatOf(part.fileName, part.mediaType) === null) {
    throw new AppError(415, 'unsupported-media-type', `"${part.fileName}" (${part.mediaType}) is not a document type we ingest: send text, Markdown, HTML, PDF, DOCX or source files, or a ZIP of them.`, {
      file: part.fileName,
    });
  }
  return config.INGEST_MAX_DOCUMENT_BYTES;
}

const tooMany = (count: number, max: number) =>
  new AppError(413, 'payload-too-large', `The request names ${count} documents; at most ${max} are ingested at once (INGEST_MAX_DOCUMENTS).`, { limit: max });

type ItemDraft = Omit<CreationAttributes<IngestionItem>, 'jobId' | 'seq' | 'tenantId' | 'projectId'>;

/** Checks the request and stores its bytes under `blobPrefix`; returns the job's items. */
async function draftItems(deps: StartIngestionDeps, blobPrefix: string, source: IngestionSource): Promise<ItemDraft[]> {
  const { config } = deps;
  switch (source.kind) {
    case 'files': {
      const loose = source.files.filter((f) => !isArchive(f));
      if (loose.length > config.INGEST_MAX_DOCUMENTS) throw tooMany(loose.length, config.INGEST_MAX_DOCUMENTS);
      for (const f of source.files) {
        if (isArchive(f)) {
          await inspectZip(f.path, { maxEntries: config.ZIP_MAX_ENTRIES, maxInflatedBytes: config.ZIP_MAX_INFLATED_BYTES, maxCompressionRatio: config.ZIP_MAX_COMPRESSION_RATIO });
        }
      }
      const drafts: ItemDraft[] = [];
      for (const [i, f] of source.files.entries()) {
        const stored = await deps.blobs.put(`${blobPrefix}uploads/${i}`, createReadStream(f.path), { contentType: f.mediaType });
        const archive = isArchive(f);
        drafts.push({
          sourceKey: f.fileName,
          sourceType: archive ? 'archive' : 'file',
          origin: archive ? `archive:${f.fileName}` : 'files',
          name: f.fileName,
          mediaType: f.mediaType,
          blobKey: stored.key,
          bytes: stored.bytes,
          contentSha256: stored.sha256,
          format: archive ? null : formatOf(f.fileName, f.mediaType),
        });
      }
      return drafts;
    }
    case 'urls': {
      const urls = [...new Set(source.urls)];
      if (urls.length > config.INGEST_MAX_DOCUMENTS) throw tooMany(urls.length, config.INGEST_MAX_DOCUMENTS);
      // Refused here before anything connects; the worker checks again where it connects (DNS may change).
      for (const url of urls) await checkDocumentUrl(url, config.INGEST_ALLOWED_HOSTS);
      return urls.map((url) => ({ sourceKey: url, sourceType: 'url', origin: 'urls', name: url, url }));
    }
    case 'text': {
      const bytes = Buffer.from(source.text, 'utf8');
      if (bytes.length > config.INGEST_MAX_DOCUMENT_BYTES) {
        throw new AppError(413, 'payload-too-large', `The text is larger than ${config.INGEST_MAX_DOCUMENT_BYTES} bytes (INGEST_MAX_DOCUMENT_BYTES).`, { limit: config.INGEST_MAX_DOCUMENT_BYTES });
      }
      const stored = await deps.blobs.put(`${blobPrefix}text`, bytes, { contentType: 'text/markdown; charset=utf-8' });
      // Text is read as Markdown (its headings kept), unless its title names another text format.
      const format = formatOf(source.title) ?? 'markdown';
      return [{ sourceKey: source.title, sourceType: 'text', origin: 'text', name: source.title, title: source.title, blobKey: stored.key, bytes: stored.bytes, contentSha256: stored.sha256, format }];
    }
  }
}

const describe = (source: IngestionSource) =>
  source.kind === 'text' ? `“${source.title}”` : source.kind === 'urls' ? `${new Set(source.urls).size} URL(s)` : `${source.files.length} file(s)`;

/** Where a job's blobs live: under the project's prefix, so project deletion removes them. */
const blobPrefixOf = (projectId: string) => `projects/${projectId}/documents/${randomUUID()}/`;

/**
 * Starts the items of `drafts` as a new `ingestDocuments` job. `release` runs when no new job
 * holds what `drafts` stored: the start failed, or the request was an idempotent replay.
 */
async function startWithItems(
  deps: StartIngestionDeps,
  audit: AuditScope,
  request: Omit<IngestionRequest, 'source'>,
  blobPrefix: string,
  title: string,
  drafts: () => Promise<ItemDraft[]>,
  release: () => Promise<void>,
) {
  let started: { job: Job; replayed: boolean };
  try {
    const items = await drafts();
    const params: IngestParams = { llmTaskQueue: deps.config.TEMPORAL_LLM_TASK_QUEUE, mode: request.mode, blobPrefix, ...defaultTuning, ...request.tuning };
    started = await startJob(deps, audit, {
      tenantId: request.tenantId,
      projectId: request.projectId,
      kind: 'ingestDocuments',
      title,
      params: { ...params },
      requestedBy: request.requestedBy,
      retryOf: request.retryOf,
      idempotency: request.idempotency,
      prepare: async (job, transaction) => {
        const project = await projectForNewJob(request.tenantId, request.projectId, transaction);
        // Two ingestions of one project at once could each remove (sync) or replace the other's
        // documents. Concurrent starts take turns at this check: the second sees the first's job.
        await deps.sequelize.query('SELECT pg_advisory_xact_lock(hashtext(:lock))', { replacements: { lock: `ingest:${project.id}` }, transaction });
        const open = await Job.count({ where: { projectId: project.id, kind: 'ingestDocuments', status: { [Op.in]: ['queued', 'running'] }, id: { [Op.ne]: job.id } }, transaction });
        if (open > 0) throw new ConflictError('An ingestion into this project is already queued or running: wait for it to finish, or cancel its job.');
        await IngestionItem.bulkCreate(
          items.map((item, seq) => ({ ...item, jobId: job.id, seq, tenantId: request.tenantId, projectId: project.id })),
          { transaction },
        );
        await job.update({ title: `${title} into “${project.name}”` }, { transaction });
      },
    });
  } catch (err) {
    // Should this fail too, the blobs stay under the project's prefix until the project is deleted.
    await release().catch(() => undefined);
    throw err;
  }
  if (started.replayed) await release();
  return started;
}

/** Checks the request, stores what it carries and starts its ingestion job. */
export async function startIngestion(deps: StartIngestionDeps, audit: AuditScope, request: IngestionRequest): Promise<{ job: Job; replayed: boolean }> {
  // Not found answers before any work, and nothing is stored under another tenant's project.
  await getProject(request.tenantId, request.projectId);
  const blobPrefix = blobPrefixOf(request.projectId);
  return startWithItems(
    deps,
    audit,
    request,
    blobPrefix,
    `Ingest ${describe(request.source)}`,
    () => draftItems(deps, blobPrefix, request.source),
    () => deps.blobs.deletePrefix(blobPrefix).then(() => undefined),
  );
}

/**
 * A failed or cancelled ingestion starts again as a new job with what the old one's request
 * named (its uploads are still under its blob prefix; archives are expanded afresh).
 */
export async function restartIngestion(deps: StartIngestionDeps, audit: AuditScope, old: Job, requestedBy: string, idempotency?: Idempotency): Promise<{ job: Job; replayed: boolean }> {
  const params = old.params as unknown as IngestParams;
  const named = await IngestionItem.findAll({ where: { jobId: old.id, expandedFrom: null }, order: [['seq', 'ASC']] });
  const drafts = named
    .filter((i) => i.state !== 'removed')
    .map(
      (i): ItemDraft => ({
        sourceKey: i.sourceKey,
        sourceType: i.sourceType,
        origin: i.origin,
        name: i.name,
        title: i.sourceType === 'text' ? i.title : null,
        mediaType: i.sourceType === 'url' ? null : i.mediaType,
        url: i.url,
        // A URL is fetched afresh; an upload is read from where the old job's request stored it.
        blobKey: i.sourceType === 'url' ? null : i.blobKey,
        bytes: i.sourceType === 'url' ? null : i.bytes,
        contentSha256: i.sourceType === 'url' ? null : i.contentSha256,
        format: i.sourceType === 'url' || i.sourceType === 'archive' ? null : i.format,
      }),
    );
  const { batchSize, parallelism, batchesPerRun, heartbeatTimeoutSeconds } = params;
  const request = { tenantId: old.tenantId, projectId: old.projectId ?? '', requestedBy, mode: params.mode, tuning: { batchSize, parallelism, batchesPerRun, heartbeatTimeoutSeconds }, retryOf: old.id, idempotency };
  // The uploads stay the old job's until the new one completes (and deletes them): nothing to release here.
  return startWithItems(deps, audit, request, params.blobPrefix, `Ingest ${drafts.length} document(s) again`, () => Promise.resolve(drafts), () => Promise.resolve());
}
