import { randomUUID } from 'node:crypto';
import { Op, UniqueConstraintError, col, fn, where as sqlWhere, type Sequelize, type Transaction } from 'sequelize';
import { EmailVerification, Membership, PasswordReset, RefreshToken, Tenant, User, type Role } from '../db';
import type { Config } from '../lib/config';
import { randomToken, tokenDigest } from '../lib/crypto';
import { AppError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError } from '../lib/errors';
import type { Logger } from '../lib/logger';
import type { Mail, Mailer } from '../lib/mailer';
import type { AuditScope } from './audit';
import { LoginThrottledError, startLoginAttempt, type LoginAttempt } from './login-throttle';
import { assertStrongPassword, hashCostDiffers, hashPassword, verifyAgainstNothing, verifyPassword } from './passwords';
import { issueAccessToken } from './tokens';

export interface AuthDeps {
  sequelize: Sequelize;
  config: Config;
  mailer: Mailer;
  logger: Logger;
}

export interface TokenPair {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  tokenType: 'Bearer';
}

const PASSWORD_RESET_TTL_MS = 30 * 60_000;
const EMAIL_VERIFICATION_TTL_MS = 48 * 3_600_000;

export class InvalidTokenError extends AppError {
  constructor() {
    super(400, 'invalid-token', 'This link is invalid, already used or expired.');
  }
}

/** One answer for an unknown email and a wrong password. */
export class InvalidCredentialsError extends AppError {
  constructor() {
    super(401, 'invalid-credentials', 'The email or password is incorrect.');
  }
}

export function findUserByEmail(email: string, transaction?: Transaction): Promise<User | null> {
  // Matches the unique index on lower(email).
  return User.findOne({ where: sqlWhere(fn('lower', col('email')), email.toLowerCase()), transaction });
}

/** Maps a unique violation (a concurrent request created the same row) to 409. */
export async function conflictOnDuplicate<T>(work: () => Promise<T>, message: string): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof UniqueConstraintError) throw new ConflictError(message);
    throw err;
  }
}

/** From here on the request acts as this user (it arrived without a bearer token). */
export function actAs(audit: AuditScope, userId: string, tenantId: string | null): void {
  audit.actor = { type: 'user', id: userId, tenantId };
}

/** A link to the web app carrying an emailed token. */
export function emailLink(config: Config, path: string, token: string): string {
  return `${config.PUBLIC_URL.replace(/\/+$/, '')}${path}?token=${token}`;
}

/**
 * Mail leaves once the change is committed and never holds up the answer (so its latency reveals
 * nothing, e.g. whether a reset was sent). A failure is logged without the message: it carries a token.
 */
export function mailAfterCommit(deps: Pick<AuthDeps, 'mailer' | 'logger'>, transaction: Transaction, mail: Mail): void {
  transaction.afterCommit(() => {
    void deps.mailer.send(mail).catch((err: unknown) => {
      deps.logger.error({ subject: mail.subject, error: err instanceof Error ? err.message : String(err) }, 'mail not sent');
    });
  });
}

/** The one place sessions begin: a short-lived access JWT and a rotating refresh token (stored hashed). */
export async function issueTokenPair(
  config: Config,
  session: { user: Pick<User, 'id' | 'tokenEpoch'>; tenantId: string; familyId?: string },
  transaction: Transaction,
): Promise<TokenPair> {
  const refreshToken = randomToken();
  await RefreshToken.create(
    {
      userId: session.user.id,
      tenantId: session.tenantId,
      familyId: session.familyId ?? randomUUID(),
      tokenHash: tokenDigest(refreshToken),
      expiresAt: new Date(Date.now() + config.REFRESH_TOKEN_TTL_DAYS * 86_400_000),
    },
    { transaction },
  );
  const accessToken = issueAccessToken(config, { sub: session.user.id, tid: session.tenantId, ep: session.user.tokenEpoch });
  return { accessToken, refreshToken, expiresIn: config.ACCESS_TOKEN_TTL_SECONDS, tokenType: 'Bearer' };
}

/** Revokes the user's refresh tokens (of one tenant when given); members.ts calls it when removing a member. */
export async function endSessions(userId: string, opts: { tenantId?: string }, transaction: Transaction): Promise<void> {
  await RefreshToken.update(
    { revokedAt: new Date() },
    { where: { userId, revokedAt: null, ...(opts.tenantId ? { tenantId: opts.tenantId } : {}) }, transaction },
  );
}

/** Ends every session at once: bumping the epoch voids all access tokens already issued. */
async function endAllSessions(userId: string, transaction: Transaction): Promise<void> {
  await User.increment('tokenEpoch', { where: { id: userId }, transaction });
  await endSessions(userId, {}, transaction);
}

