import { randomUUID } from 'node:crypto';
import type { Transaction } from 'sequelize';
import { Issue, Scan, severities, type IssueSeverity, type IssueStatus } from '../../db';
import { auditRows } from '../api/auth-helpers';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';
import { addMember, type TenantMember } from '../harness/members';

/*
 * Issues across scans through the API (issue 6, criterion 7): filters, sorts, keyset pages, code
 * context and triage. The issues are written straight into the table, as a scan would write them:
 * the scan pipeline has its own tests.
 */

let t: TestApp;
let admin: Member;
let member: TenantMember;
let approver: TenantMember;
let viewer: TenantMember;
let outsider: Member;

/** The seeded project: its two completed scans, and every issue written for it. */
let projectId: string;
let olderScanId: string;
let latestScanId: string;
let seeded: Issue[];

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'issues');
  member = await addMember(t, admin.tenantId, 'member');
  approver = await addMember(t, admin.tenantId, 'approver');
  viewer = await addMember(t, admin.tenantId, 'viewer');
  outsider = await registerTenant(t, 'issues-outsider');
  projectId = await newProject(admin);
  olderScanId = await completedScan(admin.tenantId, projectId, new Date('2030-01-01T00:00:00Z'));
  latestScanId = await completedScan(admin.tenantId, projectId, new Date('2030-01-02T00:00:00Z'));
  seeded = await seedIssues();
});
afterAll(() => t.close());

async function newProject(as: Member): Promise<string> {
  const res = await t.post('/api/v1/projects', { name: `issues ${randomUUID()}` }, { token: as.accessToken });
  expect(res.status).toBe(201);
  return res.body.id;
}

async function completedScan(tenantId: string, project: string, createdAt: Date): Promise<string> {
  const scan = await Scan.create({
    id: randomUUID(),
    tenantId,
    projectId: project,
    jobId: null,
    source: { type: 'git', url: 'https://git.example.test/acme/app.git' },
    mode: 'full',
    baseScanId: null,
    status: 'completed',
    createdAt,
    startedAt: createdAt,
    finishedAt: createdAt,
  });
  return scan.id;
}

interface IssueSeed {
  severity?: IssueSeverity;
  status?: IssueStatus;
  ruleId?: string;
  cwe?: string | null;
  path?: string;
  suppressed?: boolean;
  /** `database`: left to the column's default, now() with microseconds (the same for a whole transaction). */
  firstSeenAt?: Date | 'database';
  lastSeenAt?: Date;
  firstSeenScanId?: string | null;
  lastSeenScanId?: string | null;
  codeContext?: { startLine: number; lines: string[] };
}

function writeIssue(tenantId: string, project: string, seed: IssueSeed = {}, transaction?: Transaction): Promise<Issue> {
  const firstSeenAt = seed.firstSeenAt ?? new Date('2030-01-01T00:00:00Z');
  return Issue.create(
    {
      id: randomUUID(),
      tenantId,
      projectId: project,
      fingerprint: randomUUID(),
      occurrence: 0,
      ruleId: seed.ruleId ?? 'js.eval',
      source: 'rule',
      title: 'eval of dynamic code',
      message: 'eval() runs whatever string it is given',
      severity: seed.severity ?? 'high',
      cwe: seed.cwe === undefined ? 'CWE-95' : seed.cwe,
      path: seed.path ?? 'src/app.js',
      startLine: 12,
      endLine: 12,
      startColumn: 5,
      matchedText: 'eval(input)',
      suppressed: seed.suppressed ?? false,
      status: seed.status ?? 'open',
      firstSeenScanId: seed.firstSeenScanId === undefined ? olderScanId : seed.firstSeenScanId,
      lastSeenScanId: seed.lastSeenScanId === undefined ? latestScanId : seed.lastSeenScanId,
      ...(firstSeenAt === 'database' ? {} : { firstSeenAt }),
      lastSeenAt: seed.lastSeenAt ?? new Date('2030-01-02T00:00:00Z'),
      ...(seed.codeContext ? { codeContext: seed.codeContext } : {}),
    },
    { transaction },
  );
}

