import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
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
/** Trees being fetched, named `<prefix><scan id>-<random>` beside the finished ones. */
const PARTIAL_PREFIX = '.partial-';

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

/** Fetches in progress in this process, by scan: the batches a restarted worker runs at once share one. */
const fetching = new Map<string, Promise<ReadyMarker>>();

/**
 * The scan's tree, fetching it when this worker does not have it yet. A repository is fetched at
 * the commit the scan pinned on its first fetch (a later push cannot change a running scan).
 * `context` names the job and activity for the vault's access log when a token is resolved.
 */
export async function ensureWorkspace(deps: WorkspaceDeps, scan: Scan, context: { jobId?: string; activity?: string }, signal?: AbortSignal): Promise<FetchedTree> {
  const dir = workspaceDir(deps.config, scan.id);
  let ready = await readyMarker(dir);
  if (!ready) {
    let pending = fetching.get(scan.id);
    if (!pending) {
      pending = fetchWorkspace(deps, scan, dir, context, signal).finally(() => fetching.delete(scan.id));
      fetching.set(scan.id, pending);
    }
    ready = await pending;
  }
  return opened(dir, ready.commit);
}

/**
 * Fetches or extracts the tree into a directory of its own, then moves it into place in one
 * rename: a tree at `dir` is always whole, and a fetch by another process (sharing the data
 * directory) never removes one being read — whichever lands first serves both.
 */
async function fetchWorkspace(deps: WorkspaceDeps, scan: Scan, dir: string, context: { jobId?: string; activity?: string }, signal?: AbortSignal): Promise<ReadyMarker> {
  const workspaces = path.dirname(dir);
  await mkdir(workspaces, { recursive: true });
  // Only a worker of an earlier version left a tree without its marker (half-made): moved away first.
  if ((await stat(dir).catch(() => null)) !== null && (await readyMarker(dir)) === null) await discard(dir, scan.id);
  const partial = path.join(workspaces, `${PARTIAL_PREFIX}${scan.id}-${randomUUID()}`);
  try {
    await mkdir(partial);
    let commit: string | null = null;
    if (scan.source.type === 'zip') {
      const archive = path.join(partial, `archive-${randomUUID()}.zip`);
      await deps.blobs.getToFile(scan.source.blobKey, archive);
      await extractZip(
        archive,
        path.join(partial, 'tree'),
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
        dest: path.join(partial, 'repository'),
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
    await writeFile(path.join(partial, READY_MARKER), JSON.stringify(marker));
    try {
      await rename(partial, dir);
      return marker;
    } catch (err) {
      // Another process put its tree in place first: that one serves.
      const landed = await readyMarker(dir);
      if (landed === null) throw err;
      return landed;
    }
  } finally {
    // Gone already when it was moved into place.
    await rm(partial, { recursive: true, force: true });
  }
}

/**
 * Removes the scan's tree from this worker's disk (cleanup after the scan ends, whatever the
 * outcome), and any tree a worker that died while fetching left half-made.
 */
export async function removeWorkspace(config: Pick<Config, 'AUDITFLOW_DATA_DIR'>, scanId: string): Promise<void> {
  const workspaces = path.join(config.AUDITFLOW_DATA_DIR, 'workspaces');
  const partials = (await readdir(workspaces).catch(() => [] as string[])).filter((name) => name.startsWith(`${PARTIAL_PREFIX}${scanId}-`));
  for (const dir of [workspaceDir(config, scanId), ...partials.map((name) => path.join(workspaces, name))]) await discard(dir, scanId);
}

/**
 * Renames a tree away at once and deletes it with a detached `rm -rf`: deleting an upload's 50k
 * files takes seconds the scan's job should not wait for, and would swell this process.
 */
async function discard(dir: string, scanId: string): Promise<void> {
  const trash = path.join(path.dirname(dir), `.removing-${scanId}-${randomUUID()}`);
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
