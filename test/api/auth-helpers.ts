import { randomInt } from 'node:crypto';
import { AuditLog } from '../../db';
import type { TestApp } from '../harness';

/** The token of an emailed link (`…<path>?token=<token>`). */
export function tokenFrom(mail: { text: string }, path = ''): string {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = new RegExp(`${escaped}\\?token=([A-Za-z0-9_-]+)`).exec(mail.text);
  if (!match?.[1]) throw new Error(`no ${path} token in mail:\n${mail.text}`);
  return match[1];
}

/** The token of the next mail to `email` linking to `path`, passing over others (e.g. the verification mail sent at registration). */
export async function mailedToken(t: TestApp, email: string, path: string): Promise<string> {
  for (;;) {
    const mail = await t.mailbox.next(email);
    if (mail.text.includes(`${path}?token=`)) return tokenFrom(mail, path);
  }
}

/**
 * A client address of its own (TEST-NET-2): the login throttle is keyed by client IP in a table
 * every suite of the run shares, so tests that fail sign-ins on purpose send them from their own
 * address (through X-Forwarded-For, on an app started with TRUST_PROXY=true).
 */
export function uniqueIp(): string {
  return `198.51.${randomInt(0, 256)}.${randomInt(1, 255)}`;
}

export function from(ip: string): { headers: Record<string, string> } {
  return { headers: { 'X-Forwarded-For': ip } };
}

/** The audit rows of one action (about one resource, in one tenant, by one actor), oldest first. */
export function auditRows(action: string, where: { resourceId?: string; tenantId?: string; actorId?: string } = {}): Promise<AuditLog[]> {
  return AuditLog.findAll({ where: { action, ...where }, order: [['id', 'ASC']] });
}

/** Signs in and returns the token pair, failing loudly otherwise. */
export async function signIn(t: TestApp, email: string, password: string, opts: { tenantId?: string; ip?: string } = {}) {
  const res = await t.post(
    '/api/v1/auth/login',
    { email, password, ...(opts.tenantId ? { tenantId: opts.tenantId } : {}) },
    opts.ip ? from(opts.ip) : {},
  );
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  return res.body as { accessToken: string; refreshToken: string; expiresIn: number; tokenType: string };
}
