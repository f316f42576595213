import { randomUUID } from 'node:crypto';
import type { AnyRouteSpec } from '../../api/route';
import { ApiToken, AuditLog, Document, Issue, Scan, User, roles, type Role } from '../../db';
import { tokenDigest } from '../../lib/crypto';
import { can } from '../../services/permissions';
import { issueAccessToken } from '../../services/tokens';
import { registerTenant, startTestApp, strongPassword, uniqueEmail, type Member, type TestApp, type TestResponse } from '../harness';
import { addMember } from '../harness/members';
import { mailedToken as mailedTokenOf } from './auth-helpers';

/*
 * Every route of the app against every kind of caller: a member of each role, an API token of
 * each role, and no token at all. What each may do is derived from each route's declared access
 * and the permission matrix (`can(role, access)`), so the table checks the routes against the
 * matrix, not against a second copy of it; a route without a sample request fails the table.
 */

let t: TestApp;
let admin: Member;
let tenantId: string;
let projectId: string;

interface Caller {
  label: string;
  kind: 'member' | 'api_token' | 'anonymous';
  role: Role | null;
  /** The member's user, or for an API token the user who created it (whose tokens it manages). */
  userId?: string;
  apiToken?: string;
}

interface SampleRequest {
  path: string;
  body?: unknown;
}

/** A token of the tenant owned by `ownerId`, for the route that revokes one. */
async function apiTokenOwnedBy(ownerId: string | undefined): Promise<string> {
  const token = `af_${randomUUID()}`;
  const created = await ApiToken.create({
    tenantId,
    name: 'rbac revocation target',
    role: 'viewer',
    prefix: token.slice(0, 24),
    tokenHash: tokenDigest(token),
    createdBy: ownerId ?? null,
    expiresAt: null,
  });
  return created.id;
}

/**
 * A member's access token, minted for each request from the current token epoch: a route of the
 * table (logout) ends every session of its caller.
 */
async function accessTokenOf(userId: string): Promise<string> {
  const user = await User.findByPk(userId, { rejectOnEmpty: true });
  return issueAccessToken(t.config, { sub: user.id, tid: tenantId, ep: user.tokenEpoch });
}

/** The token of the next mail to `email` linking to `path` (mail goes out in the background, in any order). */
const mailedToken = (email: string, path: string) => mailedTokenOf(t, email, path);

/** Someone with an account of their own, for the routes that sign in, reset or verify. */
const newAccount = () => registerTenant(t, 'rbac-account');

/** A project of the tenant for one call: deleting it uses it up. */
async function freshProject(): Promise<string> {
  return (await t.post('/api/v1/projects', { name: `rbac ${randomUUID()}` }, { token: await accessTokenOf(admin.userId) })).body.id;
}

/** A deletion job of a fresh project. No worker runs in this file: the job stays queued, so it can be cancelled. */
async function queuedJob(): Promise<{ id: string; workflowId: string }> {
  return (await t.delete(`/api/v1/projects/${await freshProject()}`, { token: await accessTokenOf(admin.userId) })).body;
}

/** A failed job, so it can be retried: a deletion whose workflow an operator terminated (the API reconciles it on read). */
async function failedJob(): Promise<string> {
  const job = await queuedJob();
  await t.temporal.workflow.getHandle(job.workflowId).terminate('rbac table');
  return job.id;
}

/** A secret of the tenant for one call: deleting it uses it up. */
async function freshSecret(): Promise<string> {
  const body = { name: `rbac-${randomUUID().slice(0, 8)}`, value: 'rbac table value' };
  return (await t.post('/api/v1/secrets', body, { token: await accessTokenOf(admin.userId) })).body.id;
}

/** One secret for the routes that read or rotate it. */
let sharedSecretId: Promise<string> | undefined;
const sharedSecret = () => (sharedSecretId ??= freshSecret());

/** One finished job for the read-only routes; its event stream ends after its last event. */
let finishedJobId: Promise<string> | undefined;
const finishedJob = () => (finishedJobId ??= failedJob());

/** A git source the app accepts (its allowlist names 127.0.0.1); no worker runs here, so nothing connects. */
const gitSource = { type: 'git', url: 'http://127.0.0.1:9/rbac.git' };

