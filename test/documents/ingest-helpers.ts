import { QueryTypes } from 'sequelize';
import { Document, JobEvent } from '../../db';
import type { VectorCollection } from '../../lib/vector-store';
import type { TestApp, TestResponse } from '../harness';
import { responseValidator } from '../harness/openapi-validator';

/** Helpers of the ingestion suites: uploads through the API, and what a project's documents hold in Postgres and the vector store. */

export interface UploadPart {
  name: string;
  content: Buffer | string;
  /** The part's media type; by default what a browser sends for an unknown file. */
  type?: string;
}

/** POST /projects/:id/documents as multipart, its answer checked against the OpenAPI document like the harness's calls. */
export async function uploadDocuments(t: TestApp, token: string, projectId: string, parts: UploadPart[], fields: Record<string, string> = {}, headers: Record<string, string> = {}): Promise<TestResponse> {
  const url = `/api/v1/projects/${projectId}/documents`;
  let req = t.raw().post(url).set('Authorization', `Bearer ${token}`).set(headers);
  for (const [name, value] of Object.entries(fields)) req = req.field(name, value);
  for (const p of parts) req = req.attach('files', Buffer.isBuffer(p.content) ? p.content : Buffer.from(p.content), { filename: p.name, contentType: p.type ?? 'application/octet-stream' });
  const res = await req;
  responseValidator(t.openapi)('post', url, res.status, String(res.headers['content-type'] ?? ''), res.body);
  return { status: res.status, body: res.body, headers: res.headers, text: res.text };
}

/** The data of a job's terminal event: for an ingestion, its failed documents with their errors and what a sync removed. */
export async function finalEventData(jobId: string): Promise<Record<string, unknown>> {
  const event = await JobEvent.findOne({ where: { jobId, dedupeKey: 'terminal' }, rejectOnEmpty: true });
  return event.data;
}

/** The stages of a job's progress events, in order, each once. */
export async function progressStages(jobId: string): Promise<string[]> {
  const events = await JobEvent.findAll({ where: { jobId, type: 'progress' }, order: [['seq', 'ASC']] });
  const stages: string[] = [];
  for (const e of events) {
    const stage = String(e.data.stage);
    if (stages.at(-1) !== stage) stages.push(stage);
  }
  return stages;
}

export interface StoredDocument {
  sourceKey: string;
  origin: string;
  status: string;
  chunkCount: number;
  /** Chunk rows of the live version. */
  liveChunks: number;
  /** Chunk rows of any version. */
  allChunks: number;
  /** Points of the document in the collection its row names. */
  vectors: number;
}

/** What each document of a project holds, by source key: its row, its chunk rows, its vectors. */
export async function storedDocuments(t: TestApp, tenantId: string, projectId: string): Promise<Record<string, StoredDocument>> {
  const documents = await Document.findAll({ where: { projectId }, order: [['sourceKey', 'ASC']] });
  const result: Record<string, StoredDocument> = {};
  for (const d of documents) {
    const [counts] = await t.sequelize.query<{ live: number; all: number }>(
      'SELECT count(*) FILTER (WHERE content_sha256 = :hash)::int AS live, count(*)::int AS all FROM document_chunks WHERE document_id = :id',
      { replacements: { id: d.id, hash: d.contentSha256 ?? '' }, type: QueryTypes.SELECT },
    );
    const collection: VectorCollection | null = d.embeddingModel && d.embeddingDimensions ? { model: d.embeddingModel, dimensions: d.embeddingDimensions } : null;
    result[d.sourceKey] = {
      sourceKey: d.sourceKey,
      origin: d.origin,
      status: d.status,
      chunkCount: d.chunkCount,
      liveChunks: counts?.live ?? 0,
      allChunks: counts?.all ?? 0,
      vectors: collection ? await t.vectors.count(collection, { tenantId, documentIds: [d.id] }) : 0,
    };
  }
  return result;
}
