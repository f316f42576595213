import { randomInt } from 'node:crypto';
import { Op, type Sequelize, type Transaction, type WhereOptions } from 'sequelize';
import { ApiToken, roles, type Role } from '../db';
import { randomToken, tokenDigest } from '../lib/crypto';
import { ForbiddenError, NotFoundError } from '../lib/errors';
import type { AuditScope } from './audit';
import { pageInCreationOrder, type Page, type PageRequest } from './pagination';
import { can, roleWithin } from './permissions';
import { API_TOKEN_PREFIX, type Principal } from './principal';

/*
 * API tokens belong to the user who created them. Everyone who may manage tokens lists and
 * revokes their own; holders of `apiTokens:manageAll` (admins) list and revoke every token of
 * the tenant. A token acting for its owner (CI minting a short-lived token) creates tokens owned
 * by that same user, so removing the user revokes the whole lot (see services/members.ts).
 */

export interface ApiTokenInput {
  name: string;
  role: Role;
  expiresAt?: Date;
}

const PUBLIC_PART_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * `af_<8-char public part>_<secret>`. The public part has no `_`, so it can be read back from a
 * token (it is stored, in `prefix`, to let people recognise their tokens); only the digest of
 * the whole token is stored, never the token.
 */
function mintToken(): { prefix: string; token: string } {
  const publicPart = Array.from({ length: 8 }, () => PUBLIC_PART_ALPHABET.charAt(randomInt(PUBLIC_PART_ALPHABET.length))).join('');
  const prefix = `${API_TOKEN_PREFIX}${publicPart}`;
  return { prefix, token: `${prefix}_${randomToken()}` };
}

/** The user whose tokens the caller manages: itself, or the owner of the calling token. */
async function ownerOf(auth: Principal): Promise<string | null> {
  if (auth.userId) return auth.userId;
  if (!auth.apiTokenId) return null;
  const caller = await ApiToken.findByPk(auth.apiTokenId, { attributes: ['createdBy'] });
  return caller?.createdBy ?? null;
}

async function visibleTo(auth: Principal): Promise<WhereOptions<ApiToken>> {
  if (can(auth.role, 'apiTokens:manageAll')) return { tenantId: auth.tenantId };
  const owner = await ownerOf(auth);
  // An ownerless caller (its creator's account is gone) owns nothing: an empty IN list matches no row.
  return { tenantId: auth.tenantId, createdBy: { [Op.in]: owner ? [owner] : [] } };
}

/** Creates a token of at most the caller's role; the token itself is returned here and never again. */
export async function createApiToken(
  sequelize: Sequelize,
  audit: AuditScope,
  auth: Principal,
  input: ApiTokenInput,
): Promise<{ apiToken: ApiToken; token: string }> {
  if (!roleWithin(input.role, auth.role)) {
    throw new ForbiddenError(`A token cannot hold a role (${input.role}) above yours (${auth.role}).`);
  }
  const owner = await ownerOf(auth);
  const { prefix, token } = mintToken();
  return sequelize.transaction(async (transaction) => {
    const apiToken = await ApiToken.create(
      {
        tenantId: auth.tenantId,
        name: input.name,
        role: input.role,
        expiresAt: input.expiresAt ?? null,
        prefix,
        tokenHash: tokenDigest(token),
        createdBy: owner,
      },
      { transaction },
    );
    await audit.record(
      { action: 'api_token.create', resourceType: 'api_token', resourceId: apiToken.id, details: { name: input.name, role: input.role, prefix } },
      transaction,
    );
    return { apiToken, token };
  });
}

/** The caller's tokens (every token of the tenant for admins), revoked and expired ones included. */
export async function listApiTokens(auth: Principal, request: PageRequest): Promise<Page<ApiToken>> {
  const visible = await visibleTo(auth);
  return pageInCreationOrder(request, ({ after, order, limit }) => ApiToken.findAll({ where: { [Op.and]: [visible, after] }, order, limit }));
}

/** Revokes a token at once; revoking a revoked token changes nothing (its first revocation time stays). */
export async function revokeApiToken(sequelize: Sequelize, audit: AuditScope, auth: Principal, id: string): Promise<void> {
  const visible = await visibleTo(auth);
  await sequelize.transaction(async (transaction) => {
    const apiToken = await ApiToken.findOne({ where: { [Op.and]: [visible, { id }] }, transaction, lock: transaction.LOCK.UPDATE });
    if (!apiToken) throw new NotFoundError('API token');
    const alreadyRevoked = apiToken.revokedAt !== null;
    if (!alreadyRevoked) await apiToken.update({ revokedAt: new Date() }, { transaction });
    await audit.record({ action: 'api_token.revoke', resourceType: 'api_token', resourceId: id, details: { alreadyRevoked } }, transaction);
  });
}

/**
 * Revokes a user's tokens in a tenant when the user leaves (all of them) or is demoted (those
 * above the new role): a token never outlives or outranks its owner's membership.
 */
export async function revokeTokensOf(userId: string, scope: { tenantId: string; aboveRole?: Role }, transaction: Transaction): Promise<number> {
  const where: WhereOptions<ApiToken>[] = [{ tenantId: scope.tenantId, createdBy: userId, revokedAt: null }];
  const { aboveRole } = scope;
  if (aboveRole) where.push({ role: { [Op.in]: roles.filter((r) => !roleWithin(r, aboveRole)) } });
  const [count] = await ApiToken.update({ revokedAt: new Date() }, { where: { [Op.and]: where }, transaction });
  return count;
}
