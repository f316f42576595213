import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { formatOf } from '../../lib/documents/formats';
import { DocumentParseError } from '../../lib/documents/parse';
import type { LlmCall } from '../../services/llm';
import {
  chunkDocumentStep,
  embedChunkTexts,
  openDocument,
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
  /** Time per step, summed: open and parse, chunk, stage, embed, store and publish. */
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
  const result: LoopResult = { documents: 0, failed: 0, chunks: 0, ms: 0, parseMs: 0, chunkMs: 0, stageMs: 0, embedMs: 0, storeMs: 0 };
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
    for (const doc of documents.slice(i, i + batchSize)) {
      const format = formatOf(doc.name);
      if (format === null) {
        result.failed += 1;
        continue;
      }
      const contentSha256 = createHash('sha256').update(doc.bytes).digest('hex');
      const base = { ...into, sourceKey: doc.name, sourceType: 'file' as const, origin: 'files', format, bytes: doc.bytes.length, contentSha256, jobId: null };
      const open = await openDocument(deps.sequelize, { ...base, title: doc.name });
      if (open.unchanged) continue;
      try {
        const { text, title } = await parseDocumentStep(parseSettings, { bytes: doc.bytes, format, name: doc.name });
        parsed.push({ doc: { identity: { ...base, title: title ?? doc.name }, documentId: open.documentId }, text });
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
