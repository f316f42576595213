import { Sequelize } from 'sequelize';
import type { Logger } from '../lib/logger';
import { initModels } from './models';

export * from './models';

export interface DatabaseSettings {
  DATABASE_URL: string;
  DATABASE_POOL_MAX: number;
}

/** The Sequelize instance with our models bound to it. */
export function createDatabase(config: DatabaseSettings, logger?: Logger): Sequelize {
  const sequelize = new Sequelize(config.DATABASE_URL, {
    dialect: 'postgres',
    logging: logger ? (sql) => logger.trace({ sql }, 'sql') : false,
    pool: { max: config.DATABASE_POOL_MAX, min: 0, idle: 10_000 },
    // bigint ids (audit_logs) stay strings: JavaScript numbers cannot hold them all.
    dialectOptions: { application_name: 'auditflow' },
  });
  initModels(sequelize);
  return sequelize;
}
