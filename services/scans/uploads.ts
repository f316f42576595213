import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Job, ScanSource } from '../../db';
import type { Config } from '../../lib/config';
import { inspectZip } from '../../lib/zip-extract';
import type { AuditScope } from '../audit';
import { getProject } from '../projects';
import { startScan, type ScanRequest, type StartScanDeps } from './index';

/**
 * Scans of an uploaded ZIP: the archive is checked at upload (its central directory: entry names
 * and types, declared sizes, counts, ratio), so a hostile or oversized one is refused with a clear
 * answer before it is stored; then it goes to the blob store, and the scan carries only its key.
 */

export type UploadScanDeps = StartScanDeps & {
  config: StartScanDeps['config'] & Pick<Config, 'ZIP_MAX_ENTRIES' | 'ZIP_MAX_INFLATED_BYTES' | 'ZIP_MAX_COMPRESSION_RATIO'>;
};

/** An uploaded archive, still in the temporary file the API received it into. */
export interface UploadedArchive {
  path: string;
  /** The client's file name: a label for people, never a path. */
  fileName: string;
}

export type UploadScanRequest = Omit<ScanRequest, 'source' | 'tuning' | 'retryOf'> & { archive: UploadedArchive };

/** Where a project's uploads live in the blob store; project deletion removes the prefix. */
export const uploadKeyOf = (projectId: string) => `projects/${projectId}/uploads/${randomUUID()}.zip`;

/**
 * Checks the archive, stores it and starts its scan. The stored blob is deleted again when no new
 * scan holds it: the start failed (a scan already running, the project gone) or the request was
 * an idempotent replay (the earlier scan has its own). ZIP problems throw `ArchiveRejectedError`.
 */
export async function startScanOfUpload(deps: UploadScanDeps, audit: AuditScope, request: UploadScanRequest): Promise<{ job: Job; replayed: boolean }> {
  // Not found answers before any work on the archive, and nothing is stored under another tenant's project.
  await getProject(request.tenantId, request.projectId);
  await inspectZip(request.archive.path, {
    maxEntries: deps.config.ZIP_MAX_ENTRIES,
    maxInflatedBytes: deps.config.ZIP_MAX_INFLATED_BYTES,
    maxCompressionRatio: deps.config.ZIP_MAX_COMPRESSION_RATIO,
  });
  const stored = await deps.blobs.put(uploadKeyOf(request.projectId), createReadStream(request.archive.path), { contentType: 'application/zip' });
  const source: ScanSource = { type: 'zip', blobKey: stored.key, fileName: request.archive.fileName, sha256: stored.sha256, bytes: stored.bytes };
  let started: { job: Job; replayed: boolean };
  try {
    const { tenantId, projectId, requestedBy, mode, idempotency } = request;
    started = await startScan(deps, audit, { tenantId, projectId, requestedBy, mode, idempotency, source });
  } catch (err) {
    // Should this delete fail too, the blob stays under the project's prefix until the project is deleted.
    await deps.blobs.delete(stored.key).catch(() => undefined);
    throw err;
  }
  if (started.replayed) await deps.blobs.delete(stored.key);
  return started;
}
