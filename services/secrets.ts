import { randomUUID } from 'node:crypto';
import { cast, col, fn, Op, UniqueConstraintError, where, type Sequelize, type Transaction } from 'sequelize';
import { LlmSettings, Project, Secret, SecretAccessLog, SecretVersion } from '../db';
import type { Config } from '../lib/config';
import { seal, type SealedValue } from '../lib/envelope';
import { AppError, ConflictError, NotFoundError } from '../lib/errors';
import type { AuditScope } from './audit';
import { pageInCreationOrder, type Page, type PageRequest } from './pagination';

/**
 * Managing a tenant's secrets: create, rotate, delete, read metadata. Values go in and are never
 * read back here; the only way to a value is `resolveSecret` (services/vault.ts), at the moment
 * of use, which leaves an access-log row.
 */

export interface SecretsDeps {
  sequelize: Sequelize;
  config: Pick<Config, 'vaultKeyring' | 'VAULT_KEEP_VERSIONS'>;
}

export const secretNamePattern = /^[a-z0-9][a-z0-9\-_.]{0,62}$/;
export const SECRET_VALUE_MAX_BYTES = 64 * 1024;
const REFERENCE_SCHEME = 'secret://';

/** How records (project settings, job params) point at a secret instead of holding its value. */
export function secretReference(name: string): string {
  return `${REFERENCE_SCHEME}${name}`;
}

/**
 * Every string in `value`, at any depth, that is meant as a reference (it starts with the
 * scheme), well-formed or not: distinct and sorted. A reference inside a longer string does not
 * count, as for deletion's reference check.
 */
export function secretReferencesIn(value: unknown): string[] {
  const found = new Set<string>();
  const visit = (v: unknown): void => {
    if (typeof v === 'string') {
      if (v.startsWith(REFERENCE_SCHEME)) found.add(v);
    } else if (Array.isArray(v)) {
      v.forEach(visit);
    } else if (v !== null && typeof v === 'object') {
      Object.values(v).forEach(visit);
    }
  };
  visit(value);
  return [...found].sort();
}

/** The secret name a reference points at, or null when `ref` is not a well-formed reference. */
export function secretNameOf(ref: string): string | null {
  if (!ref.startsWith(REFERENCE_SCHEME)) return null;
  const name = ref.slice(REFERENCE_SCHEME.length);
  return secretNamePattern.test(name) ? name : null;
}

/**
 * Binds a version's ciphertext and wrapped data key to that secret and version: copied onto
 * another secret's row or another version, they no longer decrypt.
 */
export function versionAssociatedData(secretId: string, version: number): string {
  return `auditflow secret ${secretId} version ${version}`;
}

export function sealedValueOf(v: SecretVersion): SealedValue {
  return {
    ciphertext: v.ciphertext,
    iv: v.iv,
    authTag: v.authTag,
    wrappedDataKey: v.wrappedDataKey,
    dataKeyIv: v.dataKeyIv,
    dataKeyAuthTag: v.dataKeyAuthTag,
    masterKeyId: v.masterKeyId,
  };
}

async function addVersion(deps: SecretsDeps, secretId: string, version: number, value: string, transaction: Transaction): Promise<SecretVersion> {
  const sealed = seal(deps.config.vaultKeyring, Buffer.from(value, 'utf8'), versionAssociatedData(secretId, version));
  return SecretVersion.create({ secretId, version, ...sealed }, { transaction });
}

/** A record holding a secret's reference: a project's settings, or the tenant's LLM settings. */
export type SecretReferrer = { type: 'project' | 'llmSettings'; id: string; name: string };

export class SecretInUseError extends AppError {
  constructor(name: string, references: SecretReferrer[]) {
    super(409, 'secret-in-use', `Secret "${name}" is still referenced by ${references.length} record(s); remove the references or delete with ?force=true.`, { references });
  }
}

export interface SecretInput {
  name: string;
  value: string;
  description?: string;
}

export async function createSecret(deps: SecretsDeps, audit: AuditScope, tenantId: string, createdBy: string, input: SecretInput): Promise<Secret> {
  try {
    return await deps.sequelize.transaction(async (transaction) => {
      // The id is chosen here, not by the database: the first version's associated data names it.
      const secret = await Secret.create(
        { id: randomUUID(), tenantId, name: input.name, description: input.description ?? '', currentVersion: 1, createdBy },
        { transaction },
      );
      await addVersion(deps, secret.id, 1, input.value, transaction);
      await audit.record({ action: 'secret.create', resourceType: 'secret', resourceId: secret.id, details: { name: secret.name, version: 1 } }, transaction);
      return secret;
    });
  } catch (err) {
    if (err instanceof UniqueConstraintError) throw new ConflictError(`A secret named "${input.name}" already exists.`);
    throw err;
  }
}

