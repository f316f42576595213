import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Scan } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import type { Config } from '../../lib/config';
import { fetchGitRepository } from '../../lib/git-fetch';
import { checkRemoteUrl } from '../../lib/net-guard';
import { extractZip } from '../../lib/zip-extract';
import { resolveSecret, type VaultDeps } from '../vault';
import { remoteOf } from './sources';

/**
 * A scan's working tree on the worker's disk: fetched or extracted once, then read by every
 * batch. A batch that lands on a worker without it (another machine, or a restart that lost its
 * disk) fetches it again — the same commit, or the same archive — so any worker can run any batch.
 */

export type WorkspaceConfig = Pick<
  Config,
  | 'AUDITFLOW_DATA_DIR'
  | 'SCAN_ALLOWED_HOSTS'
  | 'SCAN_FILE_ROOTS'
  | 'SCAN_FETCH_TIMEOUT_SECONDS'
  | 'SCAN_MAX_REPOSITORY_BYTES'
  | 'ZIP_MAX_ENTRIES'
  | 'ZIP_MAX_INFLATED_BYTES'
  | 'ZIP_MAX_COMPRESSION_RATIO'
>;

export interface WorkspaceDeps extends VaultDeps {
  config: VaultDeps['config'] & WorkspaceConfig;
  blobs: BlobStore;
}

const READY_MARKER = '.auditflow-ready';

export const workspaceDir = (config: Pick<Config, 'AUDITFLOW_DATA_DIR'>, scanId: string) => path.join(config.AUDITFLOW_DATA_DIR, 'workspaces', scanId);

/** What fetching found: the commit of a repository, or the digest of an archive. */
export interface FetchedTree {
  root: string;
  commitSha: string | null;
}

async function exists(file: string): Promise<boolean> {
  return (await stat(file).catch(() => null)) !== null;
}

/**
 * The scan's tree, fetching it when this worker does not have it yet. A repository is fetched at
 * the commit the scan pinned on its first fetch (a later push cannot change a running scan).
 * `context` names the job and activity for the vault's access log when a token is resolved.
 */
export async function ensureWorkspace(deps: WorkspaceDeps, scan: Scan, context: { jobId?: string; activity?: string }, signal?: AbortSignal): Promise<FetchedTree> {
  const dir = workspaceDir(deps.config, scan.id);
  const root = path.join(dir, 'tree');
  if (await exists(path.join(dir, READY_MARKER))) return { root, commitSha: scan.commitSha };
  // A half-made tree (a worker died while fetching) is started over, in a fresh directory.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  let commitSha: string | null = null;
  if (scan.source.type === 'zip') {
    const archive = path.join(dir, `archive-${randomUUID()}.zip`);
    await deps.blobs.getToFile(scan.source.blobKey, archive);
    await extractZip(
      archive,
      root,
      { maxEntries: deps.config.ZIP_MAX_ENTRIES, maxInflatedBytes: deps.config.ZIP_MAX_INFLATED_BYTES, maxCompressionRatio: deps.config.ZIP_MAX_COMPRESSION_RATIO },
      signal,
    );
    await rm(archive, { force: true });
  } else {
    const remote = await remoteOf(scan.projectId, scan.source);
    // Checked again here, not only at the API: DNS may have changed since, and this is where we connect.
    const checked = await checkRemoteUrl(remote.url, { allowedHosts: deps.config.SCAN_ALLOWED_HOSTS, fileRoots: deps.config.SCAN_FILE_ROOTS });
    const token = remote.tokenReference
      ? await resolveSecret(deps, remote.tokenReference, { tenantId: scan.tenantId, jobId: context.jobId, activity: context.activity })
      : undefined;
    const fetched = await fetchGitRepository(checked, {
      ref: scan.commitSha ?? scan.source.ref,
      dest: root,
      token,
      tokenScheme: remote.tokenScheme,
      timeoutMs: deps.config.SCAN_FETCH_TIMEOUT_SECONDS * 1000,
      maxBytes: deps.config.SCAN_MAX_REPOSITORY_BYTES,
      signal,
    });
    commitSha = fetched.commit;
  }
  await writeFile(path.join(dir, READY_MARKER), new Date().toISOString());
  return { root, commitSha: commitSha ?? scan.commitSha };
}

/**
 * Removes the scan's tree from this worker's disk (cleanup after the scan ends, whatever the
 * outcome). The directory is renamed away at once and deleted by a detached `rm -rf`: deleting
 * 50k files takes seconds the scan's job should not wait for, and would swell this process.
 */
export async function removeWorkspace(config: Pick<Config, 'AUDITFLOW_DATA_DIR'>, scanId: string): Promise<void> {
  const dir = workspaceDir(config, scanId);
  const trash = path.join(config.AUDITFLOW_DATA_DIR, 'workspaces', `.removing-${scanId}-${randomUUID()}`);
  try {
    await rename(dir, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const rmTree = spawn('rm', ['-rf', '--', trash], { detached: true, stdio: 'ignore' });
  // Without rm (not a POSIX system), delete in-process.
  rmTree.on('error', () => void rm(trash, { recursive: true, force: true }));
  rmTree.unref();
}
