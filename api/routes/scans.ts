import { z } from 'zod';
import { jobStatuses, type Scan, type ScanSource } from '../../db';
import { getScan, listProjectScans, repositoryPattern, startScan } from '../../services/scans';
import { startScanOfUpload } from '../../services/scans/uploads';
import type { AppDeps } from '../app';
import { acceptedJob, idempotencyOf, jobSchema, requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { idParams, page, pageQuery, timestamp } from '../schemas';
import { isValidRef } from '../../lib/git-fetch';

/** Media types clients give a ZIP file part (curl and some browsers send the generic one). */
const zipMediaTypes = ['application/zip', 'application/x-zip-compressed', 'application/x-zip', 'application/octet-stream'];

const scanMode = z.enum(['full', 'incremental']).default('full').describe('incremental: analyze only files changed since the last completed scan, carrying the rest forward');

const gitRef = z
  .string()
  .max(255)
  .refine(isValidRef, 'is not a valid branch, tag or commit name (letters, digits, ".", "_", "/", "-"; no leading "-", no "..")')
  .describe('A branch, a tag or a full commit SHA; by default the default branch');

const gitSource = z.object({
  type: z.literal('git'),
  // Only the length here: what is wrong with a URL is the scan source check's to say (422 unsafe-repository-url, with a code).
  url: z.string().min(1).max(2048).describe('https (or http, file) URL of the repository, without credentials; its host must be allowlisted (SCAN_ALLOWED_HOSTS)'),
  ref: gitRef.optional(),
});
const hostedSource = z.object({
  type: z.enum(['github', 'gitlab']),
  repo: z.string().max(500).regex(repositoryPattern, 'must be "owner/name" (GitLab also "group/subgroup/name")'),
  ref: gitRef.optional(),
  baseUrl: z.url({ protocol: /^https$/, error: 'must be an https URL' }).max(2048).optional().describe('A self-hosted GitHub Enterprise or GitLab; by default github.com or gitlab.com'),
});
const startBody = z.object({
  source: z
    .discriminatedUnion('type', [gitSource, hostedSource])
    .describe("The repository; its token, if it needs one, comes from the project's settings (`credentials.git|github|gitlab`: a `secret://` reference)"),
  mode: scanMode,
});
const uploadFields = z.object({ mode: scanMode });

const severityCounts = z.object({ critical: z.number().int(), high: z.number().int(), medium: z.number().int(), low: z.number().int(), info: z.number().int() });
const scanSummary = z.object({
  id: z.uuid(),
  projectId: z.uuid(),
  jobId: z.uuid().nullable(),
  status: z.enum(jobStatuses),
  mode: z.enum(['full', 'incremental']),
  source: z
    .discriminatedUnion('type', [
      gitSource.extend({ ref: z.string().optional() }),
      hostedSource.extend({ repo: z.string(), ref: z.string().optional(), baseUrl: z.string().optional() }),
      z.object({ type: z.literal('zip'), fileName: z.string(), sha256: z.string(), bytes: z.number().int() }),
    ])
    .describe('What was scanned (never a token; an upload by its name and digest)'),
  commitSha: z.string().nullable(),
  archiveSha256: z.string().nullable(),
  filesTotal: z.number().int(),
  filesAnalyzed: z.number().int(),
  filesCarried: z.number().int().describe('Unchanged since the base scan (incremental): their issues carried forward'),
  filesSkipped: z.number().int(),
  findings: severityCounts.describe('Findings of this scan by severity'),
  newIssues: z.number().int(),
  fixedIssues: z.number().int(),
  warnings: z.array(z.object({ path: z.string().nullable(), message: z.string() })).describe('Files that could not be analyzed, and other problems short of failing the scan'),
  llm: z.record(z.string(), z.unknown()).describe('What the LLM analyzer did, when it ran'),
  error: z.string().nullable(),
  startedAt: timestamp.nullable(),
  finishedAt: timestamp.nullable(),
  durationMs: z.number().int().nullable(),
  createdAt: timestamp,
});

/** A source as shown: an upload's blob key is storage detail, not part of the resource. */
function sourceView(source: ScanSource) {
  if (source.type !== 'zip') return source;
  return { type: source.type, fileName: source.fileName, sha256: source.sha256, bytes: source.bytes };
}

const scanView = (s: Scan) => ({
  id: s.id,
  projectId: s.projectId,
  jobId: s.jobId,
  status: s.status,
  mode: s.mode,
  source: sourceView(s.source),
  commitSha: s.commitSha,
  archiveSha256: s.archiveSha256,
  filesTotal: s.filesTotal,
  filesAnalyzed: s.filesAnalyzed,
  filesCarried: s.filesCarried,
  filesSkipped: s.filesSkipped,
  findings: { critical: 0, high: 0, medium: 0, low: 0, info: 0, ...s.findings },
  newIssues: s.newIssues,
  fixedIssues: s.fixedIssues,
  warnings: s.warnings,
  llm: s.llm,
  error: s.error,
  startedAt: s.startedAt?.toISOString() ?? null,
  finishedAt: s.finishedAt?.toISOString() ?? null,
  durationMs: s.startedAt && s.finishedAt ? s.finishedAt.getTime() - s.startedAt.getTime() : null,
  createdAt: s.createdAt.toISOString(),
});

export function scansRouter(deps: AppDeps): ApiRouter {
  const tag = 'scans';
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/projects/:id/scans',
        operationId: 'startScan',
        summary:
          'Scan a repository (git URL, GitHub or GitLab) or an uploaded ZIP, as a job. One scan of a project at a time (409 while one is queued or running); the source is checked before anything connects (422 unsafe-repository-url), an upload at once (413/422)',
        tag,
        access: 'projects:write',
        params: idParams,
        body: startBody,
        upload: { field: 'archive', description: 'The ZIP archive of the source tree to scan.', maxBytes: deps.config.UPLOAD_MAX_BYTES, mediaTypes: zipMediaTypes, fields: uploadFields },
        idempotent: true,
        responses: { 202: { description: 'The scan job', schema: jobSchema } },
      },
      async (ctx, { params, body, upload, auth }) => {
        const scan = { tenantId: auth.tenantId, projectId: params.id, requestedBy: requesterOf(ctx) };
        const { job } = upload
          ? await startScanOfUpload(deps, ctx.state.audit, {
              ...scan,
              mode: upload.fields.mode,
              archive: upload.file,
              idempotency: idempotencyOf(ctx, { params, mode: upload.fields.mode, archiveSha256: upload.file.sha256 }),
            })
          : await startScan(deps, ctx.state.audit, { ...scan, source: body.source, mode: body.mode, idempotency: idempotencyOf(ctx, { params, body }) });
        acceptedJob(ctx, job);
      },
    )
    .add(
      {
        method: 'get',
        path: '/projects/:id/scans',
        operationId: 'listProjectScans',
        summary: "A project's scans, newest first",
        tag,
        access: 'projects:read',
        params: idParams,
        query: pageQuery,
        responses: { 200: { description: 'A page of scans', schema: page(scanSummary) } },
      },
      async (ctx, { params, query, auth }) => {
        const result = await listProjectScans(auth.tenantId, params.id, query);
        ctx.body = { items: result.items.map(scanView), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'get',
        path: '/scans/:id',
        operationId: 'getScan',
        summary: 'A scan: what was fetched (commit or archive digest), files, findings by severity, new and fixed issues, warnings, duration',
        tag,
        access: 'projects:read',
        params: idParams,
        responses: { 200: { description: 'The scan', schema: scanSummary } },
      },
      async (ctx, { params, auth }) => {
        ctx.body = scanView(await getScan(auth.tenantId, params.id));
      },
    );
}
