import { Op, type Sequelize, type Transaction } from 'sequelize';
import { Membership, Tenant, User, type Role } from '../db';
import { ConflictError, NotFoundError } from '../lib/errors';
import { revokeTokensOf } from './api-tokens';
import type { AuditScope } from './audit';
import { endSessions } from './auth';
import { pageInCreationOrder, type Page, type PageRequest } from './pagination';
import { roleWithin } from './permissions';

/** A membership with its user loaded (email, name): what the members routes show. */
export type Member = Membership & { user: User };

const userFields = ['id', 'email', 'name'];

/** A tenant's members, in the order they joined. */
export async function listMembers(tenantId: string, request: PageRequest): Promise<Page<Member>> {
  return pageInCreationOrder(request, ({ after, order, limit }) =>
    Membership.findAll({
      where: { [Op.and]: [{ tenantId }, after] },
      include: [{ model: User, as: 'user', attributes: userFields, required: true }],
      order,
      limit,
    }) as Promise<Member[]>,
  );
}

/**
 * The member to change, locked together with its tenant's row: membership changes of one tenant
 * run one at a time, so two admins demoting each other at once cannot leave the tenant without one.
 */
async function lockMember(tenantId: string, userId: string, transaction: Transaction): Promise<Member> {
  // NO KEY UPDATE leaves inserts referencing the tenant (projects, tokens) unblocked.
  await Tenant.findByPk(tenantId, { attributes: ['id'], transaction, lock: transaction.LOCK.NO_KEY_UPDATE });
  const member = await Membership.findOne({
    where: { tenantId, userId },
    include: [{ model: User, as: 'user', attributes: userFields, required: true }],
    transaction,
    lock: { level: transaction.LOCK.UPDATE, of: Membership },
  });
  if (!member) throw new NotFoundError('Member');
  return member as Member;
}

async function ensureAnotherAdmin(member: Member, transaction: Transaction, attempt: string): Promise<void> {
  if (member.role !== 'admin') return;
  const admins = await Membership.count({ where: { tenantId: member.tenantId, role: 'admin' }, transaction });
  if (admins <= 1) throw new ConflictError(`The last admin cannot ${attempt}: make another member admin first.`);
}

/**
 * Sets a member's role. It applies from the member's next request (authorization reads the
 * membership every time); the member's API tokens above the new role are revoked.
 */
export async function changeMemberRole(sequelize: Sequelize, audit: AuditScope, tenantId: string, userId: string, role: Role): Promise<Member> {
  return sequelize.transaction(async (transaction) => {
    const member = await lockMember(tenantId, userId, transaction);
    const previous = member.role;
    if (role !== 'admin') await ensureAnotherAdmin(member, transaction, 'be demoted');
    await member.update({ role }, { transaction });
    const revokedTokens = roleWithin(previous, role) ? 0 : await revokeTokensOf(userId, { tenantId, aboveRole: role }, transaction);
    await audit.record({ action: 'member.update_role', resourceType: 'member', resourceId: userId, details: { from: previous, to: role, revokedTokens } }, transaction);
    return member;
  });
}

/**
 * Removes a member from the tenant and ends every session of theirs there at once: access tokens
 * fail the membership check from the next request, refresh tokens and API tokens are revoked.
 */
export async function removeMember(sequelize: Sequelize, audit: AuditScope, tenantId: string, userId: string): Promise<void> {
  await sequelize.transaction(async (transaction) => {
    const member = await lockMember(tenantId, userId, transaction);
    await ensureAnotherAdmin(member, transaction, 'leave the tenant');
    await member.destroy({ transaction });
    await endSessions(userId, { tenantId }, transaction);
    const revokedTokens = await revokeTokensOf(userId, { tenantId }, transaction);
    await audit.record({ action: 'member.remove', resourceType: 'member', resourceId: userId, details: { role: member.role, revokedTokens } }, transaction);
  });
}
