import { randomUUID } from 'node:crypto';
import { AuditLog, Project } from '../../db';
import { archiveExpiredAuditLogs } from '../../services/audit';
import { registerTenant, startTestApp, type Member, type TestApp, type TestResponse } from '../harness';
import { addMember } from '../harness/members';

let t: TestApp;

/** A fresh tenant with an admin, a member and a viewer, so each test reads a trail of its own. */
async function newTenant() {
  const admin = await registerTenant(t, 'audit');
  return {
    tenantId: admin.tenantId,
    admin,
    member: await addMember(t, admin.tenantId, 'member'),
    viewer: await addMember(t, admin.tenantId, 'viewer'),
  };
}

const rowsOf = (res: TestResponse) => AuditLog.findAll({ where: { requestId: res.headers['x-request-id'] } });

async function readTrail(admin: Member, query = ''): Promise<Array<Record<string, unknown>>> {
  const res = await t.get(`/api/v1/audit-logs?limit=100${query}`, { token: admin.accessToken });
  expect(res.status).toBe(200);
  return res.body.items;
}

beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t.close());

describe('what the audit log records', () => {
  test('a successful change writes exactly one row, with actor, tenant, action, resource, request id, ip, user agent, outcome and time', async () => {
    const { tenantId, member } = await newTenant();
    const res = await t.post('/api/v1/projects', { name: 'audited' }, { token: member.accessToken, headers: { 'User-Agent': 'audit-spec/1.0' } });
    expect(res.status).toBe(201);

    const rows = await rowsOf(res);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      tenantId,
      actorType: 'user',
      actorId: member.userId,
      action: 'project.create',
      resourceType: 'project',
      resourceId: res.body.id,
      outcome: 'success',
      requestId: res.headers['x-request-id'],
      ip: expect.stringMatching(/127\.0\.0\.1/),
      userAgent: 'audit-spec/1.0',
      createdAt: expect.any(Date),
    });
  });

  test('a request id sent by the client is kept and recorded', async () => {
    const { member } = await newTenant();
    const requestId = `client-${randomUUID()}`;
    const res = await t.post('/api/v1/projects', { name: 'traced' }, { token: member.accessToken, headers: { 'X-Request-Id': requestId } });
    expect(res.headers['x-request-id']).toBe(requestId);
    expect(await AuditLog.count({ where: { requestId } })).toBe(1);
  });

  test('a mutating request that fails validation still writes exactly one row, as a failure', async () => {
    const { member } = await newTenant();
    const res = await t.post('/api/v1/projects', { name: '' }, { token: member.accessToken });
    expect(res.status).toBe(400);
    const rows = await rowsOf(res);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actorId: member.userId, outcome: 'failure', details: { status: 400 } });
  });

  test('a search sent as a POST writes no row, while a change still writes its own', async () => {
    const { member } = await newTenant();
    const project = await t.post('/api/v1/projects', { name: 'searched' }, { token: member.accessToken });
    expect(project.status).toBe(201);
    const searched = await t.post('/api/v1/search', { query: 'backoff', projectId: project.body.id, mode: 'keyword' }, { token: member.accessToken });
    expect(searched.status).toBe(200);
    const refused = await t.post('/api/v1/search', { query: '' }, { token: member.accessToken });
    expect(refused.status).toBe(400);

    expect(await rowsOf(searched)).toEqual([]);
    expect(await rowsOf(refused)).toEqual([]);
    expect((await rowsOf(project)).map((r) => r.action)).toEqual(['project.create']);
  });

  test('an authorization denial writes one row, as denied, naming the permission', async () => {
    const { viewer } = await newTenant();
    for (const [res, permission] of [
      [await t.post('/api/v1/projects', { name: 'not allowed' }, { token: viewer.accessToken }), 'projects:write'],
      [await t.get('/api/v1/audit-logs', { token: viewer.accessToken }), 'auditLogs:read'],
    ] as const) {
      expect(res.status).toBe(403);
      const rows = await rowsOf(res);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ actorId: viewer.userId, outcome: 'denied', details: { status: 403, permission } });
    }
  });

  test('a change that fails leaves neither the change nor a success row', async () => {
    const { member } = await newTenant();
    await t.post('/api/v1/projects', { name: 'taken' }, { token: member.accessToken });
    const res = await t.post('/api/v1/projects', { name: 'Taken', description: 'second' }, { token: member.accessToken });
    expect(res.status).toBe(409);
    expect(await Project.count({ where: { description: 'second', createdBy: member.userId } })).toBe(0);
    expect((await rowsOf(res)).map((r) => r.outcome)).toEqual(['failure']);
  });

  test('a change and its audit row commit together: when the row cannot be written, the change is rolled back', async () => {
    const { tenantId, member } = await newTenant();
    // A fault injected into the real database, for this tenant only: its project.create rows are refused.
    const refuse = `refuse_audit_${randomUUID().replaceAll('-', '')}`;
    await t.sequelize.query(`
      CREATE FUNCTION ${refuse}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.tenant_id = '${tenantId}' AND NEW.action = 'project.create' THEN RAISE EXCEPTION 'audit row refused'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER ${refuse} BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION ${refuse}();
    `);
    try {
      const res = await t.post('/api/v1/projects', { name: 'never audited' }, { token: member.accessToken });
      expect(res.status).toBe(500);
      expect(await Project.count({ where: { tenantId } })).toBe(0);
      expect((await rowsOf(res)).map((r) => r.outcome)).toEqual(['failure']);
    } finally {
      await t.sequelize.query(`DROP TRIGGER ${refuse} ON audit_logs; DROP FUNCTION ${refuse}();`);
    }
  });
});

