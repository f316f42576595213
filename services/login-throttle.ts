import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
import { User } from '../db';
import { TooManyRequestsError } from '../lib/errors';

export interface ThrottleSettings {
  LOGIN_MAX_FAILURES_PER_ACCOUNT: number;
  LOGIN_MAX_FAILURES_PER_IP: number;
  LOGIN_LOCKOUT_SECONDS: number;
}

export class LoginThrottledError extends TooManyRequestsError {
  constructor(
    readonly scope: 'ip' | 'account',
    retryAfterSeconds: number,
  ) {
    // One message for both scopes: the answer says nothing about which limit was hit.
    super(`Too many failed sign-in attempts: retry in ${retryAfterSeconds} seconds.`, retryAfterSeconds);
  }
}

/** Who is signing in: a known account, or an email without one (locked alike, so lockouts reveal nothing). */
export type LoginAccount = { userId: string } | { email: string };

/**
 * A sign-in attempt, counted as a failure before the password is checked: parallel guesses then
 * cannot slip past the limits while their bcrypt comparisons run.
 */
export interface LoginAttempt {
  /** The password matched: the account's failures reset and the attempt stops counting against the IP. */
  succeeded(transaction?: Transaction): Promise<void>;
}

const SECONDS = 'make_interval(secs => :seconds)';

/**
 * Counts an attempt against a login_throttles key unless it is locked. Failures count within a
 * window of `seconds` from the first; reaching `max` locks the key for `seconds`. SET expressions
 * see the old row, hence the in-window count spelled out twice.
 */
async function reserveKey(sequelize: Sequelize, key: string, max: number, seconds: number): Promise<number | null> {
  const inWindow = `t.window_started_at > now() - ${SECONDS}`;
  const next = `CASE WHEN ${inWindow} THEN t.failures + 1 ELSE 1 END`;
  const rows = await sequelize.query<{ failures: number }>(
    `INSERT INTO login_throttles AS t (key, failures, window_started_at, locked_until)
     VALUES (:key, 1, now(), CASE WHEN 1 >= :max THEN now() + ${SECONDS} END)
     ON CONFLICT (key) DO UPDATE SET
       failures = ${next},
       window_started_at = CASE WHEN ${inWindow} THEN t.window_started_at ELSE now() END,
       locked_until = CASE WHEN ${next} >= :max THEN now() + ${SECONDS} END
     WHERE t.locked_until IS NULL OR t.locked_until <= now()
     RETURNING failures`,
    { replacements: { key, max, seconds }, type: QueryTypes.SELECT },
  );
  if (rows.length > 0) return null;
  return secondsUntilUnlocked(sequelize, 'SELECT locked_until FROM login_throttles WHERE key = :key', { key });
}

/** The same for a known account, on users.failed_login_count / locked_until; an expired lock starts the count afresh. */
async function reserveUser(sequelize: Sequelize, userId: string, max: number, seconds: number): Promise<number | null> {
  const next = 'CASE WHEN locked_until IS NULL THEN failed_login_count + 1 ELSE 1 END';
  const rows = await sequelize.query<{ id: string }>(
    `UPDATE users SET
       failed_login_count = ${next},
       locked_until = CASE WHEN ${next} >= :max THEN now() + ${SECONDS} END
     WHERE id = :userId AND (locked_until IS NULL OR locked_until <= now())
     RETURNING id`,
    { replacements: { userId, max, seconds }, type: QueryTypes.SELECT },
  );
  if (rows.length > 0) return null;
  return secondsUntilUnlocked(sequelize, 'SELECT locked_until FROM users WHERE id = :userId', { userId });
}

async function secondsUntilUnlocked(sequelize: Sequelize, lockQuery: string, replacements: Record<string, string>): Promise<number> {
  const rows = await sequelize.query<{ seconds: number }>(
    `SELECT greatest(1, ceil(extract(epoch FROM locked_until - now())))::int AS seconds FROM (${lockQuery}) AS lock`,
    { replacements, type: QueryTypes.SELECT },
  );
  return rows[0]?.seconds ?? 1;
}

/**
 * Counts a sign-in attempt against the client IP and the account, or throws LoginThrottledError
 * (429 with Retry-After). Runs outside any transaction, so the count holds even if the request fails.
 */
export async function startLoginAttempt(sequelize: Sequelize, settings: ThrottleSettings, clientIp: string, account: LoginAccount): Promise<LoginAttempt> {
  const seconds = settings.LOGIN_LOCKOUT_SECONDS;
  const ipKey = `ip:${clientIp}`;
  const ipWait = await reserveKey(sequelize, ipKey, settings.LOGIN_MAX_FAILURES_PER_IP, seconds);
  if (ipWait !== null) throw new LoginThrottledError('ip', ipWait);

  const max = settings.LOGIN_MAX_FAILURES_PER_ACCOUNT;
  const accountWait =
    'userId' in account
      ? await reserveUser(sequelize, account.userId, max, seconds)
      : await reserveKey(sequelize, `email:${account.email.toLowerCase()}`, max, seconds);
  if (accountWait !== null) throw new LoginThrottledError('account', accountWait);

  return {
    async succeeded(transaction) {
      if ('userId' in account) {
        await User.update({ failedLoginCount: 0, lockedUntil: null }, { where: { id: account.userId }, transaction });
      }
      // The lock is left alone: otherwise an attacker could clear an IP lock by interleaving
      // sign-ins to an account of their own.
      await sequelize.query('UPDATE login_throttles SET failures = greatest(failures - 1, 0) WHERE key = :ipKey', {
        replacements: { ipKey },
        transaction,
      });
    },
  };
}
