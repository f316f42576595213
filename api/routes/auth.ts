import { z } from 'zod';
import type { User } from '../../db';
import {
  describeSession,
  login,
  logout,
  refresh,
  register,
  requestPasswordReset,
  resendVerification,
  resetPassword,
  switchTenant,
  verifyEmail,
} from '../../services/auth';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../../services/passwords';
import type { AppDeps } from '../app';
import { ApiRouter } from '../route';
import { noContent, role } from '../schemas';

export const emailAddress = z.email().max(254).toLowerCase();
/** A password being chosen; its strength is checked by the service (422 weak-password). */
export const newPassword = z.string().min(PASSWORD_MIN_LENGTH).max(PASSWORD_MAX_LENGTH);
const emailedToken = z.string().min(16).max(128);

export const tokenPair = z.object({
  accessToken: z.string(),
  refreshToken: z.string(),
  expiresIn: z.number().int().describe('Lifetime of the access token, in seconds'),
  tokenType: z.literal('Bearer'),
});
const userView = z.object({ id: z.uuid(), email: z.string(), name: z.string(), emailVerified: z.boolean() });
const tenantView = z.object({ id: z.uuid(), name: z.string() });
const registration = tokenPair.extend({ user: userView, tenant: tenantView, role });
const session = z.object({ user: userView, tenant: tenantView, role, tenants: z.array(tenantView.extend({ role })) });
const accepted = z.object({ message: z.string() });

const viewUser = (u: User) => ({ id: u.id, email: u.email, name: u.name, emailVerified: u.emailVerifiedAt !== null });

export function authRouter(deps: AppDeps): ApiRouter {
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/auth/register',
        operationId: 'register',
        summary: 'Create a tenant and its admin account, signed in (mails an email verification link)',
        tag: 'auth',
        access: 'public',
        body: z.object({
          email: emailAddress,
          password: newPassword,
          name: z.string().trim().min(1).max(120),
          tenantName: z.string().trim().min(1).max(120),
        }),
        responses: { 201: { description: 'Registered and signed in', schema: registration } },
      },
      async (ctx, { body }) => {
        const { user, tenant, role: granted, tokens } = await register(deps, ctx.state.audit, body);
        ctx.status = 201;
        ctx.body = { user: viewUser(user), tenant: { id: tenant.id, name: tenant.name }, role: granted, ...tokens };
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/login',
        operationId: 'login',
        summary: 'Sign in (to `tenantId`, or to your oldest membership)',
        tag: 'auth',
        access: 'public',
        body: z.object({ email: emailAddress, password: z.string().min(1).max(PASSWORD_MAX_LENGTH), tenantId: z.uuid().optional() }),
        responses: { 200: { description: 'Signed in', schema: tokenPair } },
      },
      async (ctx, { body }) => {
        ctx.body = await login(deps, ctx.state.audit, body, ctx.ip);
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/refresh',
        operationId: 'refreshSession',
        summary: 'Exchange a refresh token for a new token pair (the old refresh token is spent)',
        tag: 'auth',
        access: 'public',
        body: z.object({ refreshToken: z.string().min(1).max(256) }),
        responses: { 200: { description: 'A new token pair', schema: tokenPair } },
      },
      async (ctx, { body }) => {
        ctx.body = await refresh(deps, ctx.state.audit, body.refreshToken);
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/logout',
        operationId: 'logout',
        summary: 'End every session of your account, access tokens included',
        tag: 'auth',
        access: 'session',
        responses: { 204: noContent },
      },
      async (ctx, { auth }) => {
        await logout(deps, ctx.state.audit, auth.userId);
        ctx.status = 204;
      },
    )
    .add(
      {
        method: 'get',
        path: '/auth/me',
        operationId: 'getSession',
        summary: 'You, the current tenant and your role, and all your tenants',
        tag: 'auth',
        access: 'session',
        responses: { 200: { description: 'The session', schema: session } },
      },
      async (ctx, { auth }) => {
        const { user, tenant, role: current, memberships } = await describeSession(auth.userId, auth.tenantId);
        const tenants = memberships.map((m) => ({ id: m.tenant.id, name: m.tenant.name, role: m.role }));
        ctx.body = { user: viewUser(user), tenant: { id: tenant.id, name: tenant.name }, role: current, tenants };
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/switch-tenant',
        operationId: 'switchTenant',
        summary: 'Get a token pair for another of your tenants',
        tag: 'auth',
        access: 'session',
        body: z.object({ tenantId: z.uuid() }),
        responses: { 200: { description: 'Signed in to the other tenant', schema: tokenPair } },
      },
      async (ctx, { body, auth }) => {
        ctx.body = await switchTenant(deps, ctx.state.audit, auth.userId, body.tenantId);
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/verify-email',
        operationId: 'verifyEmail',
        summary: 'Confirm your email address with the mailed token',
        tag: 'auth',
        access: 'public',
        body: z.object({ token: emailedToken }),
        responses: { 204: noContent },
      },
      async (ctx, { body }) => {
        await verifyEmail(deps, ctx.state.audit, body.token);
        ctx.status = 204;
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/verify-email/resend',
        operationId: 'resendEmailVerification',
        summary: 'Mail a new verification link (earlier links stop working)',
        tag: 'auth',
        access: 'session',
        responses: { 202: { description: 'A link is on its way', schema: accepted } },
      },
      async (ctx, { auth }) => {
        await resendVerification(deps, ctx.state.audit, auth.userId);
        ctx.status = 202;
        ctx.body = { message: 'A new verification link is on its way.' };
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/password-reset',
        operationId: 'requestPasswordReset',
        summary: 'Mail a password reset link (valid 30 minutes) if an account has this email',
        tag: 'auth',
        access: 'public',
        body: z.object({ email: emailAddress }),
        responses: { 202: { description: 'Accepted, whether or not the account exists', schema: accepted } },
      },
      async (ctx, { body }) => {
        await requestPasswordReset(deps, ctx.state.audit, body.email);
        ctx.status = 202;
        ctx.body = { message: 'If an account has this email address, a link to reset its password is on its way.' };
      },
    )
    .add(
      {
        method: 'post',
        path: '/auth/password-reset/confirm',
        operationId: 'confirmPasswordReset',
        summary: 'Set a new password with the mailed token; ends every session of the account',
        tag: 'auth',
        access: 'public',
        body: z.object({ token: emailedToken, password: newPassword }),
        responses: { 204: noContent },
      },
      async (ctx, { body }) => {
        await resetPassword(deps, ctx.state.audit, body.token, body.password);
        ctx.status = 204;
      },
    );
}
