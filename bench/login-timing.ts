/**
 * Sign-in timing for an unknown email vs a wrong password of a real account, at BCRYPT_COST 10,
 * through the real services on an embedded Postgres. The two should take alike, so the response
 * time does not tell whether an account exists; a ratio near 1.00 is the goal.
 *
 *   npx tsx bench/login-timing.ts [--quick]
 */
import path from 'node:path';
import { createLogger } from '../lib/logger';
import { createMailer } from '../lib/mailer';
import { AuditScope } from '../services/audit';
import { InvalidCredentialsError, login, register, type AuthDeps } from '../services/auth';
import { mean, median, withBenchDatabase } from './harness';

const quick = process.argv.includes('--quick');
const rounds = quick ? 20 : 200;
const warmupRounds = quick ? 3 : 10;
const clientIp = '192.0.2.10';
const account = { email: 'bench@example.test', password: 'correct horse battery staple 42!' };
const unknownEmail = 'nobody@example.test';

/** Milliseconds one failing sign-in takes, from the service call to its 401. */
async function timeFailedLogin(deps: AuthDeps, email: string): Promise<number> {
  const audit = new AuditScope({ type: 'anonymous', id: null, tenantId: null }, { requestId: null, ip: clientIp, userAgent: 'bench' });
  const started = performance.now();
  try {
    await login(deps, audit, { email, password: 'a wrong password for the bench' }, clientIp);
  } catch (err) {
    if (!(err instanceof InvalidCredentialsError)) throw err;
    return performance.now() - started;
  }
  throw new Error(`sign-in as ${email} succeeded`);
}

async function main(): Promise<void> {
  const env = {
    BCRYPT_COST: '10',
    // Every timed attempt fails on purpose: keep the limits out of the way.
    LOGIN_MAX_FAILURES_PER_ACCOUNT: '1000',
    LOGIN_MAX_FAILURES_PER_IP: '100000',
  };
  await withBenchDatabase(env, async ({ dir, config, sequelize }) => {
    const deps: AuthDeps = {
      sequelize,
      config,
      mailer: createMailer({ from: config.MAIL_FROM, dir: path.join(dir, 'mail') }),
      logger: createLogger({ level: 'silent' }),
    };
    try {
      const setup = new AuditScope({ type: 'anonymous', id: null, tenantId: null });
      await register(deps, setup, { ...account, name: 'Bench', tenantName: 'Bench org' });

      const timings = { wrongPassword: [] as number[], unknownEmail: [] as number[] };
      for (let round = -warmupRounds; round < rounds; round++) {
        // Alternate the order each round, so drift (caches, GC, CPU clocks) hits both cases alike.
        const order = round % 2 === 0 ? (['wrongPassword', 'unknownEmail'] as const) : (['unknownEmail', 'wrongPassword'] as const);
        for (const kind of order) {
          const ms = await timeFailedLogin(deps, kind === 'wrongPassword' ? account.email : unknownEmail);
          if (round >= 0) timings[kind].push(ms);
        }
      }

      const row = (label: string, xs: number[]) => `${label.padEnd(16)} mean ${mean(xs).toFixed(2).padStart(8)} ms   median ${median(xs).toFixed(2).padStart(8)} ms`;
      console.log(`failed sign-ins, BCRYPT_COST ${config.BCRYPT_COST}, ${rounds} rounds${quick ? ' (quick)' : ''}`);
      console.log(row('wrong password', timings.wrongPassword));
      console.log(row('unknown email', timings.unknownEmail));
      console.log(
        `ratio unknown/wrong: mean ${(mean(timings.unknownEmail) / mean(timings.wrongPassword)).toFixed(3)}   ` +
          `median ${(median(timings.unknownEmail) / median(timings.wrongPassword)).toFixed(3)}`,
      );
    } finally {
      deps.mailer.close();
    }
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
