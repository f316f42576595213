import { z } from 'zod';
import { issueStatuses, severities } from '../../db';
import { getIssue, issueSorts, listProjectIssues, triageIssue, type TrackedIssue } from '../../services/issues';
import type { AppDeps } from '../app';
import { requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { idParams, page, pageQuery, timestamp } from '../schemas';

/** A comma-separated query value, each item one of `values`. */
const commaList = <T extends readonly [string, ...string[]]>(values: T) =>
  z
    .string()
    .max(200)
    .transform((v) => v.split(',').map((item) => item.trim()))
    .pipe(z.array(z.enum(values)).min(1))
    .describe(`Comma-separated, any of: ${values.join(', ')}`);

const listQuery = pageQuery.extend({
  severity: commaList(severities).optional(),
  status: commaList(issueStatuses).optional(),
  ruleId: z.string().min(1).max(200).optional(),
  cwe: z
    .string()
    .regex(/^(CWE-)?\d{1,6}$/i, 'must be "CWE-<number>" or a number')
    .transform((v) => `CWE-${v.replace(/^CWE-/i, '')}`)
    .optional(),
  pathPrefix: z.string().min(1).max(1024).optional().describe('Issues in files whose path starts with this (taken literally)'),
  scanId: z.uuid().optional().describe('Issues last seen in this scan'),
  newSince: timestamp
    .transform((v) => new Date(v))
    .optional()
    .describe('Issues first seen at or after this time'),
  includeSuppressed: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true')
    .describe('Include findings suppressed inline (auditflow-ignore)'),
  sort: z.enum(issueSorts).default('-severity').describe('A field, ascending, or descending with a leading "-"; severity orders critical > high > medium > low > info; ties by id'),
});

const triageBody = z.object({
  status: z.enum(issueStatuses),
  comment: z
    .string()
    .trim()
    .max(2000)
    .optional()
    .transform((v) => (v === '' ? undefined : v))
    .describe('Why; replaces the previous comment (none clears it)'),
});

const issueFields = {
  id: z.uuid(),
  projectId: z.uuid(),
  ruleId: z.string(),
  source: z.enum(['rule', 'llm']).describe('The rule engine, or the LLM analyzer'),
  title: z.string(),
  message: z.string(),
  severity: z.enum(severities),
  cwe: z.string().nullable(),
  path: z.string(),
  startLine: z.number().int(),
  endLine: z.number().int(),
  startColumn: z.number().int(),
  status: z.enum(issueStatuses),
  statusComment: z.string().nullable(),
  statusChangedBy: z.string().nullable().describe('Who set the status last: user:<id> or api_token:<id>'),
  statusChangedAt: timestamp.nullable(),
  suppressed: z.boolean().describe('Suppressed inline (auditflow-ignore): recorded, not silently dropped'),
  isNew: z.boolean().describe("First seen in the project's latest completed scan"),
  firstSeenScanId: z.uuid().nullable(),
  lastSeenScanId: z.uuid().nullable(),
  fixedInScanId: z.uuid().nullable(),
  firstSeenAt: timestamp,
  lastSeenAt: timestamp,
  createdAt: timestamp,
  updatedAt: timestamp,
};
const issueSummary = z.object(issueFields);
const issueDetail = z.object({
  ...issueFields,
  codeContext: z
    .object({ startLine: z.number().int(), lines: z.array(z.string()) })
    .nullable()
    .describe('Lines around the finding as last seen (secrets masked): lines[0] is line startLine'),
});

const summaryView = ({ issue: i, isNew }: TrackedIssue) => ({
  id: i.id,
  projectId: i.projectId,
  ruleId: i.ruleId,
  source: i.source,
  title: i.title,
  message: i.message,
  severity: i.severity,
  cwe: i.cwe,
  path: i.path,
  startLine: i.startLine,
  endLine: i.endLine,
  startColumn: i.startColumn,
  status: i.status,
  statusComment: i.statusComment,
  statusChangedBy: i.statusChangedBy,
  statusChangedAt: i.statusChangedAt?.toISOString() ?? null,
  suppressed: i.suppressed,
  isNew,
  firstSeenScanId: i.firstSeenScanId,
  lastSeenScanId: i.lastSeenScanId,
  fixedInScanId: i.fixedInScanId,
  firstSeenAt: i.firstSeenAt.toISOString(),
  lastSeenAt: i.lastSeenAt.toISOString(),
  createdAt: i.createdAt.toISOString(),
  updatedAt: i.updatedAt.toISOString(),
});
const detailView = (tracked: TrackedIssue) => {
  const context = tracked.issue.codeContext;
  return { ...summaryView(tracked), codeContext: 'lines' in context ? { startLine: context.startLine, lines: context.lines } : null };
};

export function issuesRouter(deps: AppDeps): ApiRouter {
  const tag = 'issues';
  return new ApiRouter()
    .add(
      {
        method: 'get',
        path: '/projects/:id/issues',
        operationId: 'listProjectIssues',
        summary: "A project's issues across scans, filtered and sorted (by default most severe first)",
        tag,
        access: 'projects:read',
        params: idParams,
        query: listQuery,
        responses: { 200: { description: 'A page of issues', schema: page(issueSummary) } },
      },
      async (ctx, { params, query, auth }) => {
        const result = await listProjectIssues(auth.tenantId, params.id, query);
        ctx.body = { items: result.items.map(summaryView), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'get',
        path: '/issues/:id',
        operationId: 'getIssue',
        summary: 'An issue with its code context, triage and history (first and last seen)',
        tag,
        access: 'projects:read',
        params: idParams,
        responses: { 200: { description: 'The issue', schema: issueDetail } },
      },
      async (ctx, { params, auth }) => {
        ctx.body = detailView(await getIssue(auth.tenantId, params.id));
      },
    )
    .add(
      {
        method: 'patch',
        path: '/issues/:id',
        operationId: 'triageIssue',
        summary: "Set an issue's triage status, with a comment (audited); later scans keep it",
        tag,
        access: 'issues:triage',
        params: idParams,
        body: triageBody,
        responses: { 200: { description: 'The issue', schema: issueDetail } },
      },
      async (ctx, { params, body, auth }) => {
        ctx.body = detailView(await triageIssue(deps.sequelize, ctx.state.audit, auth.tenantId, params.id, body, requesterOf(ctx)));
      },
    );
}
