import { Op, type Sequelize, type Transaction, type WhereOptions } from 'sequelize';
import { AuditLog, type ActorType, type AuditOutcome } from '../db';
import { decodeCursor, encodeCursor, type Page } from './pagination';

export interface AuditEntry {
  action: string;
  resourceType?: string;
  resourceId?: string | null;
  outcome?: AuditOutcome;
  /** Defaults to the actor's tenant; set it when the change creates a tenant. */
  tenantId?: string | null;
  details?: Record<string, unknown>;
}

/**
 * Who is acting and from where, for one request or job, plus whether an audit row was already
 * written for it (the API writes a fallback row for mutating requests that wrote none).
 */
export class AuditScope {
  recorded = false;
  constructor(
    public actor: { type: ActorType; id: string | null; tenantId: string | null },
    readonly origin: { requestId: string | null; ip: string | null; userAgent: string | null } = { requestId: null, ip: null, userAgent: null },
  ) {}

  /** Writes one row; pass the transaction of the change it describes. */
  async record(entry: AuditEntry, transaction?: Transaction): Promise<void> {
    await AuditLog.create(
      {
        tenantId: entry.tenantId === undefined ? this.actor.tenantId : entry.tenantId,
        actorType: this.actor.type,
        actorId: this.actor.id,
        action: entry.action,
        resourceType: entry.resourceType ?? null,
        resourceId: entry.resourceId ?? null,
        outcome: entry.outcome ?? 'success',
        requestId: this.origin.requestId,
        ip: this.origin.ip,
        userAgent: this.origin.userAgent,
        details: entry.details ?? {},
      },
      { transaction },
    );
    // A row inside a transaction only counts once that transaction commits.
    if (transaction) transaction.afterCommit(() => void (this.recorded = true));
    else this.recorded = true;
  }
}

export interface AuditFilter {
  actorId?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  outcome?: AuditOutcome;
  from?: Date;
  to?: Date;
  limit: number;
  cursor?: string;
}

/** A tenant's audit trail, newest first. */
export async function listAuditLogs(tenantId: string, f: AuditFilter): Promise<Page<AuditLog>> {
  const where: WhereOptions<AuditLog>[] = [{ tenantId }];
  if (f.actorId) where.push({ actorId: f.actorId });
  if (f.action) where.push({ action: f.action });
  if (f.resourceType) where.push({ resourceType: f.resourceType });
  if (f.resourceId) where.push({ resourceId: f.resourceId });
  if (f.outcome) where.push({ outcome: f.outcome });
  if (f.from) where.push({ createdAt: { [Op.gte]: f.from } });
  if (f.to) where.push({ createdAt: { [Op.lt]: f.to } });
  const after = decodeCursor(f.cursor);
  if (after) where.push({ id: { [Op.lt]: after.id } });
  const rows = await AuditLog.findAll({ where: { [Op.and]: where }, order: [['id', 'DESC']], limit: f.limit + 1 });
  const items = rows.slice(0, f.limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > f.limit && last ? encodeCursor({ id: last.id }) : null };
}

/** Moves rows older than the retention period to audit_logs_archive; returns how many moved. */
export async function archiveExpiredAuditLogs(sequelize: Sequelize, retentionDays: number): Promise<number> {
  const cutoff = new Date(Date.now() - retentionDays * 86_400_000);
  const [rows] = await sequelize.query('SELECT archive_audit_logs(:cutoff) AS moved', { replacements: { cutoff } });
  return Number((rows as { moved: string }[])[0]?.moved ?? 0);
}
