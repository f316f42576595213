import { createDatabase } from '../db';
import { createBlobStore } from '../lib/blob-store';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { createMailer } from '../lib/mailer';
import { createVectorStore } from '../lib/vector-store';
import { connectTemporal } from '../lib/temporal';
import { listenForJobEvents } from '../services/job-event-stream';
import path from 'node:path';
import { createApp } from './app';

/** Listens; everything else is in createApp. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.LOG_PRETTY ?? config.NODE_ENV === 'development', name: 'api' });
  const sequelize = createDatabase(config);
  const temporal = await connectTemporal(config);
  const mailer = createMailer({ smtpUrl: config.SMTP_URL, from: config.MAIL_FROM, dir: path.join(config.AUDITFLOW_DATA_DIR, 'mail') });
  const jobEvents = await listenForJobEvents(config, logger);
  const vectors = createVectorStore(config);
  const app = createApp({ config, sequelize, temporal, logger, mailer, jobEvents, blobs: createBlobStore(config), vectors });
  const server = app.listen(config.API_PORT, config.API_HOST, () => {
    logger.info({ url: `http://localhost:${config.API_PORT}/api/v1`, docs: `http://localhost:${config.API_PORT}/docs` }, 'API listening');
  });
  const stop = () => {
    logger.info('API stopping');
    server.close(() => {
      mailer.close();
      void Promise.allSettled([temporal.connection.close(), sequelize.close(), jobEvents.close(), vectors.close()]).then(() => process.exit(0));
    });
    server.closeAllConnections();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
