import type { Sequelize } from 'sequelize';
import { archiveExpiredAuditLogs as archive } from '../services/audit';

/** Audit-log housekeeping; `sequelize` is bound by the worker at start-up. */
export function createAuditActivities(sequelize: Sequelize) {
  return {
    async archiveExpiredAuditLogs(retentionDays: number): Promise<number> {
      return archive(sequelize, retentionDays);
    },
  };
}
