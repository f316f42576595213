import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Scan } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import type { Config } from '../../lib/config';
import { fetchGitRepository } from '../../lib/git-fetch';
import { gitTree } from '../../lib/git-tree';
import { checkRemoteUrl } from '../../lib/net-guard';
import { directoryTree, type SourceTree } from '../../lib/source-tree';
import { extractZip } from '../../lib/zip-extract';
import { resolveSecret, type VaultDeps } from '../vault';
import { remoteOf } from './sources';

/**
 * A scan's tree on the worker's disk, fetched once and read by every batch: a repository as a
 * bare clone (read from its object store, never checked out), an upload as extracted files. A
 * batch that lands on a worker without it (another machine, or a restart that lost its disk)
 * fetches it again — the same commit, or the same archive — so any worker can run any batch.
 */

export type WorkspaceConfig = Pick<
  Config,
  | 'AUDITFLOW_DATA_DIR'
  | 'SCAN_ALLOWED_HOSTS'
  | 'SCAN_FILE_ROOTS'
  | 'SCAN_FETCH_TIMEOUT_SECONDS'
  | 'SCAN_MAX_REPOSITORY_BYTES'
  | 'SCAN_MAX_TREE_ENTRIES'
  | 'ZIP_MAX_ENTRIES'
  | 'ZIP_MAX_INFLATED_BYTES'
  | 'ZIP_MAX_COMPRESSION_RATIO'
>;

export interface WorkspaceDeps extends VaultDeps {
  config: VaultDeps['config'] & WorkspaceConfig;
  blobs: BlobStore;
}

/** Written once the tree is complete: when, and the commit fetched (a scan records it only after selecting). */
export const READY_MARKER = '.auditflow-ready';

export const workspaceDir = (config: Pick<Config, 'AUDITFLOW_DATA_DIR'>, scanId: string) => path.join(config.AUDITFLOW_DATA_DIR, 'workspaces', scanId);

/** The scan's files, and the commit they are of (null for an archive). Close the tree when done with it. */
export interface FetchedTree {
  tree: SourceTree;
  commitSha: string | null;
}

interface ReadyMarker {
  readyAt: string;
  commit: string | null;
}

async function readyMarker(dir: string): Promise<ReadyMarker | null> {
  try {
    return JSON.parse(await readFile(path.join(dir, READY_MARKER), 'utf8')) as ReadyMarker;
  } catch {
    return null;
  }
}

const opened = (dir: string, commit: string | null): FetchedTree => ({
  tree: commit === null ? directoryTree(path.join(dir, 'tree')) : gitTree(path.join(dir, 'repository'), commit),
  commitSha: commit,
});

/**
 * The scan's tree, fetching it when this worker does not have it yet. A repository is fetched at
 * the commit the scan pinned on its first fetch (a later push cannot change a running scan).
 * `context` names the job and activity for the vault's access log when a token is resolved.
 */
export async function ensureWorkspace(deps: WorkspaceDeps, scan: Scan, context: { jobId?: string; activity?: string }, signal?: AbortSignal): Promise<FetchedTree> {
  const dir = workspaceDir(deps.config, scan.id);
  const ready = await readyMarker(dir);
  if (ready) return opened(dir, ready.commit);
  // A half-made tree (a worker died while fetching) is started over, in a fresh directory.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  let commit: string | null = null;
  if (scan.source.type === 'zip') {
    const archive = path.join(dir, `archive-${randomUUID()}.zip`);
    await deps.blobs.getToFile(scan.source.blobKey, archive);
    await extractZip(
      archive,
      path.join(dir, 'tree'),
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
      dest: path.join(dir, 'repository'),
      token,
      tokenScheme: remote.tokenScheme,
      timeoutMs: deps.config.SCAN_FETCH_TIMEOUT_SECONDS * 1000,
      maxBytes: deps.config.SCAN_MAX_REPOSITORY_BYTES,
      maxEntries: deps.config.SCAN_MAX_TREE_ENTRIES,
      signal,
    });
    commit = fetched.commit;
  }
  const marker: ReadyMarker = { readyAt: new Date().toISOString(), commit };
  await writeFile(path.join(dir, READY_MARKER), JSON.stringify(marker));
  return opened(dir, commit);
}

/**
 * Removes the scan's tree from this worker's disk (cleanup after the scan ends, whatever the
 * outcome). The directory is renamed away at once and deleted by a detached `rm -rf`: deleting
 * an upload's 50k files takes seconds the scan's job should not wait for, and would swell this process.
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