/** One scan, queued for ever (no worker), on a project of its own: a project has one scan at a time. */
let sharedScanId: Promise<string> | undefined;
const sharedScan = () =>
  (sharedScanId ??= (async () => {
    const job = await t.post(`/api/v1/projects/${await freshProject()}/scans`, { source: gitSource }, { token: await accessTokenOf(admin.userId) });
    return (await Scan.findOne({ where: { jobId: job.body.id }, rejectOnEmpty: true })).id;
  })());

/** One issue of the shared project, written as a scan would. */
let sharedIssueId: Promise<string> | undefined;
const sharedIssue = () =>
  (sharedIssueId ??= (async () => {
    const issue = await Issue.create({
      id: randomUUID(),
      tenantId,
      projectId,
      fingerprint: randomUUID(),
      occurrence: 0,
      ruleId: 'js.eval',
      source: 'rule',
      title: 'eval of dynamic code',
      message: 'eval() runs whatever string it is given',
      severity: 'high',
      cwe: 'CWE-95',
      path: 'src/app.js',
      startLine: 3,
      endLine: 3,
      startColumn: 1,
      matchedText: 'eval(input)',
      firstSeenScanId: null,
      lastSeenScanId: null,
    });
    return issue.id;
  })());

/** A document of the shared project, written as ingestion would leave a failed one (no chunks, no vectors); deleting it uses it up. */
async function freshDocument(): Promise<string> {
  const title = `rbac ${randomUUID()}`;
  const document = await Document.create({ id: randomUUID(), tenantId, projectId, sourceKey: title, sourceType: 'text', origin: 'text', title, format: 'text', status: 'failed', error: 'rbac table' });
  return document.id;
}
let sharedDocumentId: Promise<string> | undefined;
const sharedDocument = () => (sharedDocumentId ??= freshDocument());

/**
 * One valid request per operation: real ids of the tenant, minimal valid bodies, live emailed
 * tokens, so an allowed caller gets one of the route's declared answers. Routes that use up or
 * destroy something get a fresh target on every call.
 */