const rules = [
  { ruleId: 'js.eval', cwe: 'CWE-95' },
  { ruleId: 'py.sql-string', cwe: 'CWE-89' },
  { ruleId: 'secret.aws-key', cwe: 'CWE-798' },
  { ruleId: 'llm.review', cwe: null },
];
const statuses: IssueStatus[] = ['open', 'open', 'confirmed', 'false_positive', 'wont_fix', 'fixed'];

/**
 * 40 issues with every severity, status and rule, a few paths shared by several issues and a few
 * identical times (ties the id must break), some suppressed, some first seen in the latest scan.
 * Paths differ only in lower-case letters and digits at the same places, so any collation orders
 * them as JavaScript does.
 */
async function seedIssues(): Promise<Issue[]> {
  const issues: Issue[] = [];
  for (let i = 0; i < 40; i++) {
    const rule = rules[i % rules.length]!;
    issues.push(
      await writeIssue(admin.tenantId, projectId, {
        severity: severities[(i * 7) % severities.length]!,
        status: statuses[i % statuses.length]!,
        ruleId: rule.ruleId,
        cwe: rule.cwe,
        path: `src/mod${'abc'[i % 3]}/file${String(i % 7).padStart(2, '0')}.js`,
        suppressed: i % 9 === 4,
        firstSeenAt: new Date(Date.UTC(2030, 0, 1, 0, i % 11)),
        lastSeenAt: new Date(Date.UTC(2030, 0, 2, 0, i % 5, 0, 123)),
        firstSeenScanId: i % 4 === 0 ? latestScanId : olderScanId,
        lastSeenScanId: i % 3 === 0 ? olderScanId : latestScanId,
        codeContext: { startLine: 10, lines: ['function run(input) {', '  // untrusted', `  eval(input); // ${i}`, '}'] },
      }),
    );
  }
  // Two names the LIKE wildcards would confuse: a pathPrefix is taken literally.
  issues.push(await writeIssue(admin.tenantId, projectId, { path: 'lib/a_b.js', severity: 'low' }));
  issues.push(await writeIssue(admin.tenantId, projectId, { path: 'lib/axb.js', severity: 'low' }));
  return issues;
}

const rank = (s: IssueSeverity) => severities.length - 1 - severities.indexOf(s);
const compareIds = (a: Issue, b: Issue) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const keyOf: Record<string, (i: Issue) => number | string> = {
  severity: (i) => rank(i.severity),
  path: (i) => i.path,
  firstSeen: (i) => i.firstSeenAt.getTime(),
  lastSeen: (i) => i.lastSeenAt.getTime(),
};

/** What the API should answer for a sort: by the key, ties by id, both in the sort's direction. */
function expectedOrder(issues: Issue[], sort: string): string[] {
  const descending = sort.startsWith('-');
  const key = keyOf[descending ? sort.slice(1) : sort]!;
  const sign = descending ? -1 : 1;
  return [...issues]
    .sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      return sign * (ka < kb ? -1 : ka > kb ? 1 : compareIds(a, b));
    })
    .map((i) => i.id);
}

async function list(query: string, token = admin.accessToken): Promise<TestResponse> {
  return t.get(`/api/v1/projects/${projectId}/issues${query}`, { token });
}