describe('reading the audit log', () => {
  test('an admin reads the tenant’s trail newest first, page by page', async () => {
    const { admin, member } = await newTenant();
    const created: string[] = [];
    for (const name of ['one', 'two', 'three', 'four']) created.push((await t.post('/api/v1/projects', { name }, { token: member.accessToken })).body.id);

    const first = await t.get('/api/v1/audit-logs?limit=2', { token: admin.accessToken });
    expect(first.status).toBe(200);
    const second = await t.get(`/api/v1/audit-logs?limit=2&cursor=${first.body.nextCursor}`, { token: admin.accessToken });
    const third = await t.get(`/api/v1/audit-logs?limit=2&cursor=${second.body.nextCursor}`, { token: admin.accessToken });
    expect(third.body.nextCursor).toBeNull();
    const items = [...first.body.items, ...second.body.items, ...third.body.items];
    expect(items.map((i) => i.resourceId)).toEqual([...created.reverse(), admin.userId]);
    expect(items.at(-1)).toMatchObject({ action: 'auth.register', actorId: admin.userId });
    expect(items[0]).toMatchObject({ actorType: 'user', actorId: member.userId, action: 'project.create', resourceType: 'project', outcome: 'success' });
  });

  test('filters by actor, action, resource, outcome and time range', async () => {
    const { admin, member, viewer } = await newTenant();
    const byAdmin = await t.post('/api/v1/projects', { name: 'by admin' }, { token: admin.accessToken });
    const byMember = await t.post('/api/v1/projects', { name: 'by member' }, { token: member.accessToken });
    const update = await t.patch(`/api/v1/projects/${byMember.body.id}`, { description: 'changed' }, { token: member.accessToken });
    const denied = await t.post('/api/v1/projects', { name: 'by viewer' }, { token: viewer.accessToken });
    const requestIds = (list: Array<Record<string, unknown>>) => list.map((i) => i.requestId);
    const id = (res: TestResponse) => res.headers['x-request-id'];

    expect(requestIds(await readTrail(admin, `&actorId=${member.userId}`))).toEqual([id(update), id(byMember)]);
    expect(requestIds(await readTrail(admin, '&action=project.update'))).toEqual([id(update)]);
    expect(requestIds(await readTrail(admin, `&resourceType=project&resourceId=${byMember.body.id}`))).toEqual([id(update), id(byMember)]);
    expect(requestIds(await readTrail(admin, '&outcome=denied'))).toEqual([id(denied)]);

    const [memberRow] = await rowsOf(byMember);
    const at = encodeURIComponent(memberRow!.createdAt.toISOString());
    expect(requestIds(await readTrail(admin, `&from=${at}`))).toEqual([id(denied), id(update), id(byMember)]);
    expect(requestIds(await readTrail(admin, `&to=${at}&action=project.create`))).toEqual([id(byAdmin)]);
  });

  test("another tenant's entries never show", async () => {
    const mine = await newTenant();
    const theirs = await newTenant();
    const res = await t.post('/api/v1/projects', { name: 'theirs' }, { token: theirs.member.accessToken });
    expect(await readTrail(mine.admin, `&resourceId=${res.body.id}`)).toEqual([]);
    expect(await readTrail(mine.admin, `&actorId=${theirs.member.userId}`)).toEqual([]);
  });

  test('bad filters answer 400', async () => {
    const { admin } = await newTenant();
    for (const query of ['outcome=maybe', 'from=yesterday', `action=${'x'.repeat(201)}`, 'limit=1000']) {
      const res = await t.get(`/api/v1/audit-logs?${query}`, { token: admin.accessToken });
      expect(res.status).toBe(400);
      expect(res.body.type).toBe('/problems/validation-error');
    }
  });
});

