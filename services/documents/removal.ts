import { Op, type Sequelize } from 'sequelize';
import { Document } from '../../db';
import type { VectorStore } from '../../lib/vector-store';

/** What removing documents needs: their rows, and the store holding their vectors. */
export interface DocumentRemovalDeps {
  sequelize: Sequelize;
  vectors: VectorStore;
}

/**
 * Removes documents of the tenant: their vectors first (from the collection each document's
 * chunks were stored in), then the rows (chunks go by cascade). Safe to run again: a retry after
 * a crash between the two finds the rows and deletes the (already absent) vectors once more.
 * Returns how many document rows were deleted.
 */
export async function removeDocuments(deps: DocumentRemovalDeps, tenantId: string, documentIds: readonly string[]): Promise<number> {
  if (documentIds.length === 0) return 0;
  const documents = await Document.findAll({
    attributes: ['id', 'embeddingModel', 'embeddingDimensions'],
    where: { tenantId, id: { [Op.in]: [...documentIds] } },
  });
  for (const d of documents) {
    if (d.embeddingModel !== null && d.embeddingDimensions !== null) {
      await deps.vectors.deleteByDocument({ model: d.embeddingModel, dimensions: d.embeddingDimensions }, { tenantId, documentId: d.id });
    }
  }
  return Document.destroy({ where: { tenantId, id: { [Op.in]: documents.map((d) => d.id) } } });
}
