import path from 'node:path';
import { Client } from 'pg';
import { Sequelize } from 'sequelize';
import { SequelizeStorage, Umzug } from 'umzug';
import type { Logger } from '../lib/logger';

/** Arbitrary constant shared by every instance: "auditflow migrations". */
const MIGRATION_LOCK_KEY = 7_140_315_001;

function migrator(sequelize: Sequelize, logger?: Logger) {
  return new Umzug({
    migrations: {
      glob: ['migrations/*.{ts,js}', { cwd: __dirname, ignore: ['**/*.d.ts'] }],
      resolve: ({ name, path: file, context }) => {
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- umzug loads migration files by path
        const migration = require(file as string) as { up: (p: unknown) => Promise<void>; down: (p: unknown) => Promise<void> };
        const params = { name: path.basename(name, path.extname(name)), path: file, context };
        return { name: params.name, up: () => migration.up(params), down: () => migration.down(params) };
      },
    },
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize, tableName: 'schema_migrations' }),
    // umzug's records carry a `name` key, which would clobber pino's logger name: nest them.
    logger: logger
      ? {
          info: (m) => logger.info({ migration: m }, 'migration'),
          warn: (m) => logger.warn({ migration: m }, 'migration'),
          error: (m) => logger.error({ migration: m }, 'migration'),
          debug: (m) => logger.debug({ migration: m }, 'migration'),
        }
      : undefined,
  });
}

/**
 * Runs `work` while holding a Postgres advisory lock on its own connection, so several
 * instances starting together migrate one after another instead of racing.
 */
async function withMigrationLock<T>(databaseUrl: string, work: () => Promise<T>): Promise<T> {
  const lock = new Client({ connectionString: databaseUrl, application_name: 'auditflow-migrations' });
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    return await work();
  } finally {
    await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
    await lock.end();
  }
}

export async function migrateUp(databaseUrl: string, logger?: Logger): Promise<string[]> {
  return withMigration(databaseUrl, logger, async (umzug) => (await umzug.up()).map((m) => m.name));
}

/** Reverts migrations: the last one, or all of them with `{ to: 0 }`. */
export async function migrateDown(databaseUrl: string, opts: { to?: 0 } = {}, logger?: Logger): Promise<string[]> {
  return withMigration(databaseUrl, logger, async (umzug) => (await umzug.down(opts)).map((m) => m.name));
}

async function withMigration<T>(databaseUrl: string, logger: Logger | undefined, run: (u: ReturnType<typeof migrator>) => Promise<T>): Promise<T> {
  const sequelize = new Sequelize(databaseUrl, { dialect: 'postgres', logging: false, pool: { max: 2 } });
  try {
    return await withMigrationLock(databaseUrl, () => run(migrator(sequelize, logger)));
  } finally {
    await sequelize.close();
  }
}
