import { createHash } from 'node:crypto';

/**
 * The ids of a document's chunks (issue 7, criterion 5): a chunk's id is also its vector's id,
 * a name-based UUID (v5, RFC 9562) of the document id, the content hash of the version it
 * belongs to and its index. Every retry, and every worker, computes the same ids, so a repeated
 * write replaces a row or a point instead of adding one.
 */

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** UUID v5 of `name` in the namespace `namespace` (a UUID): SHA-1 of both, with version and variant bits set. */
export function uuidV5(namespace: string, name: string): string {
  if (!UUID_PATTERN.test(namespace)) throw new RangeError(`uuidV5 needs a UUID namespace, got ${JSON.stringify(namespace)}`);
  const digest = createHash('sha1').update(Buffer.from(namespace.replaceAll('-', ''), 'hex')).update(name, 'utf8').digest();
  const bytes = digest.subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The id of chunk `chunkIndex` of the version `contentSha256` of document `documentId` (and of its vector). */
export function chunkId(documentId: string, contentSha256: string, chunkIndex: number): string {
  return uuidV5(documentId, `${contentSha256}:${chunkIndex}`);
}
