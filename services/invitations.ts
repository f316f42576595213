import { Op, col, fn, where as sqlWhere, type Transaction } from 'sequelize';
import { Invitation, Membership, Tenant, User, type Role } from '../db';
import { randomToken, tokenDigest } from '../lib/crypto';
import { ConflictError, NotFoundError } from '../lib/errors';
import type { AuditScope } from './audit';
import {
  InvalidTokenError,
  actAs,
  checkCredentials,
  conflictOnDuplicate,
  emailLink,
  findUserByEmail,
  issueTokenPair,
  mailAfterCommit,
  type AuthDeps,
  type TokenPair,
} from './auth';
import { pageInCreationOrder, type Page, type PageRequest } from './pagination';
import { assertStrongPassword, hashPassword } from './passwords';

export interface InvitationInput {
  email: string;
  role: Role;
}

/** Invites an email into the tenant with a role; the mailed link holds a single-use token. Inviting again replaces the pending invitation. */
export async function createInvitation(deps: AuthDeps, audit: AuditScope, tenantId: string, invitedBy: string | null, input: InvitationInput): Promise<Invitation> {
  const token = randomToken();
  const ttlHours = deps.config.INVITATION_TTL_HOURS;
  return deps.sequelize.transaction(async (transaction) => {
    const tenant = await Tenant.findByPk(tenantId, { transaction });
    if (!tenant) throw new NotFoundError('Tenant');
    const existing = await findUserByEmail(input.email, transaction);
    if (existing && (await Membership.count({ where: { tenantId, userId: existing.id }, transaction })) > 0) {
      throw new ConflictError(`${input.email} is already a member of this tenant.`);
    }
    await Invitation.destroy({
      where: { [Op.and]: [{ tenantId, acceptedAt: null }, sqlWhere(fn('lower', col('email')), input.email.toLowerCase())] },
      transaction,
    });
    const invitation = await Invitation.create(
      {
        tenantId,
        email: input.email,
        role: input.role,
        tokenHash: tokenDigest(token),
        invitedBy,
        expiresAt: new Date(Date.now() + ttlHours * 3_600_000),
      },
      { transaction },
    );
    await audit.record(
      { action: 'invitation.create', resourceType: 'invitation', resourceId: invitation.id, details: { email: input.email, role: input.role } },
      transaction,
    );
    mailAfterCommit(deps, transaction, {
      to: input.email,
      subject: `You are invited to ${tenant.name} on AuditFlow`,
      text:
        `Hello,\n\nYou are invited to join ${tenant.name} on AuditFlow as ${input.role}. ` +
        `Accept within ${ttlHours} hours by opening this link:\n\n${emailLink(deps.config, '/invitations/accept', token)}\n\n` +
        'If you did not expect this invitation, ignore this message.\n',
    });
    return invitation;
  });
}

/** Invitations neither accepted nor expired, oldest first. */
export function listPendingInvitations(tenantId: string, request: PageRequest): Promise<Page<Invitation>> {
  return pageInCreationOrder(request, ({ after, order, limit }) =>
    Invitation.findAll({ where: { [Op.and]: [{ tenantId, acceptedAt: null, expiresAt: { [Op.gt]: new Date() } }, after] }, order, limit }),
  );
}

export interface Acceptance {
  password: string;
  name?: string;
}

/** Who accepts: an existing account (password checked) or a new one; `join` yields the user inside the accepting transaction. */
interface Joiner {
  newAccount: boolean;
  join(transaction: Transaction): Promise<User>;
}

async function existingAccountJoiner(deps: AuthDeps, audit: AuditScope, invitation: Invitation, password: string, clientIp: string): Promise<Joiner> {
  const { user, signedIn } = await checkCredentials(deps, audit, 'invitation.accept', { email: invitation.email, password }, clientIp);
  if ((await Membership.count({ where: { tenantId: invitation.tenantId, userId: user.id } })) > 0) {
    await signedIn(); // the password was right: this is no guess to count
    throw new ConflictError('You are already a member of this tenant.');
  }
  return {
    newAccount: false,
    async join(transaction) {
      await signedIn(transaction);
      // The link reached this address, which verifies it.
      if (!user.emailVerifiedAt) await user.update({ emailVerifiedAt: new Date() }, { transaction });
      return user;
    },
  };
}

async function newAccountJoiner(deps: AuthDeps, invitation: Invitation, input: Acceptance): Promise<Joiner> {
  const { email } = invitation;
  const name = input.name ?? email.split('@')[0] ?? email;
  assertStrongPassword(input.password, [email, name]);
  const passwordHash = await hashPassword(input.password, deps.config.BCRYPT_COST);
  return {
    newAccount: true,
    join: (transaction) => User.create({ email, name, passwordHash, emailVerifiedAt: new Date() }, { transaction }),
  };
}

/**
 * Accepts an invitation: creates the account with this password when the email has none (its
 * address then counts as verified), otherwise checks the password like a sign-in, under the same
 * limits. Adds the membership and signs in to the tenant.
 */
export async function acceptInvitation(deps: AuthDeps, audit: AuditScope, token: string, input: Acceptance, clientIp: string): Promise<TokenPair> {
  const pending = await Invitation.findOne({ where: { tokenHash: tokenDigest(token), acceptedAt: null, expiresAt: { [Op.gt]: new Date() } } });
  if (!pending) throw new InvalidTokenError();
  const joiner = (await findUserByEmail(pending.email))
    ? await existingAccountJoiner(deps, audit, pending, input.password, clientIp)
    : await newAccountJoiner(deps, pending, input);

  return conflictOnDuplicate(
    () =>
      deps.sequelize.transaction(async (transaction) => {
        const now = new Date();
        // The claim is atomic: a link accepted twice at once works once.
        const [claimed] = await Invitation.update(
          { acceptedAt: now },
          { where: { id: pending.id, acceptedAt: null, expiresAt: { [Op.gt]: now } }, transaction },
        );
        if (claimed === 0) throw new InvalidTokenError();
        const user = await joiner.join(transaction);
        await Membership.create({ tenantId: pending.tenantId, userId: user.id, role: pending.role }, { transaction });
        const tokens = await issueTokenPair(deps.config, { user, tenantId: pending.tenantId }, transaction);
        actAs(audit, user.id, pending.tenantId);
        await audit.record(
          { action: 'invitation.accept', resourceType: 'invitation', resourceId: pending.id, details: { role: pending.role, newAccount: joiner.newAccount } },
          transaction,
        );
        return tokens;
      }),
    'You are already a member of this tenant, or your account was just created by a concurrent request: sign in.',
  );
}
