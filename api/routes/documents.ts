import { z } from 'zod';
import { documentSourceTypes, documentStatuses, type Document, type DocumentChunk } from '../../db';
import { deleteDocument, getDocument, listProjectDocuments } from '../../services/documents/documents';
import { documentUploadLimit, startIngestion, type IngestionSource } from '../../services/documents/ingestion';
import type { AppDeps } from '../app';
import { acceptedJob, idempotencyOf, jobSchema, requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { idParams, noContent, page, pageQuery, timestamp } from '../schemas';

const ingestMode = z
  .enum(['add', 'sync'])
  .default('add')
  .describe('sync: also remove the project’s documents from the same source (this URL list, this archive, loose files, text) that the request no longer names');

const listQuery = pageQuery.extend({
  status: z.enum(documentStatuses).optional(),
  format: z.string().min(1).max(20).optional().describe('text, markdown, html, pdf, docx or source'),
  sourceType: z.enum(documentSourceTypes).optional(),
  origin: z.string().min(1).max(2048).optional().describe('The source a sync compares against, as documents show it'),
  sourceKeyPrefix: z.string().min(1).max(2048).optional().describe('Documents whose source key starts with this (taken literally)'),
  q: z.string().trim().min(1).max(200).optional().describe('Documents whose title or source key contains this, ignoring case'),
});
const chunkPageQuery = z.object({
  chunkOffset: z.coerce.number().int().min(0).default(0).describe('The index of the first chunk to include'),
  chunkLimit: z.coerce.number().int().min(1).max(1000).default(100).describe('How many chunks to include at most'),
});

const documentSummary = z.object({
  id: z.uuid(),
  projectId: z.uuid(),
  title: z.string(),
  sourceKey: z.string().describe('The document’s identity within the project: a path within the upload, a URL, or a title'),
  sourceType: z.enum(documentSourceTypes),
  origin: z.string().describe('The source a sync compares against (the URL list, an archive, loose files, text)'),
  format: z.string(),
  bytes: z.number().int(),
  contentSha256: z.string().nullable().describe('Of the stored version’s raw bytes; null until one is stored'),
  status: z.enum(documentStatuses),
  error: z.string().nullable(),
  chunkCount: z.number().int(),
  tokenCount: z.number().int(),
  embedding: z.object({ model: z.string(), dimensions: z.number().int() }).nullable().describe('The embedding model and dimension of its vectors'),
  lastJobId: z.uuid().nullable(),
  createdAt: timestamp,
  updatedAt: timestamp,
});
const documentDetail = documentSummary.extend({
  chunks: z
    .array(
      z.object({
        id: z.uuid(),
        index: z.number().int(),
        headingPath: z.array(z.string()),
        start: z.number().int().describe('Offset of the first character in the document’s text'),
        end: z.number().int(),
        tokens: z.number().int(),
        text: z.string(),
      }),
    )
    .describe('The stored version’s chunks from `chunkOffset`, in order; `chunkCount` says how many there are'),
});

const documentView = (d: Document) => ({
  id: d.id,
  projectId: d.projectId,
  title: d.title,
  sourceKey: d.sourceKey,
  sourceType: d.sourceType,
  origin: d.origin,
  format: d.format,
  bytes: d.bytes,
  contentSha256: d.contentSha256,
  status: d.status,
  error: d.error,
  chunkCount: d.chunkCount,
  tokenCount: d.tokenCount,
  embedding: d.embeddingModel !== null && d.embeddingDimensions !== null ? { model: d.embeddingModel, dimensions: d.embeddingDimensions } : null,
  lastJobId: d.lastJobId,
  createdAt: d.createdAt.toISOString(),
  updatedAt: d.updatedAt.toISOString(),
});

const chunkView = (c: DocumentChunk) => ({ id: c.id, index: c.chunkIndex, headingPath: c.headingPath, start: c.startOffset, end: c.endOffset, tokens: c.tokens, text: c.text });

export function documentsRouter(deps: AppDeps): ApiRouter {
  const tag = 'documents';
  const maxDocuments = deps.config.INGEST_MAX_DOCUMENTS;
  const urlsBody = z
    .object({
      // Only the length here: what is wrong with a URL is the source check's to say (422 unsafe-document-url, with a code).
      urls: z.array(z.string().min(1).max(2048)).min(1).max(maxDocuments).describe('http(s) URLs of documents; their hosts must be allowlisted (INGEST_ALLOWED_HOSTS)'),
      mode: ingestMode,
    })
    .strict();
  const textBody = z
    .object({
      title: z.string().trim().min(1).max(500).describe('The document’s title, and its identity within the project'),
      text: z.string().min(1).describe('The document’s text (Markdown headings are kept)'),
      mode: ingestMode,
    })
    .strict();
  return new ApiRouter().add(
    {
      method: 'post',
      path: '/projects/:id/documents',
      operationId: 'ingestDocuments',
      summary:
        'Ingest documents into the project’s knowledge base, as a job: uploaded files (text, Markdown, HTML, PDF, DOCX, source; or ZIPs of them), URLs, or a text. Unsupported files answer 415 naming the file, oversized ones 413, refused URLs 422 before anything connects; 409 while another ingestion of the project is queued or running',
      tag,
      access: 'projects:write',
      params: idParams,
      body: z.union([urlsBody, textBody]),
      upload: {
        field: 'files',
        description: 'Documents, or ZIP archives of documents (each entry’s path is its identity). A document may hold INGEST_MAX_DOCUMENT_BYTES.',
        maxBytes: deps.config.UPLOAD_MAX_BYTES,
        maxFiles: maxDocuments,
        fileLimit: (part: { fileName: string; mediaType: string }) => documentUploadLimit(deps.config, part),
        fields: z.object({ mode: ingestMode }),
      },
      idempotent: true,
      responses: { 202: { description: 'The ingestion job', schema: jobSchema } },
    },
    async (ctx, { params, body, upload, auth }) => {
      const source: IngestionSource = upload ? { kind: 'files', files: upload.files } : 'urls' in body ? { kind: 'urls', urls: body.urls } : { kind: 'text', title: body.title, text: body.text };
      const mode = upload ? upload.fields.mode : body.mode;
      const request = upload ? { params, mode, files: upload.files.map((f) => [f.fileName, f.sha256]) } : { params, body };
      const { job } = await startIngestion(deps, ctx.state.audit, {
        tenantId: auth.tenantId,
        projectId: params.id,
        requestedBy: requesterOf(ctx),
        mode,
        source,
        idempotency: idempotencyOf(ctx, request),
      });
      acceptedJob(ctx, job);
    },
  )
    .add(
      {
        method: 'get',
        path: '/projects/:id/documents',
        operationId: 'listProjectDocuments',
        summary: 'A project’s documents, oldest first, filtered by status, format, source type, origin, source-key prefix or a text in the title or source key',
        tag,
        access: 'projects:read',
        params: idParams,
        query: listQuery,
        responses: { 200: { description: 'A page of documents', schema: page(documentSummary) } },
      },
      async (ctx, { params, query, auth }) => {
        const result = await listProjectDocuments(auth.tenantId, params.id, query);
        ctx.body = { items: result.items.map(documentView), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'get',
        path: '/documents/:id',
        operationId: 'getDocument',
        summary: 'A document: status, source, error, embedding model, and its chunks (index, heading path, offsets, tokens, text), a page at a time',
        tag,
        access: 'projects:read',
        params: idParams,
        query: chunkPageQuery,
        responses: { 200: { description: 'The document', schema: documentDetail } },
      },
      async (ctx, { params, query, auth }) => {
        const { document, chunks } = await getDocument(auth.tenantId, params.id, { offset: query.chunkOffset, limit: query.chunkLimit });
        ctx.body = { ...documentView(document), chunks: chunks.map(chunkView) };
      },
    )
    .add(
      {
        method: 'delete',
        path: '/documents/:id',
        operationId: 'deleteDocument',
        summary: 'Delete a document with its chunks and vectors (audited)',
        tag,
        access: 'projects:write',
        params: idParams,
        responses: { 204: noContent },
      },
      async (ctx, { params, auth }) => {
        await deleteDocument(deps, ctx.state.audit, auth.tenantId, params.id);
        ctx.status = 204;
      },
    );
}
