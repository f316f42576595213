import { Membership, User, type Role } from '../../db';
import { hashPassword } from '../../services/passwords';
import { issueAccessToken } from '../../services/tokens';
import { strongPassword, uniqueEmail, type TestApp } from './index';

export interface TenantMember {
  userId: string;
  email: string;
  role: Role;
  accessToken: string;
}

/**
 * A member with the given role in an existing tenant, created directly in the database (the
 * invitation flow has tests of its own); used where a suite needs every role at once.
 */
export async function addMember(t: TestApp, tenantId: string, role: Role): Promise<TenantMember> {
  const email = uniqueEmail(role);
  const user = await User.create({ email, name: role, passwordHash: await hashPassword(strongPassword, 4), emailVerifiedAt: new Date() });
  await Membership.create({ tenantId, userId: user.id, role });
  const accessToken = issueAccessToken(t.config, { sub: user.id, tid: tenantId, ep: user.tokenEpoch });
  return { userId: user.id, email, role, accessToken };
}
