import { z } from 'zod';
import type { Invitation } from '../../db';
import { acceptInvitation, createInvitation, listPendingInvitations } from '../../services/invitations';
import type { AppDeps } from '../app';
import { ApiRouter } from '../route';
import { page, pageQuery, role, timestamp } from '../schemas';
import { emailAddress, newPassword, tokenPair } from './auth';

const invitation = z.object({
  id: z.uuid(),
  email: z.string(),
  role,
  invitedBy: z.uuid().nullable(),
  expiresAt: timestamp,
  createdAt: timestamp,
});

const view = (i: Invitation) => ({
  id: i.id,
  email: i.email,
  role: i.role,
  invitedBy: i.invitedBy,
  expiresAt: i.expiresAt.toISOString(),
  createdAt: i.createdAt.toISOString(),
});

export function invitationsRouter(deps: AppDeps): ApiRouter {
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/invitations',
        operationId: 'createInvitation',
        summary: 'Invite someone into your tenant with a role (mails a single-use link; inviting again replaces it)',
        tag: 'invitations',
        access: 'invitations:manage',
        body: z.object({ email: emailAddress, role }),
        responses: { 201: { description: 'Invited', schema: invitation } },
      },
      async (ctx, { body, auth }) => {
        const created = await createInvitation(deps, ctx.state.audit, auth.tenantId, auth.userId, body);
        ctx.status = 201;
        ctx.body = view(created);
      },
    )
    .add(
      {
        method: 'get',
        path: '/invitations',
        operationId: 'listInvitations',
        summary: 'List pending invitations (oldest first)',
        tag: 'invitations',
        access: 'invitations:manage',
        query: pageQuery,
        responses: { 200: { description: 'A page of pending invitations', schema: page(invitation) } },
      },
      async (ctx, { query, auth }) => {
        const result = await listPendingInvitations(auth.tenantId, query);
        ctx.body = { items: result.items.map(view), nextCursor: result.nextCursor };
      },
    )
    .add(
      {
        method: 'post',
        path: '/invitations/:token/accept',
        operationId: 'acceptInvitation',
        summary: 'Accept an invitation: a new account gets this password, an existing one must give its own; signs in to the tenant',
        tag: 'invitations',
        access: 'public',
        params: z.object({ token: z.string().min(16).max(128) }),
        body: z.object({ password: newPassword, name: z.string().trim().min(1).max(120).optional() }),
        responses: { 200: { description: 'Joined and signed in to the tenant', schema: tokenPair } },
      },
      async (ctx, { params, body }) => {
        ctx.body = await acceptInvitation(deps, ctx.state.audit, params.token, body, ctx.ip);
      },
    );
}
