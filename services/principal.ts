import { Op } from 'sequelize';
import { ApiToken, Membership, User } from '../db';
import { tokenDigest } from '../lib/crypto';
import { UnauthorizedError } from '../lib/errors';
import { verifyAccessToken, type JwtSettings } from './tokens';

/** Who is calling: a member of a tenant signed in with a JWT, or an API token of that tenant. */
export interface Principal {
  kind: 'user' | 'api_token';
  tenantId: string;
  role: Membership['role'];
  userId: string | null;
  apiTokenId: string | null;
}

/** API tokens are recognisable by their prefix: `af_<public part>_<secret>`. */
export const API_TOKEN_PREFIX = 'af_';

/**
 * Resolves a bearer token to a principal, reading the membership (and the user's token epoch)
 * from the database every time, so revocations, demotions and removals take effect at once.
 */
export async function authenticate(config: JwtSettings, bearer: string): Promise<Principal> {
  if (bearer.startsWith(API_TOKEN_PREFIX)) return authenticateApiToken(bearer);
  const claims = verifyAccessToken(config, bearer);
  const membership = await Membership.findOne({
    where: { tenantId: claims.tid, userId: claims.sub },
    include: [{ model: User, as: 'user', attributes: ['id', 'tokenEpoch'] }],
  });
  if (!membership?.user || membership.user.tokenEpoch !== claims.ep) {
    throw new UnauthorizedError('This session has ended: sign in again.');
  }
  return { kind: 'user', tenantId: claims.tid, role: membership.role, userId: claims.sub, apiTokenId: null };
}

async function authenticateApiToken(bearer: string): Promise<Principal> {
  const token = await ApiToken.findOne({
    where: { tokenHash: tokenDigest(bearer), revokedAt: null, [Op.or]: [{ expiresAt: null }, { expiresAt: { [Op.gt]: new Date() } }] },
  });
  if (!token) throw new UnauthorizedError('The API token is invalid, expired or revoked.');
  // Last use is kept to the minute, so a busy CI token does not write on every call.
  if (!token.lastUsedAt || Date.now() - token.lastUsedAt.getTime() > 60_000) {
    await ApiToken.update({ lastUsedAt: new Date() }, { where: { id: token.id } });
  }
  return { kind: 'api_token', tenantId: token.tenantId, role: token.role, userId: null, apiTokenId: token.id };
}