/** Every page of a query, following nextCursor; `between` runs after each page (to change the data mid-walk). */
async function walk(query: string, limit: number, between?: (page: number) => Promise<void>): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const res = await list(`?${query}${query ? '&' : ''}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(res.status).toBe(200);
    pages.push(res.body.items.map((i: { id: string }) => i.id));
    cursor = res.body.nextCursor;
    await between?.(pages.length);
  } while (cursor);
  return pages;
}

const visible = () => seeded.filter((i) => !i.suppressed);
const ids = (issues: Issue[]) => new Set(issues.map((i) => i.id));

describe('listing a project\'s issues', () => {
  test('by default: unsuppressed issues, most severe first, ties by id', async () => {
    const res = await list('?limit=100');
    expect(res.status).toBe(200);
    expect(res.body.items.map((i: { id: string }) => i.id)).toEqual(expectedOrder(visible(), '-severity'));
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.items[0]).not.toHaveProperty('codeContext');
  });

  test.each(['severity', '-severity', 'path', '-path', 'firstSeen', '-firstSeen', 'lastSeen', '-lastSeen'])(
    'sort=%s walks every issue once, in order, page by page, the same way twice',
    async (sort) => {
      const pages = await walk(`sort=${sort}&includeSuppressed=true`, 6);
      expect(pages.slice(0, -1).every((p) => p.length === 6)).toBe(true);
      expect(pages.flat()).toEqual(expectedOrder(seeded, sort));
      expect(await walk(`sort=${sort}&includeSuppressed=true`, 6)).toEqual(pages);
    },
  );

  test('issues written during a walk neither repeat nor hide the ones already there', async () => {
    const project = await newProject(admin);
    const before: Issue[] = [];
    for (let i = 0; i < 12; i++) before.push(await writeIssue(admin.tenantId, project, { severity: severities[i % 5]!, path: `app/f${i}.js` }));
    const written: Issue[] = [];
    const pages: string[] = [];
    let cursor: string | null = null;
    do {
      const res: TestResponse = await t.get(`/api/v1/projects/${project}/issues?limit=3${cursor ? `&cursor=${cursor}` : ''}`, { token: admin.accessToken });
      pages.push(...res.body.items.map((i: { id: string }) => i.id));
      cursor = res.body.nextCursor;
      // A new issue of every severity after each page: some sort before the cursor, some after.
      for (const severity of severities) written.push(await writeIssue(admin.tenantId, project, { severity }));
    } while (cursor);
    expect(new Set(pages).size).toBe(pages.length);
    expect(pages.filter((id) => ids(before).has(id))).toEqual(expectedOrder(before, '-severity'));
    expect(pages.every((id) => ids(before).has(id) || ids(written).has(id))).toBe(true);
  });

  test('times with microseconds, and ties on them, page without repeats or gaps', async () => {
    const project = await newProject(admin);
    for (let i = 0; i < 3; i++) await writeIssue(admin.tenantId, project, { firstSeenAt: 'database' });
    // One transaction: now() is the same instant for all four.
    await t.sequelize.transaction(async (transaction) => {
      for (let i = 0; i < 4; i++) await writeIssue(admin.tenantId, project, { firstSeenAt: 'database' }, transaction);
    });
    const all = await Issue.findAll({ where: { projectId: project } });
    for (const sort of ['firstSeen', '-firstSeen']) {
      const walked: string[] = [];
      let cursor: string | null = null;
      do {
        const res: TestResponse = await t.get(`/api/v1/projects/${project}/issues?sort=${sort}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: admin.accessToken });
        walked.push(...res.body.items.map((i: { id: string }) => i.id));
        cursor = res.body.nextCursor;
      } while (cursor);
      expect(walked).toEqual(expectedOrder(all, sort));
    }
  });

  test.each([
    ['severity=critical,high', (i: Issue) => ['critical', 'high'].includes(i.severity)],
    ['status=confirmed,wont_fix', (i: Issue) => ['confirmed', 'wont_fix'].includes(i.status)],
    ['ruleId=py.sql-string', (i: Issue) => i.ruleId === 'py.sql-string'],
    ['cwe=CWE-89', (i: Issue) => i.cwe === 'CWE-89'],
    ['cwe=798', (i: Issue) => i.cwe === 'CWE-798'],
    ['pathPrefix=src/modb/', (i: Issue) => i.path.startsWith('src/modb/')],
    ['pathPrefix=lib/a_', (i: Issue) => i.path === 'lib/a_b.js'],
    ['scanId=LATEST', (i: Issue) => i.lastSeenScanId === latestScanId],
    ['newSince=2030-01-01T00:07:00.000Z', (i: Issue) => i.firstSeenAt.getTime() >= Date.UTC(2030, 0, 1, 0, 7)],
    ['severity=medium&status=open&pathPrefix=src/', (i: Issue) => i.severity === 'medium' && i.status === 'open' && i.path.startsWith('src/')],
  ])('%s filters (suppressed issues left out)', async (query, keep) => {
    const res = await list(`?limit=100&${query.replace('LATEST', latestScanId)}`);
    expect(res.status).toBe(200);
    const expected = expectedOrder(visible().filter(keep), '-severity');
    expect(expected.length).toBeGreaterThan(0);
    expect(res.body.items.map((i: { id: string }) => i.id)).toEqual(expected);
  });

  test('includeSuppressed=true adds the issues suppressed inline, marked as such', async () => {
    const res = await list('?limit=100&includeSuppressed=true');
    expect(res.body.items).toHaveLength(seeded.length);
    const suppressed = res.body.items.filter((i: { suppressed: boolean }) => i.suppressed).map((i: { id: string }) => i.id);
    expect(new Set(suppressed)).toEqual(ids(seeded.filter((i) => i.suppressed)));
  });

  test('isNew marks the issues first seen in the latest completed scan', async () => {
    const res = await list('?limit=100&includeSuppressed=true');
    const fresh = res.body.items.filter((i: { isNew: boolean }) => i.isNew).map((i: { id: string }) => i.id);
    expect(new Set(fresh)).toEqual(ids(seeded.filter((i) => i.firstSeenScanId === latestScanId)));
  });

  test.each([
    ['severity=urgent', 'query.severity.0'],
    ['status=open,closed', 'query.status.1'],
    ['sort=name', 'query.sort'],
    ['newSince=yesterday', 'query.newSince'],
    ['cwe=SQLi', 'query.cwe'],
    ['scanId=latest', 'query.scanId'],
    ['cursor=not-a-cursor', 'cursor'],
  ])('%s answers 400 naming the parameter', async (query, field) => {
    const res = await list(`?${query}`);
    expect({ status: res.status, type: res.body.type }).toEqual({ status: 400, type: '/problems/validation-error' });
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(field);
  });

  test('a cursor of another sort answers 400', async () => {
    const first = await list('?limit=2&sort=path');
    const res = await list(`?limit=2&sort=-lastSeen&cursor=${first.body.nextCursor}`);
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([expect.objectContaining({ path: 'cursor' })]);
  });

  test('a viewer may list; another tenant, or a project being deleted, answers 404', async () => {
    expect((await list('?limit=1', viewer.accessToken)).status).toBe(200);
    const foreign = await list('', outsider.accessToken);
    expect({ status: foreign.status, type: foreign.body.type }).toEqual({ status: 404, type: '/problems/not-found' });

    const doomed = await newProject(admin);
    const issue = await writeIssue(admin.tenantId, doomed);
    // No worker runs here: the deletion job stays queued, and the project stays hidden.
    expect((await t.delete(`/api/v1/projects/${doomed}`, { token: admin.accessToken })).status).toBe(202);
    expect((await t.get(`/api/v1/projects/${doomed}/issues`, { token: admin.accessToken })).status).toBe(404);
    expect((await t.get(`/api/v1/issues/${issue.id}`, { token: admin.accessToken })).status).toBe(404);
    expect((await t.patch(`/api/v1/issues/${issue.id}`, { status: 'confirmed' }, { token: admin.accessToken })).status).toBe(404);
  });
});

