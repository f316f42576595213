import { z } from 'zod';
import type { Project } from '../../db';
import { createProject, getProject, listProjects, updateProject } from '../../services/projects';
import { startCredentialCheck } from '../../services/credential-checks';
import { startProjectDeletion } from '../../services/project-deletion';
import type { AppDeps } from '../app';
import { acceptedJob, idempotencyOf, jobSchema, requesterOf } from '../jobs-view';
import { ApiRouter } from '../route';
import { idParams, page, pageQuery, timestamp } from '../schemas';

const settings = z.record(z.string(), z.unknown()).refine((s) => JSON.stringify(s).length <= 16_384, 'must serialise to at most 16 KiB');
const projectBody = z.object({
  name: z.string().trim().min(1).max(120),
  description: z.string().max(2000).optional(),
  settings: settings.optional(),
});
const project = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string(),
  settings: z.record(z.string(), z.unknown()),
  createdAt: timestamp,
  updatedAt: timestamp,
});

const view = (p: Project) => ({
  id: p.id,
  name: p.name,
  description: p.description,
  settings: p.settings,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
});

export function projectsRouter(deps: AppDeps): ApiRouter {
  const { sequelize } = deps;
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/projects',
        operationId: 'createProject',
        summary: 'Create a project',
        tag: 'projects',
        access: 'projects:write',
        body: projectBody,
        responses: { 201: { description: 'Created', schema: project } },
      },
      async (ctx, { body, auth }) => {
        const created = await createProject(sequelize, ctx.state.audit, auth.tenantId, auth.userId, body);
        ctx.status = 201;
        ctx.set('Location', `/api/v1/projects/${created.id}`);
        ctx.body = view(created);
      },
    )
    .add(
      {
        method: 'get',
        path: '/projects',
        operationId: 'listProjects',
        summary: 'List projects (oldest first)',
        tag: 'projects',
        access: 'projects:read',
        query: pageQuery,
        responses: { 200: { description: 'A page of projects', schema: page(project) } },
      },
      async (ctx, { query, auth }) => {
        const result = await listProjects(auth.tenantId, query);
        ctx.body = { items: result.items.map(view), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'get',
        path: '/projects/:id',
        operationId: 'getProject',
        summary: 'Get a project',
        tag: 'projects',
        access: 'projects:read',
        params: idParams,
        responses: { 200: { description: 'The project', schema: project } },
      },
      async (ctx, { params, auth }) => {
        ctx.body = view(await getProject(auth.tenantId, params.id));
      },
    )
    .add(
      {
        method: 'patch',
        path: '/projects/:id',
        operationId: 'updateProject',
        summary: 'Update a project (name, description, settings)',
        tag: 'projects',
        access: 'projects:write',
        params: idParams,
        body: projectBody.partial(),
        responses: { 200: { description: 'The updated project', schema: project } },
      },
      async (ctx, { params, body, auth }) => {
        ctx.body = view(await updateProject(sequelize, ctx.state.audit, auth.tenantId, params.id, body));
      },
    )
    .add(
      {
        method: 'delete',
        path: '/projects/:id',
        operationId: 'deleteProject',
        summary: 'Delete a project and all its data, as a job (the project is hidden at once)',
        tag: 'projects',
        access: 'projects:delete',
        params: idParams,
        idempotent: true,
        responses: { 202: { description: 'The deletion job', schema: jobSchema } },
      },
      async (ctx, { params, auth }) => {
        const { job } = await startProjectDeletion(deps, ctx.state.audit, {
          tenantId: auth.tenantId,
          projectId: params.id,
          requestedBy: requesterOf(ctx),
          idempotency: idempotencyOf(ctx, params),
        });
        acceptedJob(ctx, job);
      },
    )
    .add(
      {
        method: 'post',
        path: '/projects/:id/credential-checks',
        operationId: 'checkProjectCredentials',
        summary: "Check that every secret reference in the project's settings resolves, as a job (verdicts on its completed event; values never leave the vault)",
        tag: 'projects',
        access: 'projects:write',
        params: idParams,
        idempotent: true,
        responses: { 202: { description: 'The credential check job', schema: jobSchema } },
      },
      async (ctx, { params, auth }) => {
        const { job } = await startCredentialCheck(deps, ctx.state.audit, {
          tenantId: auth.tenantId,
          projectId: params.id,
          requestedBy: requesterOf(ctx),
          idempotency: idempotencyOf(ctx, params),
        });
        acceptedJob(ctx, job);
      },
    );
}
