import { createDatabase } from '../db';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { rewrapDataKeys } from '../services/vault';

/**
 * `npm run vault:rotate-master-key` — re-wraps every secret's data key under the current master
 * key. Run it after moving the new key into AUDITFLOW_MASTER_KEY and the old one into
 * AUDITFLOW_PREVIOUS_MASTER_KEYS (every API and worker needs both until it is done); then drop
 * the old key. Values are not re-encrypted. Safe to run again, or on several machines at once.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ level: config.LOG_LEVEL, pretty: config.LOG_PRETTY ?? config.NODE_ENV === 'development', name: 'vault' });
  const sequelize = createDatabase(config);
  try {
    const rewrapped = await rewrapDataKeys({ sequelize, config });
    logger.info({ rewrapped, masterKeyId: config.vaultKeyring.currentKeyId }, 'every data key is wrapped under the current master key');
  } finally {
    await sequelize.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
