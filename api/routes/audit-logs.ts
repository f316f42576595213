import { z } from 'zod';
import type { ActorType, AuditLog, AuditOutcome } from '../../db';
import { listAuditLogs } from '../../services/audit';
import type { AppDeps } from '../app';
import { ApiRouter } from '../route';
import { page, pageQuery, timestamp } from '../schemas';

const actorTypes = ['user', 'api_token', 'anonymous', 'system'] as const satisfies readonly ActorType[];
const outcomes = ['success', 'failure', 'denied'] as const satisfies readonly AuditOutcome[];

const auditLogQuery = pageQuery.extend({
  actorId: z.string().max(128).optional(),
  action: z.string().max(200).optional(),
  resourceType: z.string().max(64).optional(),
  resourceId: z.string().max(128).optional(),
  outcome: z.enum(outcomes).optional(),
  from: timestamp.transform((s) => new Date(s)).optional().describe('Entries at or after this time'),
  to: timestamp.transform((s) => new Date(s)).optional().describe('Entries before this time'),
});
const auditLog = z.object({
  id: z.string().describe('Increasing with time; a string because it is a 64-bit integer'),
  actorType: z.enum(actorTypes),
  actorId: z.string().nullable().describe('The user id, or the API token id, that acted'),
  action: z.string(),
  resourceType: z.string().nullable(),
  resourceId: z.string().nullable(),
  outcome: z.enum(outcomes),
  requestId: z.string().nullable().describe('The X-Request-Id of the request that wrote the entry'),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  createdAt: timestamp,
});

const view = (a: AuditLog) => ({
  id: a.id,
  actorType: a.actorType,
  actorId: a.actorId,
  action: a.action,
  resourceType: a.resourceType,
  resourceId: a.resourceId,
  outcome: a.outcome,
  requestId: a.requestId,
  ip: a.ip,
  userAgent: a.userAgent,
  details: a.details,
  createdAt: a.createdAt.toISOString(),
});

export function auditLogsRouter(_deps: AppDeps): ApiRouter {
  return new ApiRouter().add(
    {
      method: 'get',
      path: '/audit-logs',
      operationId: 'listAuditLogs',
      summary: "Your tenant's audit trail, newest first, filtered by actor, action, resource, outcome and time range",
      tag: 'audit-logs',
      access: 'auditLogs:read',
      query: auditLogQuery,
      responses: { 200: { description: 'A page of audit entries', schema: page(auditLog) } },
    },
    async (ctx, { query, auth }) => {
      const result = await listAuditLogs(auth.tenantId, query);
      ctx.body = { items: result.items.map(view), nextCursor: result.nextCursor };
    },
  );
}