const samples: Record<string, (caller: Caller) => SampleRequest | Promise<SampleRequest>> = {
  liveness: () => ({ path: '/health' }),
  readiness: () => ({ path: '/health/ready' }),

  register: () => ({ path: '/auth/register', body: { email: uniqueEmail('rbac'), password: strongPassword, name: 'rbac', tenantName: 'rbac org' } }),
  login: async () => {
    const account = await newAccount();
    return { path: '/auth/login', body: { email: account.email, password: account.password } };
  },
  refreshSession: async () => ({ path: '/auth/refresh', body: { refreshToken: (await newAccount()).refreshToken } }),
  logout: () => ({ path: '/auth/logout' }),
  getSession: () => ({ path: '/auth/me' }),
  switchTenant: () => ({ path: '/auth/switch-tenant', body: { tenantId } }),
  verifyEmail: async () => ({ path: '/auth/verify-email', body: { token: await mailedToken((await newAccount()).email, '/verify-email') } }),
  resendEmailVerification: async (caller) => {
    // Only an unverified address can be sent a new link.
    if (caller.kind === 'member') await User.update({ emailVerifiedAt: null }, { where: { id: caller.userId } });
    return { path: '/auth/verify-email/resend' };
  },
  requestPasswordReset: () => ({ path: '/auth/password-reset', body: { email: admin.email } }),
  confirmPasswordReset: async () => {
    const account = await newAccount();
    await t.post('/api/v1/auth/password-reset', { email: account.email });
    return { path: '/auth/password-reset/confirm', body: { token: await mailedToken(account.email, '/reset-password'), password: strongPassword } };
  },

  createInvitation: () => ({ path: '/invitations', body: { email: uniqueEmail('rbac-invitee'), role: 'viewer' } }),
  listInvitations: () => ({ path: '/invitations' }),
  acceptInvitation: async () => {
    const email = uniqueEmail('rbac-invitee');
    await t.post('/api/v1/invitations', { email, role: 'viewer' }, { token: await accessTokenOf(admin.userId) });
    return { path: `/invitations/${await mailedToken(email, '/invitations/accept')}/accept`, body: { password: strongPassword, name: 'invitee' } };
  },

  listMembers: () => ({ path: '/members' }),
  updateMemberRole: async () => ({ path: `/members/${(await addMember(t, tenantId, 'viewer')).userId}`, body: { role: 'member' } }),
  removeMember: async () => ({ path: `/members/${(await addMember(t, tenantId, 'viewer')).userId}` }),

  createProject: () => ({ path: '/projects', body: { name: `rbac ${randomUUID()}` } }),
  listProjects: () => ({ path: '/projects' }),
  getProject: () => ({ path: `/projects/${projectId}` }),
  updateProject: () => ({ path: `/projects/${projectId}`, body: { description: 'touched by the rbac table' } }),
  deleteProject: async () => ({ path: `/projects/${await freshProject()}` }),
  // No worker runs here: each allowed call leaves a queued check of the shared project behind.
  checkProjectCredentials: () => ({ path: `/projects/${projectId}/credential-checks` }),

  // A project has one scan at a time: each allowed call scans a fresh project (and leaves it queued).
  startScan: async () => ({ path: `/projects/${await freshProject()}/scans`, body: { source: gitSource } }),
  listProjectScans: () => ({ path: `/projects/${projectId}/scans` }),
  getScan: async () => ({ path: `/scans/${await sharedScan()}` }),

  // The shared project's documents have no chunks: a search finds nothing, and an answer says so without asking a model.
  searchDocuments: () => ({ path: '/search', body: { query: 'rbac table', projectId } }),
  askQuestion: () => ({ path: '/ask', body: { question: 'what does the rbac table check?', projectId } }),
  // No worker runs here: each allowed call leaves a queued ingestion of a text behind.
  ingestDocuments: async () => ({ path: `/projects/${await freshProject()}/documents`, body: { title: 'rbac', text: 'Checked by the rbac table.' } }),
  listProjectDocuments: () => ({ path: `/projects/${projectId}/documents` }),
  getDocument: async () => ({ path: `/documents/${await sharedDocument()}` }),
  deleteDocument: async () => ({ path: `/documents/${await freshDocument()}` }),

  listProjectIssues: () => ({ path: `/projects/${projectId}/issues` }),
  getIssue: async () => ({ path: `/issues/${await sharedIssue()}` }),
  triageIssue: async () => ({ path: `/issues/${await sharedIssue()}`, body: { status: 'confirmed', comment: 'checked by the rbac table' } }),

  listJobs: () => ({ path: '/jobs' }),
  getJob: async () => ({ path: `/jobs/${await finishedJob()}` }),
  streamJobEvents: async () => ({ path: `/jobs/${await finishedJob()}/events` }),
  cancelJob: async () => ({ path: `/jobs/${(await queuedJob()).id}/cancel` }),
  retryJob: async () => ({ path: `/jobs/${await failedJob()}/retry` }),

  createApiToken: () => ({ path: '/api-tokens', body: { name: 'rbac', role: 'viewer' } }),
  listApiTokens: () => ({ path: '/api-tokens' }),
  revokeApiToken: async (caller) => ({ path: `/api-tokens/${await apiTokenOwnedBy(caller.userId)}` }),

  listAuditLogs: () => ({ path: '/audit-logs' }),

  createSecret: () => ({ path: '/secrets', body: { name: `rbac-${randomUUID().slice(0, 8)}`, value: 'rbac table value' } }),
  listSecrets: () => ({ path: '/secrets' }),
  getSecret: async () => ({ path: `/secrets/${await sharedSecret()}` }),
  rotateSecret: async () => ({ path: `/secrets/${await sharedSecret()}/rotate`, body: { value: 'rbac table value, rotated' } }),
  deleteSecret: async () => ({ path: `/secrets/${await freshSecret()}` }),
  listSecretAccessLog: async () => ({ path: `/secrets/${await sharedSecret()}/access-log` }),

  // The environment's defaults (builtin) throughout: probes answer in-process, no key is needed.
  listLlmProviders: () => ({ path: '/llm/providers' }),
  getLlmSettings: () => ({ path: '/llm/settings' }),
  updateLlmSettings: () => ({ path: '/llm/settings', body: { monthlyBudgetUsd: null } }),
  getLlmUsage: () => ({ path: '/llm/usage' }),
  // No worker runs here: each allowed call leaves a queued provider check behind.
  checkLlmProviders: () => ({ path: '/llm/checks' }),
};

const allSpecs = (): AnyRouteSpec[] => t.app.routers.flatMap((r) => r.specs);

async function sampleFor(spec: AnyRouteSpec, caller: Caller): Promise<SampleRequest> {
  const sample = samples[spec.operationId];
  if (!sample) throw new Error(`No sample request for ${spec.operationId} (${spec.method.toUpperCase()} ${spec.path}): add one to the rbac table.`);
  const request = await sample(caller);
  const template = new RegExp(`^${spec.path.replace(/:\w+/g, '[^/]+')}$`);
  if (!template.test(request.path)) throw new Error(`The sample for ${spec.operationId} (${request.path}) does not match ${spec.path}.`);
  return request;
}

