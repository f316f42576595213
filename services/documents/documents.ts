import { col, fn, Op, where, type WhereOptions } from 'sequelize';
import { Document, DocumentChunk, Project, type DocumentSourceType, type DocumentStatus } from '../../db';
import { NotFoundError } from '../../lib/errors';
import type { AuditScope } from '../audit';
import { pageByKeyset, type KeysetOrder, type Page, type PageRequest } from '../pagination';
import { getProject } from '../projects';
import { removeDocuments, type DocumentRemovalDeps } from './removal';

/**
 * Reading and deleting the documents of a project's knowledge base (issue 7, criterion 9).
 * Ingestion (services/documents/pipeline) writes them; a document of another tenant, or of a
 * project being deleted, is not found.
 */

export interface DocumentFilter {
  status?: DocumentStatus;
  format?: string;
  sourceType?: DocumentSourceType;
  /** The source a sync compares against (the URL list, an archive, loose files, text). */
  origin?: string;
  /** Documents whose source key starts with this, taken literally. */
  sourceKeyPrefix?: string;
  /** Documents whose title or source key contains this, ignoring case. */
  q?: string;
}

export type DocumentListRequest = DocumentFilter & PageRequest;

/** Where `column` contains `text`, ignoring case (`strpos`, so `%` and `_` are no wildcards). */
const containsIgnoringCase = (column: string, text: string) => where(fn('strpos', fn('lower', col(column)), text.toLowerCase()), { [Op.gt]: 0 });

function conditionsOf(filter: DocumentFilter): WhereOptions<Document>[] {
  const conditions: WhereOptions<Document>[] = [];
  if (filter.status !== undefined) conditions.push({ status: filter.status });
  if (filter.format !== undefined) conditions.push({ format: filter.format });
  if (filter.sourceType !== undefined) conditions.push({ sourceType: filter.sourceType });
  if (filter.origin !== undefined) conditions.push({ origin: filter.origin });
  if (filter.sourceKeyPrefix !== undefined) conditions.push(where(fn('starts_with', col('source_key'), filter.sourceKeyPrefix), true));
  if (filter.q !== undefined) conditions.push({ [Op.or]: [containsIgnoringCase('title', filter.q), containsIgnoringCase('source_key', filter.q)] });
  return conditions;
}

/**
 * Oldest first. Ingestion stamps documents with Postgres's clock (microseconds); the key is cut to
 * the milliseconds a cursor can carry, so a page never starts again inside the previous one.
 */
const creationOrder: KeysetOrder = { name: 'created', expression: "date_trunc('milliseconds', created_at)", direction: 'ASC', valueType: 'timestamp' };

/** A page of a project's documents, oldest first, filtered. */
export async function listProjectDocuments(tenantId: string, projectId: string, request: DocumentListRequest): Promise<Page<Document>> {
  const project = await getProject(tenantId, projectId);
  return pageByKeyset(Document, { [Op.and]: [{ tenantId, projectId: project.id }, ...conditionsOf(request)] }, creationOrder, request);
}

/** A document of the tenant whose project is not being deleted. */
async function visibleDocument(tenantId: string, id: string): Promise<Document> {
  const document = await Document.findOne({ where: { id, tenantId }, include: [{ model: Project, attributes: [], where: { deletionJobId: null }, required: true }] });
  if (!document) throw new NotFoundError('Document');
  return document;
}

/** Which of a document's live chunks to read: chunk indexes are dense (0 … chunkCount − 1), so an offset pages them. */
export interface ChunkRange {
  offset: number;
  limit: number;
}

export interface DocumentWithChunks {
  document: Document;
  /** Live chunks (of the stored version) in `range`, in document order. */
  chunks: DocumentChunk[];
}

export async function getDocument(tenantId: string, id: string, range: ChunkRange): Promise<DocumentWithChunks> {
  const document = await visibleDocument(tenantId, id);
  const chunks =
    document.contentSha256 === null
      ? []
      : await DocumentChunk.findAll({
          where: { documentId: document.id, contentSha256: document.contentSha256, chunkIndex: { [Op.gte]: range.offset } },
          order: [['chunkIndex', 'ASC']],
          limit: range.limit,
        });
  return { document, chunks };
}

/**
 * Deletes a document: its vectors, then its row and chunks (removeDocuments), then the audit row
 * (`document.delete`). The deletion spans the vector store and Postgres, so no one transaction
 * covers it: the audit row is written once both are gone; a failure before that answers an error,
 * which the request's own audit row records, and deleting again removes what is left.
 */
export async function deleteDocument(deps: DocumentRemovalDeps, audit: AuditScope, tenantId: string, id: string): Promise<void> {
  const document = await visibleDocument(tenantId, id);
  await removeDocuments(deps, tenantId, [document.id]);
  await audit.record({
    action: 'document.delete',
    resourceType: 'document',
    resourceId: document.id,
    details: { projectId: document.projectId, sourceKey: document.sourceKey, chunkCount: document.chunkCount },
  });
}
