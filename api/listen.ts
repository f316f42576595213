import type { Server } from 'node:http';
import path from 'node:path';
import type { Sequelize } from 'sequelize';
import { createBlobStore } from '../lib/blob-store';
import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';
import { createMailer } from '../lib/mailer';
import { connectTemporal } from '../lib/temporal';
import { createVectorStore } from '../lib/vector-store';
import { listenForJobEvents } from '../services/job-event-stream';
import { createApp, type AppDeps } from './app';

/** The API listening, with what it was wired to; `close` stops it and lets go of all but the database (the caller's). */
export interface ListeningApi extends AppDeps {
  app: ReturnType<typeof createApp>;
  server: Server;
  close(): Promise<void>;
}

/**
 * Wires the app to its services from `config` and listens: the one wiring used by the API
 * process (api/server.ts), the test harness and the end-to-end benches. `port` 0 picks a free one.
 */
export async function listenApi(config: Config, deps: { sequelize: Sequelize; logger: Logger; host: string; port: number }): Promise<ListeningApi> {
  const { sequelize, logger } = deps;
  const temporal = await connectTemporal(config);
  const mailer = createMailer({ smtpUrl: config.SMTP_URL, from: config.MAIL_FROM, dir: path.join(config.AUDITFLOW_DATA_DIR, 'mail') });
  const jobEvents = await listenForJobEvents(config, logger);
  const blobs = createBlobStore(config);
  const vectors = createVectorStore(config);
  const appDeps: AppDeps = { config, sequelize, temporal, logger, mailer, jobEvents, blobs, vectors };
  const app = createApp(appDeps);
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(deps.port, deps.host, () => resolve(s));
  });
  return {
    ...appDeps,
    app,
    server,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Open event streams would hold the server open.
      server.closeAllConnections();
      await closed;
      mailer.close();
      await Promise.allSettled([jobEvents.close(), temporal.connection.close(), vectors.close()]);
    },
  };
}
