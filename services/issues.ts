import { Op, type Sequelize, type Transaction, type WhereOptions } from 'sequelize';
import { Issue, Project, Scan, severities, type IssueSeverity, type IssueStatus } from '../db';
import { NotFoundError } from '../lib/errors';
import type { AuditScope } from './audit';
import { pageByKeyset, type KeysetOrder, type Page, type PageRequest } from './pagination';
import { getProject } from './projects';

/**
 * Reading and triaging the issues scans track across a project's history (issue 6, criterion 7).
 * Scans write issues (services/scans); people read them here and set their triage status, which
 * later scans keep.
 */

export const issueSorts = ['severity', '-severity', 'path', '-path', 'firstSeen', '-firstSeen', 'lastSeen', '-lastSeen'] as const;
/** A field to order by, ascending, or descending with a leading `-`. */
export type IssueSort = (typeof issueSorts)[number];

/** critical (4) > high > medium > low > info (0), as SQL over the `severity` column. */
const severityRank = `CASE severity ${severities.map((s, i) => `WHEN '${s}' THEN ${severities.length - 1 - i}`).join(' ')} END`;

const sortKeys: Record<string, Pick<KeysetOrder, 'expression' | 'valueType'>> = {
  severity: { expression: severityRank, valueType: 'number' },
  path: { expression: '"path"', valueType: 'string' },
  // Milliseconds: the cursor carries the key as a JavaScript date (Postgres keeps microseconds).
  firstSeen: { expression: "date_trunc('milliseconds', first_seen_at)", valueType: 'timestamp' },
  lastSeen: { expression: "date_trunc('milliseconds', last_seen_at)", valueType: 'timestamp' },
};

function keysetOrderOf(sort: IssueSort): KeysetOrder {
  const descending = sort.startsWith('-');
  const key = sortKeys[descending ? sort.slice(1) : sort];
  if (!key) throw new Error(`No sort key for ${sort}`);
  return { name: sort, direction: descending ? 'DESC' : 'ASC', ...key };
}

export interface IssueFilter {
  severity?: IssueSeverity[];
  status?: IssueStatus[];
  ruleId?: string;
  /** `CWE-<n>`. */
  cwe?: string;
  pathPrefix?: string;
  /** Issues last seen in this scan. */
  scanId?: string;
  /** Issues first seen at or after this time. */
  newSince?: Date;
  /** Issues suppressed inline (`auditflow-ignore`) are left out unless asked for. */
  includeSuppressed: boolean;
}

export interface IssueListRequest extends IssueFilter, PageRequest {
  sort: IssueSort;
}

/** An issue, and whether it is new: first seen in the project's latest completed scan. */
export interface TrackedIssue {
  issue: Issue;
  isNew: boolean;
}

/** A LIKE pattern matching every string that starts with `prefix` (its own `%`, `_` and `\` taken literally). */
const startingWith = (prefix: string) => `${prefix.replace(/[\\%_]/g, '\\$&')}%`;

function conditionsOf(filter: IssueFilter): WhereOptions<Issue>[] {
  const where: WhereOptions<Issue>[] = [];
  if (filter.severity) where.push({ severity: { [Op.in]: filter.severity } });
  if (filter.status) where.push({ status: { [Op.in]: filter.status } });
  if (filter.ruleId !== undefined) where.push({ ruleId: filter.ruleId });
  if (filter.cwe !== undefined) where.push({ cwe: filter.cwe });
  if (filter.pathPrefix !== undefined) where.push({ path: { [Op.like]: startingWith(filter.pathPrefix) } });
  if (filter.scanId !== undefined) where.push({ lastSeenScanId: filter.scanId });
  if (filter.newSince !== undefined) where.push({ firstSeenAt: { [Op.gte]: filter.newSince } });
  if (!filter.includeSuppressed) where.push({ suppressed: false });
  return where;
}

/** The project's latest completed scan: issues it saw first are new. */
async function latestCompletedScanId(projectId: string, transaction?: Transaction): Promise<string | null> {
  const scan = await Scan.findOne({
    where: { projectId, status: 'completed' },
    attributes: ['id'],
    order: [
      ['createdAt', 'DESC'],
      ['id', 'DESC'],
    ],
    transaction,
  });
  return scan?.id ?? null;
}

const tracked = (issue: Issue, latestScanId: string | null): TrackedIssue => ({ issue, isNew: latestScanId !== null && issue.firstSeenScanId === latestScanId });

/** A page of a project's issues, filtered and sorted; a project of another tenant, or being deleted, is not found. */
export async function listProjectIssues(tenantId: string, projectId: string, request: IssueListRequest): Promise<Page<TrackedIssue>> {
  const project = await getProject(tenantId, projectId);
  const [page, latestScanId] = await Promise.all([
    pageByKeyset(Issue, { [Op.and]: [{ tenantId, projectId: project.id }, ...conditionsOf(request)] }, keysetOrderOf(request.sort), request),
    latestCompletedScanId(project.id),
  ]);
  return { items: page.items.map((issue) => tracked(issue, latestScanId)), nextCursor: page.nextCursor };
}

/** An issue of the tenant whose project is not being deleted; locked for update inside a transaction. */
async function visibleIssue(tenantId: string, id: string, transaction?: Transaction): Promise<Issue> {
  const issue = await Issue.findOne({ where: { id, tenantId }, transaction, ...(transaction ? { lock: transaction.LOCK.UPDATE } : {}) });
  const project = issue && (await Project.findOne({ where: { id: issue.projectId, tenantId, deletionJobId: null }, attributes: ['id'], transaction }));
  if (!issue || !project) throw new NotFoundError('Issue');
  return issue;
}

export async function getIssue(tenantId: string, id: string): Promise<TrackedIssue> {
  const issue = await visibleIssue(tenantId, id);
  return tracked(issue, await latestCompletedScanId(issue.projectId));
}

export interface TriageChange {
  status: IssueStatus;
  /** Why (non-empty); replaces the previous comment, and none clears it. */
  comment?: string;
}

/**
 * Sets an issue's triage status and comment, recording who and when, audited (`issue.triage`,
 * from and to) in the same transaction. Later scans keep the status (services/scans).
 */
export async function triageIssue(sequelize: Sequelize, audit: AuditScope, tenantId: string, id: string, change: TriageChange, changedBy: string): Promise<TrackedIssue> {
  const issue = await sequelize.transaction(async (transaction) => {
    const found = await visibleIssue(tenantId, id, transaction);
    const from = found.status;
    await found.update({ status: change.status, statusComment: change.comment ?? null, statusChangedBy: changedBy, statusChangedAt: new Date() }, { transaction });
    await audit.record(
      { action: 'issue.triage', resourceType: 'issue', resourceId: found.id, details: { projectId: found.projectId, from, to: change.status, commented: change.comment !== undefined } },
      transaction,
    );
    return found;
  });
  return tracked(issue, await latestCompletedScanId(issue.projectId));
}