async function sendVerificationMail(deps: AuthDeps, user: User, transaction: Transaction): Promise<void> {
  const token = randomToken();
  // Only the newest link works.
  await EmailVerification.destroy({ where: { userId: user.id, usedAt: null }, transaction });
  await EmailVerification.create(
    { userId: user.id, tokenHash: tokenDigest(token), expiresAt: new Date(Date.now() + EMAIL_VERIFICATION_TTL_MS) },
    { transaction },
  );
  mailAfterCommit(deps, transaction, {
    to: user.email,
    subject: 'Confirm your email address for AuditFlow',
    text:
      `Hello ${user.name},\n\nConfirm your email address by opening this link within 48 hours:\n\n` +
      `${emailLink(deps.config, '/verify-email', token)}\n\nIf you did not create an AuditFlow account, ignore this message.\n`,
  });
}

export interface Registration {
  email: string;
  password: string;
  name: string;
  tenantName: string;
}

/** A new tenant with the registering user as its admin, signed in; a verification link is mailed. */
export async function register(
  deps: AuthDeps,
  audit: AuditScope,
  input: Registration,
): Promise<{ user: User; tenant: Tenant; role: Role; tokens: TokenPair }> {
  if (!deps.config.REGISTRATION_OPEN) {
    throw new AppError(403, 'registration-closed', 'Registration is closed: ask an admin of your organisation for an invitation.');
  }
  assertStrongPassword(input.password, [input.email, input.name, input.tenantName]);
  const passwordHash = await hashPassword(input.password, deps.config.BCRYPT_COST);
  const emailTaken = 'An account with this email already exists: sign in instead.';
  return conflictOnDuplicate(
    () =>
      deps.sequelize.transaction(async (transaction) => {
        if (await findUserByEmail(input.email, transaction)) throw new ConflictError(emailTaken);
        const user = await User.create({ email: input.email, name: input.name, passwordHash }, { transaction });
        const tenant = await Tenant.create({ name: input.tenantName }, { transaction });
        const role: Role = 'admin';
        await Membership.create({ tenantId: tenant.id, userId: user.id, role }, { transaction });
        const tokens = await issueTokenPair(deps.config, { user, tenantId: tenant.id }, transaction);
        actAs(audit, user.id, tenant.id);
        await audit.record(
          { action: 'auth.register', resourceType: 'user', resourceId: user.id, tenantId: tenant.id, details: { tenantName: tenant.name } },
          transaction,
        );
        await sendVerificationMail(deps, user, transaction);
        return { user, tenant, role, tokens };
      }),
    emailTaken,
  );
}

export interface Credentials {
  email: string;
  password: string;
}

/**
 * Checks an email and password within the brute-force limits. An unknown email costs the same
 * bcrypt time and gets the same answer as a wrong password; every refusal leaves an audit row
 * under `action`, written outside any transaction so it survives the failed request.
 * The caller runs `signedIn` in the transaction that starts the session.
 */
export async function checkCredentials(
  deps: AuthDeps,
  audit: AuditScope,
  action: string,
  credentials: Credentials,
  clientIp: string,
): Promise<{ user: User; signedIn: (transaction?: Transaction) => Promise<void> }> {
  const { config } = deps;
  const user = await findUserByEmail(credentials.email);
  const refuse = async (reason: string, error: AppError): Promise<never> => {
    await audit.record({ action, outcome: 'failure', resourceType: 'user', resourceId: user?.id ?? null, details: { reason, email: credentials.email } });
    throw error;
  };

  let attempt: LoginAttempt;
  try {
    attempt = await startLoginAttempt(deps.sequelize, config, clientIp, user ? { userId: user.id } : { email: credentials.email });
  } catch (err) {
    if (err instanceof LoginThrottledError) return refuse(err.scope === 'ip' ? 'ip_throttled' : 'account_locked', err);
    throw err;
  }
  if (!user) {
    await verifyAgainstNothing(credentials.password, config.BCRYPT_COST);
    return refuse('unknown_email', new InvalidCredentialsError());
  }
  if (!(await verifyPassword(credentials.password, user.passwordHash))) return refuse('wrong_password', new InvalidCredentialsError());

  return {
    user,
    signedIn: async (transaction) => {
      await attempt.succeeded(transaction);
      if (hashCostDiffers(user.passwordHash, config.BCRYPT_COST)) {
        await user.update({ passwordHash: await hashPassword(credentials.password, config.BCRYPT_COST) }, { transaction });
      }
    },
  };
}