describe('the audit log is append-only in the database', () => {
  async function anyRowOf(tenantId: string): Promise<string> {
    const [rows] = await t.sequelize.query('SELECT id FROM audit_logs WHERE tenant_id = :tenantId LIMIT 1', { replacements: { tenantId } });
    return (rows as Array<{ id: string }>)[0]!.id;
  }

  test('UPDATE and DELETE are refused', async () => {
    const { tenantId, member } = await newTenant();
    await t.post('/api/v1/projects', { name: 'row to tamper with' }, { token: member.accessToken });
    const id = await anyRowOf(tenantId);

    await expect(t.sequelize.query("UPDATE audit_logs SET outcome = 'denied' WHERE id = :id", { replacements: { id } })).rejects.toThrow(
      'audit_logs is append-only: UPDATE refused',
    );
    await expect(t.sequelize.query('DELETE FROM audit_logs WHERE id = :id', { replacements: { id } })).rejects.toThrow(
      'audit_logs is append-only: DELETE refused',
    );
    expect(await AuditLog.findByPk(id)).toMatchObject({ outcome: 'success' });
  });

  test('TRUNCATE is refused', async () => {
    // Inside a transaction rolled back in any case, so a regression could not wipe the shared table.
    const transaction = await t.sequelize.transaction();
    try {
      await expect(t.sequelize.query('TRUNCATE audit_logs', { transaction })).rejects.toThrow('audit_logs is append-only: TRUNCATE refused');
    } finally {
      await transaction.rollback();
    }
  });

  test('rows past retention are moved to audit_logs_archive, unchanged, never deleted outright', async () => {
    const { tenantId } = await newTenant();
    const marker = `test.archive.${randomUUID()}`;
    await t.sequelize.query(
      `INSERT INTO audit_logs (tenant_id, actor_type, action, outcome, details, created_at) VALUES
         (:tenantId, 'system', :old, 'success', '{"kept": true}', now() - interval '400 days'),
         (:tenantId, 'system', :recent, 'success', '{}', now() - interval '5 days')`,
      { replacements: { tenantId, old: `${marker}.old`, recent: `${marker}.recent` } },
    );
    const [[before]] = (await t.sequelize.query('SELECT * FROM audit_logs WHERE action = :a', { replacements: { a: `${marker}.old` } })) as [
      Array<Record<string, unknown>>,
      unknown,
    ];

    expect(await archiveExpiredAuditLogs(t.sequelize, 365)).toEqual(expect.any(Number));

    const [live] = await t.sequelize.query('SELECT action FROM audit_logs WHERE action LIKE :m', { replacements: { m: `${marker}%` } });
    const [archived] = await t.sequelize.query('SELECT * FROM audit_logs_archive WHERE action LIKE :m', { replacements: { m: `${marker}%` } });
    expect(live).toEqual([{ action: `${marker}.recent` }]);
    expect(archived).toEqual([{ ...before, archived_at: expect.any(Date) }]);
  });
});