/** A tenant's secrets (metadata only), oldest first. */
export async function listSecrets(tenantId: string, request: PageRequest): Promise<Page<Secret>> {
  return pageInCreationOrder(request, ({ after, order, limit }) => Secret.findAll({ where: { [Op.and]: [{ tenantId }, after] }, order, limit }));
}

/** The metadata of every version kept; never the encrypted fields. */
const versionMetadata = ['version', 'enabled', 'masterKeyId', 'createdAt'] as const;

/** A secret of the tenant with its versions' metadata, newest version first. */
export async function getSecret(tenantId: string, id: string): Promise<Secret> {
  const secret = await Secret.findOne({
    where: { id, tenantId },
    include: [{ model: SecretVersion, as: 'versions', attributes: [...versionMetadata] }],
    order: [[{ model: SecretVersion, as: 'versions' }, 'version', 'DESC']],
  });
  if (!secret) throw new NotFoundError('Secret');
  return secret;
}

async function lockedSecret(tenantId: string, id: string, transaction: Transaction): Promise<Secret> {
  const secret = await Secret.findOne({ where: { id, tenantId }, transaction, lock: transaction.LOCK.UPDATE });
  if (!secret) throw new NotFoundError('Secret');
  return secret;
}

/**
 * A new current version. Older versions stay, disabled, so an operator can see what was rotated
 * when; beyond VAULT_KEEP_VERSIONS of them the oldest are deleted, ciphertext and all.
 */
export async function rotateSecret(deps: SecretsDeps, audit: AuditScope, tenantId: string, id: string, value: string): Promise<Secret> {
  return deps.sequelize.transaction(async (transaction) => {
    const secret = await lockedSecret(tenantId, id, transaction);
    const version = secret.currentVersion + 1;
    await addVersion(deps, secret.id, version, value, transaction);
    await SecretVersion.update({ enabled: false }, { where: { secretId: secret.id, version: { [Op.lt]: version } }, transaction });
    const pruned = await SecretVersion.destroy({
      where: { secretId: secret.id, version: { [Op.lte]: version - 1 - deps.config.VAULT_KEEP_VERSIONS } },
      transaction,
    });
    await secret.update({ currentVersion: version }, { transaction });
    await audit.record({ action: 'secret.rotate', resourceType: 'secret', resourceId: secret.id, details: { name: secret.name, version, prunedVersions: pruned } }, transaction);
    return secret;
  });
}

/** Records of the tenant whose settings hold the secret's reference, at any depth: its projects, and its LLM settings. */
async function recordsReferencing(tenantId: string, name: string, transaction: Transaction): Promise<SecretReferrer[]> {
  // The JSON text holds the reference as a whole quoted string wherever it is nested (secret
  // names need no JSON escaping); a reference mentioned inside a longer string does not count.
  const holdsReference = where(fn('strpos', cast(col('settings'), 'text'), JSON.stringify(secretReference(name))), Op.gt, 0);
  const projects = await Project.findAll({
    attributes: ['id', 'name'],
    where: { tenantId, deletionJobId: null, [Op.and]: [holdsReference] },
    order: [['createdAt', 'ASC']],
    transaction,
  });
  const llmSettings = await LlmSettings.findOne({ attributes: ['tenantId'], where: { tenantId, [Op.and]: [holdsReference] }, transaction });
  return [
    ...projects.map((p): SecretReferrer => ({ type: 'project', id: p.id, name: p.name })),
    ...(llmSettings ? [{ type: 'llmSettings' as const, id: tenantId, name: 'LLM settings' }] : []),
  ];
}

/** Deletes a secret and all its versions; refused while records reference it, unless forced. */
export async function deleteSecret(deps: SecretsDeps, audit: AuditScope, tenantId: string, id: string, force: boolean): Promise<void> {
  await deps.sequelize.transaction(async (transaction) => {
    const secret = await lockedSecret(tenantId, id, transaction);
    const references = await recordsReferencing(tenantId, secret.name, transaction);
    if (references.length > 0 && !force) throw new SecretInUseError(secret.name, references);
    await secret.destroy({ transaction });
    await audit.record({ action: 'secret.delete', resourceType: 'secret', resourceId: secret.id, details: { name: secret.name, forced: force, references } }, transaction);
  });
}

/** Who resolved a secret of the tenant, newest first. */
export async function listSecretAccessLog(tenantId: string, secretId: string, request: PageRequest): Promise<Page<SecretAccessLog>> {
  const secret = await Secret.findOne({ where: { id: secretId, tenantId }, attributes: ['id'] });
  if (!secret) throw new NotFoundError('Secret');
  return pageInCreationOrder(
    request,
    ({ after, order, limit }) => SecretAccessLog.findAll({ where: { [Op.and]: [{ secretId }, after] }, order, limit }),
    { newestFirst: true },
  );
}
