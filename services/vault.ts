import { col, Op, type Sequelize } from 'sequelize';
import { Secret, SecretAccessLog, SecretVersion } from '../db';
import type { Config } from '../lib/config';
import { open, rewrap } from '../lib/envelope';
import { AppError } from '../lib/errors';
import { AuditScope } from './audit';
import { sealedValueOf, secretNameOf, versionAssociatedData } from './secrets';

/**
 * The vault's read side. Records hold references (`secret://<name>`), never values; a value
 * exists in memory only from `resolveSecret`, at the moment of use, and every resolution is
 * logged. Workflows pass references: activities resolve them (DESIGN.md).
 */

export interface VaultDeps {
  sequelize: Sequelize;
  config: Pick<Config, 'vaultKeyring'>;
}

/** Where a resolution happens, for the access log. */
export interface ResolutionContext {
  tenantId: string;
  jobId?: string;
  activity?: string;
  /** Who asked (e.g. `user:<id>`), when a person or token rather than a job did. */
  actor?: string;
}

export class SecretReferenceError extends AppError {
  constructor(
    readonly reference: string,
    readonly reason: 'malformed' | 'missing',
  ) {
    super(
      422,
      'unresolvable-secret-reference',
      reason === 'malformed'
        ? `"${reference}" is not a secret reference: use secret://<name>.`
        : `No secret named by "${reference}" exists in this tenant.`,
      { reference, reason },
    );
  }
}

/** A resolved secret: the current version's value, and which version that is. */
export interface ResolvedSecret {
  value: string;
  version: number;
  /** When this version was written (its rotation time). */
  createdAt: Date;
}

/** The current value of the secret `ref` names, in the context's tenant; logged in secret_access_logs. */
export async function resolveSecret(deps: VaultDeps, ref: string, context: ResolutionContext): Promise<string> {
  return (await resolveSecretVersion(deps, ref, context)).value;
}

/**
 * The one resolution (`resolveSecret` is its short form): the current version of the secret
 * `ref` names, value included, for callers that also report which version they used or how old it is.
 */
export async function resolveSecretVersion(deps: VaultDeps, ref: string, context: ResolutionContext): Promise<ResolvedSecret> {
  const name = secretNameOf(ref);
  if (name === null) throw new SecretReferenceError(ref, 'malformed');
  // One statement, one snapshot: a rotation committing meanwhile cannot leave us between versions.
  const current = await SecretVersion.findOne({
    where: { version: { [Op.eq]: col('secret.current_version') } },
    include: [{ model: Secret, as: 'secret', attributes: ['id'], where: { tenantId: context.tenantId, name }, required: true }],
  });
  if (!current) throw new SecretReferenceError(ref, 'missing');
  // Logged before decrypting: an attempt that fails authentication is on record too.
  await SecretAccessLog.create({
    secretId: current.secretId,
    version: current.version,
    tenantId: context.tenantId,
    jobId: context.jobId ?? null,
    activity: context.activity ?? null,
    actor: context.actor ?? null,
  });
  const value = open(deps.config.vaultKeyring, sealedValueOf(current), versionAssociatedData(current.secretId, current.version)).toString('utf8');
  return { value, version: current.version, createdAt: current.createdAt };
}

/**
 * Re-wraps every data key not yet under the keyring's current master key (the previous keys
 * must still be in the keyring to unwrap them). Values are not re-encrypted. Runs in batches,
 * one transaction each; rows already re-wrapped are skipped, so a second run, or several at
 * once (SKIP LOCKED), do nothing twice. Returns how many versions were re-wrapped.
 */
export async function rewrapDataKeys(deps: VaultDeps, opts: { batchSize?: number } = {}): Promise<number> {
  const keyring = deps.config.vaultKeyring;
  const batchSize = opts.batchSize ?? 500;
  const audit = new AuditScope({ type: 'system', id: 'vault:rotate-master-key', tenantId: null });
  let total = 0;
  for (;;) {
    const done = await deps.sequelize.transaction(async (transaction) => {
      const batch = await SecretVersion.findAll({
        where: { masterKeyId: { [Op.ne]: keyring.currentKeyId } },
        order: [['secretId', 'ASC'], ['version', 'ASC']],
        limit: batchSize,
        transaction,
        lock: transaction.LOCK.UPDATE,
        skipLocked: true,
      });
      for (const row of batch) {
        const rewrapped = rewrap(keyring, sealedValueOf(row), versionAssociatedData(row.secretId, row.version));
        await row.update(
          { wrappedDataKey: rewrapped.wrappedDataKey, dataKeyIv: rewrapped.dataKeyIv, dataKeyAuthTag: rewrapped.dataKeyAuthTag, masterKeyId: rewrapped.masterKeyId },
          { transaction },
        );
      }
      if (batch.length > 0) {
        await audit.record({ action: 'vault.rewrap', resourceType: 'secret_versions', details: { masterKeyId: keyring.currentKeyId, versions: batch.length } }, transaction);
      }
      return batch.length;
    });
    total += done;
    if (done < batchSize) return total;
  }
}
