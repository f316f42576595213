import { createDatabase } from '../db';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { listenApi } from './listen';

/** The API process: configuration, logger and database, then listenApi; stops on SIGINT or SIGTERM. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.LOG_PRETTY ?? config.NODE_ENV === 'development', name: 'api' });
  const sequelize = createDatabase(config);
  const api = await listenApi(config, { sequelize, logger, host: config.API_HOST, port: config.API_PORT });
  logger.info({ url: `http://localhost:${config.API_PORT}/api/v1`, docs: `http://localhost:${config.API_PORT}/docs` }, 'API listening');
  const stop = () => {
    logger.info('API stopping');
    void api
      .close()
      .then(() => sequelize.close())
      .finally(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