async function bearerOf(caller: Caller): Promise<string | undefined> {
  return caller.kind === 'member' && caller.userId ? accessTokenOf(caller.userId) : caller.apiToken;
}

async function send(spec: AnyRouteSpec, request: SampleRequest, caller: Caller): Promise<TestResponse> {
  const url = `/api/v1${request.path}`;
  const token = await bearerOf(caller);
  const opts = token ? { token } : {};
  switch (spec.method) {
    case 'get':
    case 'delete':
      return t[spec.method](url, opts);
    default:
      return t[spec.method](url, request.body ?? {}, opts);
  }
}

type Verdict = 'allowed' | 'forbidden' | 'unauthenticated';

function verdict(spec: AnyRouteSpec, caller: Caller): Verdict {
  if (spec.access === 'public') return 'allowed';
  if (!caller.role) return 'unauthenticated';
  if (spec.access === 'session') return caller.kind === 'member' ? 'allowed' : 'forbidden';
  return spec.access === 'authenticated' || can(caller.role, spec.access) ? 'allowed' : 'forbidden';
}

/** What is wrong with one answer, or null when it is what the matrix says. */
async function mismatch(spec: AnyRouteSpec, caller: Caller, res: TestResponse): Promise<string | null> {
  const expected = verdict(spec, caller);
  const route = `${spec.operationId} (${spec.method.toUpperCase()} ${spec.path}, ${String(spec.access)})`;
  const got = `${res.status} ${res.body?.type ?? ''}`.trim();
  switch (expected) {
    case 'allowed':
      // Allowed and valid: one of the route's declared answers, never 401/403.
      return String(res.status) in spec.responses ? null : `${route}: expected a declared answer (${Object.keys(spec.responses).join('/')}), got ${got}`;
    case 'unauthenticated':
      return res.status === 401 && res.body.type === '/problems/unauthorized' ? null : `${route}: expected 401 unauthorized, got ${got}`;
    case 'forbidden': {
      if (res.status !== 403 || res.body.type !== '/problems/forbidden') return `${route}: expected 403 forbidden, got ${got}`;
      const rows = await AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } });
      return rows.length === 1 && rows[0]?.outcome === 'denied' ? null : `${route}: the denial was not audited once as denied`;
    }
  }
}

const callers: Caller[] = [
  ...roles.map((role) => ({ label: `a member with role ${role}`, kind: 'member' as const, role })),
  ...roles.map((role) => ({ label: `an API token with role ${role}`, kind: 'api_token' as const, role })),
  { label: 'an anonymous caller', kind: 'anonymous', role: null },
];

beforeAll(async () => {
  t = await startTestApp({ SCAN_ALLOWED_HOSTS: '127.0.0.1' });
  admin = await registerTenant(t, 'rbac');
  tenantId = admin.tenantId;
  projectId = (await t.post('/api/v1/projects', { name: 'rbac project' }, { token: admin.accessToken })).body.id;
  for (const caller of callers) {
    if (caller.kind === 'member' && caller.role) {
      caller.userId = caller.role === 'admin' ? admin.userId : (await addMember(t, tenantId, caller.role)).userId;
    } else if (caller.kind === 'api_token') {
      const res = await t.post('/api/v1/api-tokens', { name: caller.label, role: caller.role }, { token: admin.accessToken });
      Object.assign(caller, { apiToken: res.body.token, userId: admin.userId });
    }
  }
});
afterAll(() => t.close());

test('the table has a sample request for every route, and none for routes that no longer exist', () => {
  const operationIds = allSpecs().map((s) => s.operationId);
  expect(operationIds.filter((id) => !(id in samples))).toEqual([]);
  expect(Object.keys(samples).filter((id) => !operationIds.includes(id))).toEqual([]);
});

test.each(callers)('$label gets exactly what the permission matrix grants, on every route', async (caller) => {
  const problems: string[] = [];
  for (const spec of allSpecs()) {
    const res = await send(spec, await sampleFor(spec, caller), caller);
    const problem = await mismatch(spec, caller, res);
    if (problem) problems.push(problem);
  }
  expect(problems).toEqual([]);
});
