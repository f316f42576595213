import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { migrateDown, migrateUp } from './migrate';

/** `tsx db/cli.ts up|down|reset` — database migrations from the command line. */
async function main(command = 'up'): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.LOG_PRETTY ?? config.NODE_ENV === 'development', name: 'migrate' });
  if (command === 'up') logger.info({ applied: await migrateUp(config.DATABASE_URL, logger) }, 'migrations up to date');
  else if (command === 'down') logger.info({ reverted: await migrateDown(config.DATABASE_URL, {}, logger) }, 'reverted last migration');
  else if (command === 'reset') logger.info({ reverted: await migrateDown(config.DATABASE_URL, { to: 0 }, logger) }, 'reverted all migrations');
  else throw new Error(`unknown command "${command}": use up, down or reset`);
}

main(process.argv[2]).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
