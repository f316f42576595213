import { z } from 'zod';
import { changeMemberRole, listMembers, removeMember, type Member } from '../../services/members';
import type { AppDeps } from '../app';
import { ApiRouter } from '../route';
import { noContent, page, pageQuery, role, timestamp } from '../schemas';

const userParams = z.object({ userId: z.uuid() });
const member = z.object({
  userId: z.uuid(),
  email: z.string(),
  name: z.string(),
  role,
  joinedAt: timestamp,
});

const view = (m: Member) => ({
  userId: m.user.id,
  email: m.user.email,
  name: m.user.name,
  role: m.role,
  joinedAt: m.createdAt.toISOString(),
});

export function membersRouter({ sequelize }: AppDeps): ApiRouter {
  return new ApiRouter()
    .add(
      {
        method: 'get',
        path: '/members',
        operationId: 'listMembers',
        summary: 'List the members of your tenant (in the order they joined)',
        tag: 'members',
        access: 'members:read',
        query: pageQuery,
        responses: { 200: { description: 'A page of members', schema: page(member) } },
      },
      async (ctx, { query, auth }) => {
        const result = await listMembers(auth.tenantId, query);
        ctx.body = { items: result.items.map(view), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'patch',
        path: '/members/:userId',
        operationId: 'updateMemberRole',
        summary: "Change a member's role (effective from their next request; the last admin cannot be demoted)",
        tag: 'members',
        access: 'members:manage',
        params: userParams,
        body: z.object({ role }),
        responses: { 200: { description: 'The member with the new role', schema: member } },
      },
      async (ctx, { params, body, auth }) => {
        ctx.body = view(await changeMemberRole(sequelize, ctx.state.audit, auth.tenantId, params.userId, body.role));
      },
    )
    .add(
      {
        method: 'delete',
        path: '/members/:userId',
        operationId: 'removeMember',
        summary: 'Remove a member from your tenant, ending their sessions and API tokens there (the last admin cannot leave)',
        tag: 'members',
        access: 'members:manage',
        params: userParams,
        responses: { 204: noContent },
      },
      async (ctx, { params, auth }) => {
        await removeMember(sequelize, ctx.state.audit, auth.tenantId, params.userId);
        ctx.status = 204;
      },
    );
}
