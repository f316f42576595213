import type { Role } from '../db';

/**
 * The permission matrix: every action a route can demand, and the roles that hold it.
 * This is the only place that decides who may do what.
 */
export const permissionMatrix = {
  'members:read': ['admin', 'approver', 'member', 'viewer'],
  'members:manage': ['admin'],
  'invitations:manage': ['admin'],
  'projects:read': ['admin', 'approver', 'member', 'viewer'],
  'projects:write': ['admin', 'member'],
  'projects:delete': ['admin'],
  /** Setting an issue's triage status (confirmed, false positive, won't fix, …) with a comment. */
  'issues:triage': ['admin', 'approver', 'member'],
  'jobs:read': ['admin', 'approver', 'member', 'viewer'],
  'jobs:control': ['admin', 'approver', 'member'],
  'apiTokens:manage': ['admin', 'approver', 'member'],
  /** Listing and revoking every token of the tenant; without it, a caller sees only its own tokens. */
  'apiTokens:manageAll': ['admin'],
  'auditLogs:read': ['admin'],
  /** Creating, rotating, deleting secrets and reading their metadata and access log; values are never readable. */
  'secrets:manage': ['admin'],
  /** Which model providers are configured and whether they answer, and what the tenant spent on them. */
  'llm:read': ['admin', 'approver', 'member', 'viewer'],
  /** Choosing providers, models, keys (as vault references) and the monthly budget. */
  'llm:manage': ['admin'],
  /** Running a provider check, which spends tokens. */
  'llm:check': ['admin', 'approver', 'member'],
} as const satisfies Record<string, readonly Role[]>;

export type Permission = keyof typeof permissionMatrix;

export function can(role: Role, permission: Permission): boolean {
  return (permissionMatrix[permission] as readonly Role[]).includes(role);
}

const rank: Record<Role, number> = { viewer: 0, member: 1, approver: 2, admin: 3 };

/** Whether `role` grants no more than `ceiling` (an API token never outranks its creator). */
export function roleWithin(role: Role, ceiling: Role): boolean {
  return rank[role] <= rank[ceiling];
}
