import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatOf } from '../../lib/documents/formats';
import { DocumentParseError } from '../../lib/documents/parse';
import { extractZip, type ZipLimits } from '../../lib/zip-extract';
import type { LlmCall } from '../../services/llm';
import {
  chunkDocumentStep,
  embedChunkTexts,
  openDocuments,
  parseDocumentStep,
  parseSettingsOf,
  publishVersions,
  removeReplacedVersion,
  stageChunks,
  storeVectors,
  type DocumentIdentity,
  type IngestionLlmDeps,
  type VersionChunks,
} from '../../services/documents/pipeline';

/**
 * The document ingestion pipeline as a plain in-process loop, with the pipeline's own steps and
 * no Temporal, no worker, no staging between stages (not a benchmark itself: .ci/run runs only
 * bench/*.ts). Per batch of documents, as the job divides them: open, parse and chunk each,
 * stage the batch's chunk rows, embed every chunk of the batch in one gateway call, store the
 * batch's vectors, publish its versions, remove what they replaced. The ingestion benchmark's baseline, and a way
 * for tests to have stored documents without an ingestion job.
 */

export interface LoopDocument {
  /** Its source key within the project, and the name its format is told from. */
  name: string;
  bytes: Buffer;
}

export interface LoopResult {
  documents: number;
  failed: number;
  chunks: number;
  ms: number;
  /** Time per step, summed: reading the documents out of their ZIP (ingestZipInProcess only), open and parse, chunk, stage, embed, store and publish. */
  readMs: number;
  parseMs: number;
  chunkMs: number;
  stageMs: number;
  embedMs: number;
  storeMs: number;
}

interface Opened {
  identity: DocumentIdentity;
  documentId: string;
  chunks: VersionChunks;
  tokenCount: number;
}

export async function ingestInProcess(
  deps: IngestionLlmDeps,
  into: { tenantId: string; projectId: string },
  documents: LoopDocument[],
  batchSize: number,
): Promise<LoopResult> {
  const started = performance.now();
  const result: LoopResult = { documents: 0, failed: 0, chunks: 0, ms: 0, readMs: 0, parseMs: 0, chunkMs: 0, stageMs: 0, embedMs: 0, storeMs: 0 };
  const parseSettings = parseSettingsOf(deps.config);
  const call: LlmCall = { tenantId: into.tenantId, projectId: into.projectId, mode: 'job' };
  for (let i = 0; i < documents.length; i += batchSize) {
    let at = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = now - at;
      at = now;
      return ms;
    };
    const opened: Opened[] = [];
    const parsed: Array<{ doc: Omit<Opened, 'chunks' | 'tokenCount'>; text: string }> = [];
    // Opened as the job's fetching step opens them: the batch's rows in one statement.
    const known: Array<{ doc: LoopDocument; identity: DocumentIdentity }> = [];
    for (const doc of documents.slice(i, i + batchSize)) {
      const format = formatOf(doc.name);
      if (format === null) {
        result.failed += 1;
        continue;
      }
      const contentSha256 = createHash('sha256').update(doc.bytes).digest('hex');
      known.push({ doc, identity: { ...into, sourceKey: doc.name, sourceType: 'file', origin: 'files', title: doc.name, format, bytes: doc.bytes.length, contentSha256, jobId: null } });
    }
    const opens = await openDocuments(deps.sequelize, known.map((k) => k.identity));
    for (const [k, { doc, identity }] of known.entries()) {
      const open = opens[k];
      if (!open || open.unchanged) continue;
      try {
        const { text, title } = await parseDocumentStep(parseSettings, { bytes: doc.bytes, format: identity.format, name: doc.name });
        parsed.push({ doc: { identity: { ...identity, title: title ?? doc.name }, documentId: open.documentId }, text });
      } catch (err) {
        if (!(err instanceof DocumentParseError)) throw err;
        result.failed += 1;
      }
    }
    result.parseMs += lap();
    for (const { doc, text } of parsed) {
      const chunks = chunkDocumentStep(deps.config, text);
      const version = { tenantId: into.tenantId, projectId: into.projectId, documentId: doc.documentId, contentSha256: doc.identity.contentSha256, chunks };
      opened.push({ ...doc, chunks: version, tokenCount: chunks.reduce((n, c) => n + c.tokens, 0) });
    }
    result.chunkMs += lap();
    await stageChunks(deps.sequelize, opened.map((o) => o.chunks));
    result.stageMs += lap();
    const { vectors, collection } = await embedChunkTexts(deps, call, opened.flatMap((o) => o.chunks.chunks));
    result.embedMs += lap();
    let next = 0;
    await storeVectors(
      deps.vectors,
      collection,
      opened.map((o) => ({ version: o.chunks, points: o.chunks.chunks.map((c) => ({ chunkIndex: c.index, vector: vectors[next++] ?? [] })) })),
    );
    const replaced = await publishVersions(
      deps.sequelize,
      opened.map((o) => ({ identity: o.identity, documentId: o.documentId, chunkCount: o.chunks.chunks.length, tokenCount: o.tokenCount, collection })),
    );
    for (const o of opened) {
      const version = replaced.get(o.documentId);
      if (version) await removeReplacedVersion(deps, into.tenantId, o.documentId, version, { contentSha256: o.identity.contentSha256, collection });
    }
    result.storeMs += lap();
    result.documents += opened.length;
    result.chunks += vectors.length;
  }
  result.ms = performance.now() - started;
  return result;
}

/**
 * The loop over the supported entries of a ZIP file, read out of it first as an ingestion job's
 * planning does (extracted with the same limits, in the same order, entries we cannot parse left
 * out): the ingestion benchmark's baseline starts where the job starts, from the uploaded archive.
 */
export async function ingestZipInProcess(
  deps: IngestionLlmDeps,
  into: { tenantId: string; projectId: string },
  archive: string,
  limits: ZipLimits,
  batchSize: number,
): Promise<LoopResult> {
  const started = performance.now();
  const dir = await mkdtemp(path.join(tmpdir(), 'auditflow-ingest-loop-'));
  try {
    await extractZip(archive, dir, limits);
    const names = (await readdir(dir, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
      .filter((name) => formatOf(name) !== null)
      .sort();
    const documents: LoopDocument[] = [];
    for (const name of names) documents.push({ name, bytes: await readFile(path.join(dir, name)) });
    const readMs = performance.now() - started;
    const result = await ingestInProcess(deps, into, documents, batchSize);
    return { ...result, readMs, ms: performance.now() - started };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