/** Signs in to the chosen tenant, or to the user's oldest membership. */
export async function login(deps: AuthDeps, audit: AuditScope, input: Credentials & { tenantId?: string }, clientIp: string): Promise<TokenPair> {
  const { user, signedIn } = await checkCredentials(deps, audit, 'auth.login', input, clientIp);
  const membership = await Membership.findOne({
    where: { userId: user.id, ...(input.tenantId ? { tenantId: input.tenantId } : {}) },
    order: [
      ['createdAt', 'ASC'],
      ['id', 'ASC'],
    ],
  });
  if (!membership) {
    await signedIn(); // the password was right: this is no guess to count
    throw input.tenantId ? new NotFoundError('Tenant') : new ForbiddenError('This account is not a member of any tenant.');
  }
  return deps.sequelize.transaction(async (transaction) => {
    await signedIn(transaction);
    const tokens = await issueTokenPair(deps.config, { user, tenantId: membership.tenantId }, transaction);
    actAs(audit, user.id, membership.tenantId);
    await audit.record({ action: 'auth.login', resourceType: 'user', resourceId: user.id }, transaction);
    return tokens;
  });
}

/**
 * Rotates a refresh token. The claim is one atomic UPDATE, so of two concurrent refreshes with
 * one token at most one succeeds; presenting a token already used revokes its whole family.
 */
export async function refresh(deps: AuthDeps, audit: AuditScope, refreshToken: string): Promise<TokenPair> {
  const tokenHash = tokenDigest(refreshToken);
  const invalid = () => new UnauthorizedError('The refresh token is invalid, expired or revoked: sign in again.');
  const rotated = await deps.sequelize.transaction(async (transaction) => {
    const [, [claimed]] = await RefreshToken.update(
      { usedAt: new Date() },
      { where: { tokenHash, usedAt: null, revokedAt: null, expiresAt: { [Op.gt]: new Date() } }, returning: true, transaction },
    );
    if (!claimed) return null;
    const membership = await Membership.findOne({
      where: { userId: claimed.userId, tenantId: claimed.tenantId },
      include: [{ model: User, as: 'user' }],
      transaction,
    });
    if (!membership?.user) throw invalid(); // removed from the tenant since
    const tokens = await issueTokenPair(deps.config, { user: membership.user, tenantId: claimed.tenantId, familyId: claimed.familyId }, transaction);
    actAs(audit, claimed.userId, claimed.tenantId);
    await audit.record({ action: 'auth.refresh', resourceType: 'user', resourceId: claimed.userId, details: { familyId: claimed.familyId } }, transaction);
    return tokens;
  });
  if (rotated) return rotated;
  await revokeFamilyOnReuse(deps, audit, tokenHash);
  throw invalid();
}

/** A used token presented again means it was copied: every token of its family dies. */
async function revokeFamilyOnReuse(deps: AuthDeps, audit: AuditScope, tokenHash: string): Promise<void> {
  await deps.sequelize.transaction(async (transaction) => {
    const presented = await RefreshToken.findOne({ where: { tokenHash }, transaction });
    if (!presented?.usedAt) return;
    await RefreshToken.update({ revokedAt: new Date() }, { where: { familyId: presented.familyId, revokedAt: null }, transaction });
    await audit.record(
      {
        action: 'auth.refresh',
        outcome: 'failure',
        resourceType: 'user',
        resourceId: presented.userId,
        tenantId: presented.tenantId,
        details: { reason: 'reuse', familyId: presented.familyId },
      },
      transaction,
    );
  });
}

export async function logout(deps: AuthDeps, audit: AuditScope, userId: string): Promise<void> {
  await deps.sequelize.transaction(async (transaction) => {
    await endAllSessions(userId, transaction);
    await audit.record({ action: 'auth.logout', resourceType: 'user', resourceId: userId }, transaction);
  });
}

export interface SessionInfo {
  user: User;
  tenant: Tenant;
  role: Role;
  /** Every membership, oldest first, with its tenant. */
  memberships: (Membership & { tenant: Tenant })[];
}

export async function describeSession(userId: string, tenantId: string): Promise<SessionInfo> {
  const user = await User.findByPk(userId);
  const memberships = await Membership.findAll({
    where: { userId },
    include: [{ model: Tenant, as: 'tenant', required: true }],
    order: [
      ['createdAt', 'ASC'],
      ['id', 'ASC'],
    ],
  });
  const withTenants = memberships.filter((m): m is Membership & { tenant: Tenant } => m.tenant !== undefined);
  const current = withTenants.find((m) => m.tenantId === tenantId);
  if (!user || !current) throw new UnauthorizedError('This session has ended: sign in again.');
  return { user, tenant: current.tenant, role: current.role, memberships: withTenants };
}

