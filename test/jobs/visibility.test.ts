import { randomUUID } from 'node:crypto';
import type { WorkflowExecutionInfo } from '@temporalio/client';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { searchAttributes } from '../../workflows/definitions';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { createTestWorker } from '../harness/worker';

/**
 * Every job workflow carries TenantId, ProjectId, JobKind and RequestedBy as search attributes and
 * a memo title (DESIGN.md, Temporal conventions), so operators and tools can find a tenant's,
 * a project's or a person's runs with a visibility list query, and never another tenant's.
 */

/** Visibility is eventually consistent: how long a closed workflow may take to be listed as such. */
const VISIBILITY_DEADLINE_MS = 30_000;

interface JobBody {
  id: string;
  status: string;
  title: string;
  workflowId: string;
  projectId: string;
  requestedBy: string;
}

async function deleteProjectAndWait(t: TestApp, member: Member, name: string): Promise<{ projectId: string; job: JobBody }> {
  const created = await t.post('/api/v1/projects', { name }, { token: member.accessToken });
  expect(created.status).toBe(201);
  const started = await t.delete(`/api/v1/projects/${created.body.id}`, { token: member.accessToken });
  expect(started.status).toBe(202);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const job = (await t.get(`/api/v1/jobs/${started.body.id}`, { token: member.accessToken })).body as JobBody;
    if (job.status !== 'queued' && job.status !== 'running') {
      expect(job.status).toBe('completed');
      return { projectId: created.body.id, job };
    }
    if (Date.now() > deadline) throw new Error(`job ${job.id} still ${job.status} after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('workflow visibility (list queries)', () => {
  let t: TestApp;
  let worker: Worker;
  let connection: NativeConnection;
  let running: Promise<void>;
  let tenantA: Member;
  let tenantB: Member;
  let projectId: string;
  let job: JobBody;
  let otherTenantJob: JobBody;

  /** All executions `query` lists. */
  async function list(query: string): Promise<WorkflowExecutionInfo[]> {
    const found: WorkflowExecutionInfo[] = [];
    for await (const execution of t.temporal.workflow.list({ query })) found.push(execution);
    return found;
  }

  /**
   * Lists `query` until `done` holds for the result (polling with a deadline), and returns the
   * last result either way: the caller's expectations then report what was listed.
   */
  async function listUntil(query: string, done: (executions: WorkflowExecutionInfo[]) => boolean): Promise<WorkflowExecutionInfo[]> {
    const deadline = Date.now() + VISIBILITY_DEADLINE_MS;
    for (;;) {
      const executions = await list(query);
      if (done(executions) || Date.now() > deadline) return executions;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  const ids = (executions: WorkflowExecutionInfo[]) => executions.map((e) => e.workflowId);
  /** The job's workflow is listed, and closed (visibility has caught up with its completion). */
  const listsClosed = (workflowId: string) => (executions: WorkflowExecutionInfo[]) =>
    executions.some((e) => e.workflowId === workflowId && e.status.name === 'COMPLETED');

  beforeAll(async () => {
    t = await startTestApp();
    ({ worker, connection } = await createTestWorker(t));
    running = worker.run();
    tenantA = await registerTenant(t, 'visible');
    tenantB = await registerTenant(t, 'neighbour');
    ({ projectId, job } = await deleteProjectAndWait(t, tenantA, `doomed-${randomUUID()}`));
    ({ job: otherTenantJob } = await deleteProjectAndWait(t, tenantB, `neighbour-${randomUUID()}`));
  });

  afterAll(async () => {
    worker?.shutdown();
    await running;
    await connection?.close();
    await t?.close();
  });

  it('finds the deletion workflow by ProjectId and JobKind, with its search attributes and memo title', async () => {
    const query = `ProjectId = "${projectId}" AND JobKind = "deleteProject"`;
    const executions = await listUntil(query, listsClosed(job.workflowId));
    expect(ids(executions)).toEqual([job.workflowId]);
    const [execution] = executions;

    expect(execution).toMatchObject({ type: 'deleteProject', workflowId: `deleteProject-${job.id}`, taskQueue: t.config.TEMPORAL_TASK_QUEUE });
    expect(execution?.status.name).toBe('COMPLETED');
    expect(execution?.memo).toEqual({ title: job.title });
    expect(job.title).toMatch(/^Delete project “doomed-/);

    const attributes = execution?.typedSearchAttributes;
    expect(attributes?.get(searchAttributes.tenantId)).toBe(tenantA.tenantId);
    expect(attributes?.get(searchAttributes.projectId)).toBe(projectId);
    expect(attributes?.get(searchAttributes.jobKind)).toBe('deleteProject');
    expect(attributes?.get(searchAttributes.requestedBy)).toBe(`user:${tenantA.userId}`);
    expect(job.requestedBy).toBe(`user:${tenantA.userId}`);

    expect((await t.temporal.workflow.count(query)).count).toBe(1);
  });

  it('finds it by TenantId and by RequestedBy', async () => {
    const byTenant = await listUntil(`TenantId = "${tenantA.tenantId}"`, listsClosed(job.workflowId));
    expect(ids(byTenant)).toEqual([job.workflowId]); // a fresh tenant: its one job

    const byRequester = await listUntil(`RequestedBy = "user:${tenantA.userId}" AND JobKind = "deleteProject"`, listsClosed(job.workflowId));
    expect(ids(byRequester)).toEqual([job.workflowId]);
    expect(byRequester[0]?.memo).toEqual({ title: job.title });

    const closedByTenantAndKind = await listUntil(
      `TenantId = "${tenantA.tenantId}" AND JobKind = "deleteProject" AND ExecutionStatus = "Completed"`,
      listsClosed(job.workflowId),
    );
    expect(ids(closedByTenantAndKind)).toEqual([job.workflowId]);
  });

  it("never lists it in another tenant's queries", async () => {
    // Both jobs are listed under their own tenant first, so an empty answer below is not lag.
    expect(ids(await listUntil(`TenantId = "${tenantA.tenantId}"`, listsClosed(job.workflowId)))).toEqual([job.workflowId]);
    const otherTenant = await listUntil(`TenantId = "${tenantB.tenantId}"`, listsClosed(otherTenantJob.workflowId));
    expect(ids(otherTenant)).toEqual([otherTenantJob.workflowId]);

    expect(await list(`TenantId = "${tenantB.tenantId}" AND ProjectId = "${projectId}"`)).toEqual([]);
    expect(await list(`TenantId = "${tenantB.tenantId}" AND RequestedBy = "user:${tenantA.userId}"`)).toEqual([]);
    expect((await t.temporal.workflow.count(`TenantId = "${tenantB.tenantId}" AND ProjectId = "${projectId}"`)).count).toBe(0);
  });
});