describe('one issue', () => {
  test('GET /issues/:id answers the issue with its code context, rule, history and triage', async () => {
    const issue = seeded.find((i) => i.firstSeenScanId === latestScanId)!;
    const res = await t.get(`/api/v1/issues/${issue.id}`, { token: viewer.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: issue.id,
      projectId,
      ruleId: issue.ruleId,
      source: 'rule',
      title: issue.title,
      message: issue.message,
      severity: issue.severity,
      cwe: issue.cwe,
      path: issue.path,
      startLine: 12,
      endLine: 12,
      startColumn: 5,
      status: issue.status,
      statusComment: null,
      statusChangedBy: null,
      statusChangedAt: null,
      suppressed: issue.suppressed,
      isNew: true,
      firstSeenScanId: latestScanId,
      lastSeenScanId: issue.lastSeenScanId,
      fixedInScanId: null,
      firstSeenAt: issue.firstSeenAt.toISOString(),
      lastSeenAt: issue.lastSeenAt.toISOString(),
      createdAt: issue.createdAt.toISOString(),
      updatedAt: issue.updatedAt.toISOString(),
      codeContext: { startLine: 10, lines: ['function run(input) {', '  // untrusted', expect.stringMatching(/^ {2}eval\(input\);/), '}'] },
    });
    expect(res.body).not.toHaveProperty('matchedText');
  });

  test('an issue without stored context answers codeContext null', async () => {
    const issue = await writeIssue(admin.tenantId, projectId, { path: 'zzz/no-context.js' });
    const res = await t.get(`/api/v1/issues/${issue.id}`, { token: admin.accessToken });
    expect(res.body).toMatchObject({ codeContext: null, isNew: false });
    await issue.destroy();
  });

  test("another tenant's issue answers 404", async () => {
    const res = await t.get(`/api/v1/issues/${seeded[0]!.id}`, { token: outsider.accessToken });
    expect({ status: res.status, type: res.body.type }).toEqual({ status: 404, type: '/problems/not-found' });
  });
});