/** A new session in another tenant of the same user; the current one stays valid. */
export async function switchTenant(deps: AuthDeps, audit: AuditScope, userId: string, tenantId: string): Promise<TokenPair> {
  return deps.sequelize.transaction(async (transaction) => {
    const membership = await Membership.findOne({ where: { userId, tenantId }, include: [{ model: User, as: 'user' }], transaction });
    if (!membership?.user) throw new NotFoundError('Tenant');
    const tokens = await issueTokenPair(deps.config, { user: membership.user, tenantId }, transaction);
    await audit.record(
      { action: 'auth.switch_tenant', resourceType: 'tenant', resourceId: tenantId, tenantId, details: { fromTenantId: audit.actor.tenantId } },
      transaction,
    );
    return tokens;
  });
}

export async function verifyEmail(deps: AuthDeps, audit: AuditScope, token: string): Promise<void> {
  await deps.sequelize.transaction(async (transaction) => {
    // Claimed atomically: of two uses of one link, only one finds it unused.
    const [, [claimed]] = await EmailVerification.update(
      { usedAt: new Date() },
      { where: { tokenHash: tokenDigest(token), usedAt: null, expiresAt: { [Op.gt]: new Date() } }, returning: true, transaction },
    );
    if (!claimed) throw new InvalidTokenError();
    await User.update({ emailVerifiedAt: new Date() }, { where: { id: claimed.userId, emailVerifiedAt: null }, transaction });
    actAs(audit, claimed.userId, null);
    await audit.record({ action: 'auth.email_verified', resourceType: 'user', resourceId: claimed.userId }, transaction);
  });
}

export async function resendVerification(deps: AuthDeps, audit: AuditScope, userId: string): Promise<void> {
  await deps.sequelize.transaction(async (transaction) => {
    const user = await User.findByPk(userId, { transaction, lock: transaction.LOCK.UPDATE });
    if (!user) throw new UnauthorizedError('This session has ended: sign in again.');
    if (user.emailVerifiedAt) throw new ConflictError('Your email address is already verified.');
    await sendVerificationMail(deps, user, transaction);
    await audit.record({ action: 'auth.email_verification_sent', resourceType: 'user', resourceId: userId }, transaction);
  });
}

/** Mails a reset link when the account exists; the caller answers alike either way. */
export async function requestPasswordReset(deps: AuthDeps, audit: AuditScope, email: string): Promise<void> {
  const user = await findUserByEmail(email);
  if (!user) {
    await audit.record({ action: 'auth.password_reset_requested', outcome: 'failure', details: { reason: 'unknown_email', email } });
    return;
  }
  await deps.sequelize.transaction(async (transaction) => {
    const token = randomToken();
    await PasswordReset.create(
      { userId: user.id, tokenHash: tokenDigest(token), expiresAt: new Date(Date.now() + PASSWORD_RESET_TTL_MS) },
      { transaction },
    );
    await audit.record({ action: 'auth.password_reset_requested', resourceType: 'user', resourceId: user.id }, transaction);
    mailAfterCommit(deps, transaction, {
      to: user.email,
      subject: 'Reset your AuditFlow password',
      text:
        `Hello ${user.name},\n\nChoose a new password by opening this link within 30 minutes:\n\n` +
        `${emailLink(deps.config, '/reset-password', token)}\n\nIf you did not ask for this, ignore this message: your password stays as it is.\n`,
    });
  });
}

/** Sets a new password from a reset link and ends every session of the account. */
export async function resetPassword(deps: AuthDeps, audit: AuditScope, token: string, password: string): Promise<void> {
  const tokenHash = tokenDigest(token);
  const pending = await PasswordReset.findOne({ where: { tokenHash, usedAt: null, expiresAt: { [Op.gt]: new Date() } } });
  const user = pending && (await User.findByPk(pending.userId));
  if (!pending || !user) throw new InvalidTokenError();
  assertStrongPassword(password, [user.email, user.name]);
  const passwordHash = await hashPassword(password, deps.config.BCRYPT_COST);
  await deps.sequelize.transaction(async (transaction) => {
    const now = new Date();
    const [claimed] = await PasswordReset.update({ usedAt: now }, { where: { id: pending.id, usedAt: null, expiresAt: { [Op.gt]: now } }, transaction });
    if (claimed === 0) throw new InvalidTokenError();
    // Other links mailed to this account die with this one.
    await PasswordReset.update({ usedAt: now }, { where: { userId: user.id, usedAt: null }, transaction });
    // Opening the link proved control of the mailbox: that verifies the address and lifts a lockout.
    await user.update({ passwordHash, failedLoginCount: 0, lockedUntil: null, emailVerifiedAt: user.emailVerifiedAt ?? now }, { transaction });
    await endAllSessions(user.id, transaction);
    actAs(audit, user.id, null);
    await audit.record({ action: 'auth.password_reset', resourceType: 'user', resourceId: user.id }, transaction);
  });
}
