import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Sequelize } from 'sequelize';
import { AuditLog, createDatabase, SecretVersion, Tenant } from '../../db';
import { migrateUp } from '../../db/migrate';
import { Keyring, parseMasterKey } from '../../lib/envelope';
import { AuditScope } from '../../services/audit';
import { createSecret, rotateSecret } from '../../services/secrets';
import { resolveSecret, rewrapDataKeys } from '../../services/vault';
import { createScratchDatabase } from '../harness/databases';

/*
 * Master-key rotation on a database of its own: re-wrapping every data key of the shared test
 * database would pull the key from under the suites running alongside.
 */

const repoRoot = path.resolve(__dirname, '../..');
const run = promisify(execFile);
const keyText = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const [firstKey, secondKey, thirdKey] = [keyText('main-1'), keyText('main-2'), keyText('main-3')];

let db: Awaited<ReturnType<typeof createScratchDatabase>>;
let sequelize: Sequelize;
let tenantId: string;
const values = new Map<string, string>(); // reference → current value

const deps = (current: string, ...previous: string[]) => ({
  sequelize,
  config: { vaultKeyring: new Keyring(parseMasterKey(current), previous.map(parseMasterKey)), VAULT_KEEP_VERSIONS: 5 },
});

/** Every stored version: its key id and the fields master-key rotation must leave alone. */
async function versions() {
  const rows = await SecretVersion.findAll({ order: [['secretId', 'ASC'], ['version', 'ASC']] });
  return rows.map((v) => ({ key: `${v.secretId}/${v.version}`, masterKeyId: v.masterKeyId, value: Buffer.concat([v.ciphertext, v.iv, v.authTag]).toString('hex') }));
}

async function expectEveryValueResolves(current: string) {
  for (const [ref, value] of values) expect(await resolveSecret(deps(current), ref, { tenantId })).toBe(value);
}

/** `npm run vault:rotate-master-key` against the scratch database; the number it reports re-wrapped. */
async function rotateMasterKeyScript(current: string, previous: string): Promise<number> {
  const env = { ...process.env, DATABASE_URL: db.url, AUDITFLOW_MASTER_KEY: current, AUDITFLOW_PREVIOUS_MASTER_KEYS: previous, LOG_LEVEL: 'info', LOG_PRETTY: 'false' };
  const { stdout } = await run(process.execPath, [require.resolve('tsx/cli'), 'scripts/rotate-master-key.ts'], { cwd: repoRoot, env });
  const line = stdout.split('\n').find((l) => l.includes('"rewrapped"'));
  if (!line) throw new Error(`no summary line in: ${stdout}`);
  return (JSON.parse(line) as { rewrapped: number }).rewrapped;
}

beforeAll(async () => {
  db = await createScratchDatabase();
  await migrateUp(db.url);
  sequelize = createDatabase({ DATABASE_URL: db.url, DATABASE_POOL_MAX: 4 });
  tenantId = (await Tenant.create({ name: 'rotation' })).id;
  const audit = new AuditScope({ type: 'system', id: 'test', tenantId });
  // Three secrets, one of them rotated twice: five versions, all under the first key.
  for (const name of ['git-token', 'llm-key', 'webhook']) {
    const value = `${name}-${randomBytes(8).toString('hex')}`;
    const secret = await createSecret(deps(firstKey), audit, tenantId, 'test', { name, value });
    values.set(`secret://${name}`, value);
    if (name === 'git-token') {
      for (let i = 0; i < 2; i++) {
        const next = `${name}-${randomBytes(8).toString('hex')}`;
        await rotateSecret(deps(firstKey), audit, tenantId, secret.id, next);
        values.set(`secret://${name}`, next);
      }
    }
  }
});
afterAll(async () => {
  await sequelize.close();
  await db.drop();
});

test('re-wraps every data key in batches, leaves the values alone, and does nothing on a second run', async () => {
  const before = await versions();
  expect(before.map((v) => v.masterKeyId)).toEqual(Array(5).fill('main-1'));

  expect(await rewrapDataKeys(deps(secondKey, firstKey), { batchSize: 2 })).toBe(5);
  const after = await versions();
  expect(after.map((v) => v.masterKeyId)).toEqual(Array(5).fill('main-2'));
  expect(after.map((v) => v.value)).toEqual(before.map((v) => v.value));
  // The old key is no longer needed.
  await expectEveryValueResolves(secondKey);
  await expect(resolveSecret(deps(firstKey), 'secret://llm-key', { tenantId })).rejects.toThrow(/Master key "main-2" is not configured/);

  const batches = await AuditLog.findAll({ where: { action: 'vault.rewrap' }, order: [['id', 'ASC']] });
  expect(batches.map((b) => b.details)).toEqual([2, 2, 1].map((n) => ({ masterKeyId: 'main-2', versions: n })));

  expect(await rewrapDataKeys(deps(secondKey, firstKey), { batchSize: 2 })).toBe(0);
  expect(await AuditLog.count({ where: { action: 'vault.rewrap' } })).toBe(3);
});

test('during a switch both keys open; npm run vault:rotate-master-key finishes it, and a rerun does nothing', async () => {
  // A version written under the new key while older ones are still under the previous one.
  const audit = new AuditScope({ type: 'system', id: 'test', tenantId });
  const value = `during-switch-${randomBytes(8).toString('hex')}`;
  await createSecret(deps(thirdKey, secondKey), audit, tenantId, 'test', { name: 'during-switch', value });
  values.set('secret://during-switch', value);
  for (const [ref, expected] of values) expect(await resolveSecret(deps(thirdKey, secondKey), ref, { tenantId })).toBe(expected);

  expect(await rotateMasterKeyScript(thirdKey, secondKey)).toBe(5);
  expect(new Set((await versions()).map((v) => v.masterKeyId))).toEqual(new Set(['main-3']));
  await expectEveryValueResolves(thirdKey);
  expect(await rotateMasterKeyScript(thirdKey, secondKey)).toBe(0);
}, 60_000);
