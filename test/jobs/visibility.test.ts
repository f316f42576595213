import type { WorkflowExecutionInfo } from '@temporalio/client';
import { searchAttributes } from '../../workflows/definitions';
import { registerTenant, type Member, type TestApp } from '../harness';
import { deleteProjectAndWait, startJobsSuite, type JobBody, type JobsSuite } from './job-helpers';

/**
 * Every job workflow carries TenantId, ProjectId, JobKind and RequestedBy as search attributes and
 * a memo title (DESIGN.md, Temporal conventions), so operators and tools can find a tenant's,
 * a project's or a person's runs with a visibility list query, and never another tenant's.
 */

/** Visibility is eventually consistent: how long a closed workflow may take to be listed as such. */
const VISIBILITY_DEADLINE_MS = 30_000;

describe('workflow visibility (list queries)', () => {
  let suite: JobsSuite | undefined;
  let t: TestApp;
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
    suite = await startJobsSuite('visible');
    ({ t, admin: tenantA } = suite);
    tenantB = await registerTenant(t, 'neighbour');
    ({ projectId, job } = await deleteProjectAndWait(t, tenantA, 'doomed'));
    ({ job: otherTenantJob } = await deleteProjectAndWait(t, tenantB, 'neighbour'));
  });

  afterAll(() => suite?.stop());

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
