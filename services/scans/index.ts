import { randomUUID } from 'node:crypto';
import { Op } from 'sequelize';
import { Project, Scan, type Job, type ScanSource } from '../../db';
import type { BlobStore } from '../../lib/blob-store';
import type { Config } from '../../lib/config';
import { ConflictError, NotFoundError } from '../../lib/errors';
import { checkRemoteUrl } from '../../lib/net-guard';
import type { ScanParams } from '../../workflows/definitions';
import type { AuditScope } from '../audit';
import { startJob, type Idempotency } from '../jobs';
import type { LlmJobsDeps } from '../llm-checks';
import { pageInCreationOrder, type Page, type PageRequest } from '../pagination';
import { getProject, projectForNewJob } from '../projects';
import { hostedRepositoryUrl } from './sources';

export { analyzeScanBatch, abandonScan, finalizeScan, prepareScan, scanSettingsOf, type ScanDeps, type ScanPlan } from './pipeline';
export { planLlmReview, reviewScanBatchWithLlm, type LlmReviewDeps } from './llm-review';
export { hostedRepositoryUrl, repositoryPattern } from './sources';

/**
 * Starting and reading repository scans. A scan is a job (`scanRepository`) and a row in `scans`
 * that its workflow fills in: what was fetched (commit or archive digest), the files, the
 * findings by severity, warnings, timing.
 */

export type StartScanDeps = LlmJobsDeps & {
  blobs: BlobStore;
  config: Pick<Config, 'SCAN_ALLOWED_HOSTS' | 'SCAN_FILE_ROOTS'>;
};

export interface ScanRequest {
  tenantId: string;
  projectId: string;
  requestedBy: string;
  source: ScanSource;
  mode: 'full' | 'incremental';
  /** Tuning for tests and very large repositories; defaults suit most. */
  tuning?: Partial<Pick<ScanParams, 'batchSize' | 'parallelism' | 'batchesPerRun' | 'heartbeatTimeoutSeconds'>>;
  retryOf?: string;
  idempotency?: Idempotency;
}

/**
 * Each batch costs workflow tasks and activity round trips (Temporal server and worker time on
 * top of the analysis): 500 files a batch keeps that small, and a scan of up to 100k files runs
 * without continuing as new. The benchmark's baseline loop persists in batches of the same size.
 */
export const defaultScanTuning = { batchSize: 500, parallelism: 4, batchesPerRun: 200 };

export function describeSource(source: ScanSource): string {
  switch (source.type) {
    case 'git':
      return source.url;
    case 'zip':
      return source.fileName;
    default:
      return `${source.type}:${source.repo}`;
  }
}

/**
 * Refuses, before anything connects, a source the workers would refuse: a URL with credentials,
 * a scheme other than https/http/file, a host not allowlisted or resolving to a private address.
 */
export async function checkScanSource(config: Pick<Config, 'SCAN_ALLOWED_HOSTS' | 'SCAN_FILE_ROOTS'>, source: ScanSource): Promise<void> {
  if (source.type === 'zip') return;
  const url = source.type === 'git' ? source.url : hostedRepositoryUrl(source);
  await checkRemoteUrl(url, { allowedHosts: config.SCAN_ALLOWED_HOSTS, fileRoots: config.SCAN_FILE_ROOTS });
}

export async function startScan(deps: StartScanDeps, audit: AuditScope, request: ScanRequest): Promise<{ job: Job; replayed: boolean }> {
  await checkScanSource(deps.config, request.source);
  const scanId = randomUUID();
  const params: ScanParams = { scanId, llmTaskQueue: deps.config.TEMPORAL_LLM_TASK_QUEUE, ...defaultScanTuning, ...request.tuning };
  return startJob(deps, audit, {
    tenantId: request.tenantId,
    projectId: request.projectId,
    kind: 'scanRepository',
    title: `Scan ${describeSource(request.source)}`,
    params: { ...params },
    requestedBy: request.requestedBy,
    retryOf: request.retryOf,
    idempotency: request.idempotency,
    prepare: async (job, transaction) => {
      const project = await projectForNewJob(request.tenantId, request.projectId, transaction);
      // Two scans of one project at once would each mark the other's findings fixed.
      const running = await Scan.count({ where: { projectId: project.id, status: { [Op.in]: ['queued', 'running'] } }, transaction });
      if (running > 0) throw new ConflictError('A scan of this project is already running: wait for it, or cancel its job.');
      await Scan.create(
        { id: scanId, tenantId: request.tenantId, projectId: project.id, jobId: job.id, source: request.source, mode: request.mode, baseScanId: null },
        { transaction },
      );
      await job.update({ title: `Scan “${project.name}” (${describeSource(request.source)})` }, { transaction });
    },
  });
}

/** A failed or cancelled scan starts again from its source, as a new scan. */
export async function restartScan(deps: StartScanDeps, audit: AuditScope, old: Job, requestedBy: string, idempotency?: Idempotency): Promise<{ job: Job; replayed: boolean }> {
  const params = old.params as unknown as ScanParams;
  const scan = await Scan.findByPk(params.scanId);
  if (!scan) throw new ConflictError('The scan this job ran is gone: start a new scan.');
  return startScan(deps, audit, {
    tenantId: old.tenantId,
    projectId: scan.projectId,
    requestedBy,
    source: scan.source,
    mode: scan.mode,
    tuning: { batchSize: params.batchSize, parallelism: params.parallelism, batchesPerRun: params.batchesPerRun, heartbeatTimeoutSeconds: params.heartbeatTimeoutSeconds },
    retryOf: old.id,
    idempotency,
  });
}

/** A scan of the tenant; scans of a project being deleted are gone with it. */
export async function getScan(tenantId: string, id: string): Promise<Scan> {
  const scan = await Scan.findOne({ where: { id, tenantId }, include: [{ model: Project, attributes: [], where: { deletionJobId: null }, required: true }] });
  if (!scan) throw new NotFoundError('Scan');
  return scan;
}

/** A project's scans, newest first. */
export async function listProjectScans(tenantId: string, projectId: string, request: PageRequest): Promise<Page<Scan>> {
  await getProject(tenantId, projectId);
  return pageInCreationOrder(request, ({ after, order, limit }) => Scan.findAll({ where: { [Op.and]: [{ tenantId, projectId }, after] }, order, limit }), { newestFirst: true });
}