describe('triage', () => {
  test('a member sets the status and a comment; who and when are recorded, and the change is audited', async () => {
    const issue = await writeIssue(admin.tenantId, projectId, { status: 'open' });
    const res = await t.patch(`/api/v1/issues/${issue.id}`, { status: 'false_positive', comment: '  input is a constant here  ' }, { token: member.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: issue.id, status: 'false_positive', statusComment: 'input is a constant here', statusChangedBy: `user:${member.userId}` });
    expect(Date.now() - Date.parse(res.body.statusChangedAt)).toBeLessThan(60_000);
    expect(await Issue.findByPk(issue.id)).toMatchObject({ status: 'false_positive', statusComment: 'input is a constant here', statusChangedBy: `user:${member.userId}` });

    const audit = await auditRows('issue.triage', { resourceId: issue.id });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actorId: member.userId, tenantId: admin.tenantId, outcome: 'success', details: { from: 'open', to: 'false_positive', projectId } });

    // A new status without a comment clears the old comment.
    const again = await t.patch(`/api/v1/issues/${issue.id}`, { status: 'confirmed' }, { token: approver.accessToken });
    expect(again.body).toMatchObject({ status: 'confirmed', statusComment: null, statusChangedBy: `user:${approver.userId}` });
    expect((await auditRows('issue.triage', { resourceId: issue.id })).map((r) => r.details)).toEqual([
      expect.objectContaining({ from: 'open', to: 'false_positive' }),
      expect.objectContaining({ from: 'false_positive', to: 'confirmed' }),
    ]);
  });

  test('a viewer gets 403 and the issue stays as it was', async () => {
    const issue = await writeIssue(admin.tenantId, projectId);
    const res = await t.patch(`/api/v1/issues/${issue.id}`, { status: 'wont_fix' }, { token: viewer.accessToken });
    expect({ status: res.status, type: res.body.type }).toEqual({ status: 403, type: '/problems/forbidden' });
    expect((await Issue.findByPk(issue.id))?.status).toBe('open');
    expect(await auditRows('issue.triage', { resourceId: issue.id })).toEqual([]);
  });

  test.each([
    ['an unknown status', { status: 'closed' }, 'body.status'],
    ['no status', {}, 'body.status'],
    ['a comment beyond 2000 characters', { status: 'open', comment: 'x'.repeat(2001) }, 'body.comment'],
  ])('%s answers 400 naming the field', async (_label, body, field) => {
    const issue = await writeIssue(admin.tenantId, projectId);
    const res = await t.patch(`/api/v1/issues/${issue.id}`, body, { token: member.accessToken });
    expect({ status: res.status, type: res.body.type }).toEqual({ status: 400, type: '/problems/validation-error' });
    expect(res.body.errors.map((e: { path: string }) => e.path)).toContain(field);
  });

  test("another tenant's issue answers 404 and stays unchanged", async () => {
    const theirProject = await newProject(outsider);
    const theirs = await writeIssue(outsider.tenantId, theirProject, { firstSeenScanId: null, lastSeenScanId: null });
    const res = await t.patch(`/api/v1/issues/${theirs.id}`, { status: 'wont_fix' }, { token: admin.accessToken });
    expect({ status: res.status, type: res.body.type }).toEqual({ status: 404, type: '/problems/not-found' });
    expect((await Issue.findByPk(theirs.id))?.status).toBe('open');
  });
});
