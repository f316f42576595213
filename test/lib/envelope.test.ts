import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { ConfigError, loadConfig } from '../../lib/config';
import {
  Keyring,
  MalformedMasterKeyError,
  open,
  parseMasterKey,
  rewrap,
  seal,
  TamperedCiphertextError,
  UnknownMasterKeyError,
  type SealedValue,
} from '../../lib/envelope';

const keyText = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const keyring = new Keyring(parseMasterKey(keyText('main-1')));
const plaintext = Buffer.from('ghp_example-token-value');
const where = 'secret 1111 version 1';

describe('envelope encryption', () => {
  test('seals under a fresh data key and IV each time, and opens with the same associated data', () => {
    const a = seal(keyring, plaintext, where);
    const b = seal(keyring, plaintext, where);
    expect(a.masterKeyId).toBe('main-1');
    expect([a.iv.length, a.authTag.length, a.dataKeyIv.length, a.dataKeyAuthTag.length]).toEqual([12, 16, 12, 16]);
    expect(a.wrappedDataKey.length).toBe(32);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(a.wrappedDataKey.equals(b.wrappedDataKey)).toBe(false);
    expect(a.ciphertext.includes(plaintext)).toBe(false);
    expect(open(keyring, a, where).equals(plaintext)).toBe(true);
    expect(open(keyring, b, where).equals(plaintext)).toBe(true);
  });

  const flipFirstBit = (b: Buffer) => {
    const copy = Buffer.from(b);
    copy[0] = (copy[0] ?? 0) ^ 1;
    return copy;
  };
  const tamperings: Array<[string, (s: SealedValue) => SealedValue]> = [
    ['the ciphertext', (s) => ({ ...s, ciphertext: flipFirstBit(s.ciphertext) })],
    ['the auth tag', (s) => ({ ...s, authTag: flipFirstBit(s.authTag) })],
    ['a truncated auth tag', (s) => ({ ...s, authTag: s.authTag.subarray(0, 4) })],
    ['the IV', (s) => ({ ...s, iv: flipFirstBit(s.iv) })],
    ['the wrapped data key', (s) => ({ ...s, wrappedDataKey: flipFirstBit(s.wrappedDataKey) })],
    ['the data key IV', (s) => ({ ...s, dataKeyIv: flipFirstBit(s.dataKeyIv) })],
    ['the data key auth tag', (s) => ({ ...s, dataKeyAuthTag: flipFirstBit(s.dataKeyAuthTag) })],
  ];
  test.each(tamperings)('detects a change to %s and returns nothing', (_label, tamper) => {
    expect(() => open(keyring, tamper(seal(keyring, plaintext, where)), where)).toThrow(TamperedCiphertextError);
  });

  test.each(['secret 2222 version 1', 'secret 1111 version 2', ''])('a value moved to another place (%j) does not decrypt', (elsewhere) => {
    expect(() => open(keyring, seal(keyring, plaintext, where), elsewhere)).toThrow(TamperedCiphertextError);
  });

  test("a value with another value's data key does not decrypt", () => {
    const a = seal(keyring, plaintext, where);
    const b = seal(keyring, Buffer.from('other'), where);
    expect(() => open(keyring, { ...a, wrappedDataKey: b.wrappedDataKey, dataKeyIv: b.dataKeyIv, dataKeyAuthTag: b.dataKeyAuthTag }, where)).toThrow(TamperedCiphertextError);
  });

  test('a data key wrapped under a key the keyring lacks is refused by id; relabelling it is detected', () => {
    const other = new Keyring(parseMasterKey(keyText('other-1')));
    const sealed = seal(other, plaintext, where);
    expect(() => open(keyring, sealed, where)).toThrow(UnknownMasterKeyError);
    // Same key material under two ids: the id is bound into the wrapped key's associated data.
    const twin = parseMasterKey(keyText('twin-a'));
    const twins = new Keyring(twin, [{ id: 'twin-b', key: twin.key }]);
    expect(() => open(twins, { ...seal(twins, plaintext, where), masterKeyId: 'twin-b' }, where)).toThrow(TamperedCiphertextError);
  });

  test('rewrap moves the data key under the current master key and leaves the value untouched', () => {
    const oldKey = parseMasterKey(keyText('old'));
    const sealed = seal(new Keyring(oldKey), plaintext, where);
    const switching = new Keyring(parseMasterKey(keyText('new')), [oldKey]);
    const moved = rewrap(switching, sealed, where);
    expect(moved.masterKeyId).toBe('new');
    expect([moved.ciphertext, moved.iv, moved.authTag]).toEqual([sealed.ciphertext, sealed.iv, sealed.authTag]);
    expect(moved.wrappedDataKey.equals(sealed.wrappedDataKey)).toBe(false);
    expect(open(new Keyring(switching.current), moved, where).equals(plaintext)).toBe(true);
    expect(rewrap(switching, moved, where)).toBe(moved); // already current: nothing to do
    // During the switch both the old and the new wrapping open.
    expect(open(switching, sealed, where).equals(plaintext)).toBe(true);
  });

  test('a keyring shows key ids only, never key material', () => {
    const key = parseMasterKey(keyText('shown-id'));
    const ring = new Keyring(key);
    const shown = `${inspect(ring)} ${JSON.stringify({ ring })}`;
    expect(shown).toContain('shown-id');
    expect(shown).not.toContain(key.key.toString('base64'));
    expect(shown).not.toContain(key.key.toString('hex'));
  });
});

describe('master key format', () => {
  test('reads "<keyId>:<base64>" and bare base64, deriving a stable id from the key', () => {
    const raw = randomBytes(32);
    expect(parseMasterKey(`main-2:${raw.toString('base64')}`)).toEqual({ id: 'main-2', key: raw });
    const bare = parseMasterKey(raw.toString('base64'));
    expect(bare.key.equals(raw)).toBe(true);
    expect(bare.id).toMatch(/^k-[0-9a-f]{16}$/);
    expect(parseMasterKey(raw.toString('base64url')).id).toBe(bare.id);
    expect(parseMasterKey(randomBytes(32).toString('base64')).id).not.toBe(bare.id);
  });

  test.each([
    ['too short', Buffer.alloc(16).toString('base64')],
    ['too long', Buffer.alloc(48).toString('base64')],
    ['not base64', 'not base64 at all!'],
    ['a bad key id', `bad id:${Buffer.alloc(32).toString('base64')}`],
    ['empty', ''],
  ])('refuses a key that is %s, without echoing it', (_label, text) => {
    expect(() => parseMasterKey(text)).toThrow(MalformedMasterKeyError);
  });
});

describe('the master key in the configuration', () => {
  const base = { DATABASE_URL: 'postgres://u:p@localhost/db', JWT_SECRET: 'pX8s0QvJ3kz7Wm2Yb9Tn4Lr6Hc1Fd5Ge0Aj8Uq3Ro7Ik2Ns6Vw9Ey4Zt1Mb5Cx0Sg' };
  const production = { ...base, NODE_ENV: 'production' };
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'auditflow-master-key-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  function problem(env: NodeJS.ProcessEnv): string {
    try {
      loadConfig(env);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('loadConfig accepted the environment');
  }

  test('production without a master key stops start-up, naming the variable', () => {
    expect(problem({ ...production, AUDITFLOW_DATA_DIR: dir })).toMatch(/AUDITFLOW_MASTER_KEY: is required in production/);
  });

  test.each([
    ['a malformed AUDITFLOW_MASTER_KEY', { AUDITFLOW_MASTER_KEY: 'main-1:c2hvcnQ=' }, /AUDITFLOW_MASTER_KEY: must be/],
    ['a malformed previous key', { AUDITFLOW_MASTER_KEY: keyText('a'), AUDITFLOW_PREVIOUS_MASTER_KEYS: `${keyText('b')},nonsense` }, /AUDITFLOW_PREVIOUS_MASTER_KEYS: entry 2 must be/],
    ['both a key and a key file', { AUDITFLOW_MASTER_KEY: keyText('a'), AUDITFLOW_MASTER_KEY_FILE: '/nonexistent' }, /not both/],
    ['a key file that does not exist', { AUDITFLOW_MASTER_KEY_FILE: '/nonexistent/master-key' }, /AUDITFLOW_MASTER_KEY_FILE: cannot read/],
    ['two different keys under one id', { AUDITFLOW_MASTER_KEY: keyText('same'), AUDITFLOW_PREVIOUS_MASTER_KEYS: keyText('same') }, /two different master keys have the id "same"/],
  ])('production with %s stops start-up', (_label, env, message) => {
    expect(problem({ ...production, ...env })).toMatch(message);
  });

  test('a malformed key is never echoed in the error', () => {
    const secretLooking = `main-1:${randomBytes(20).toString('base64')}`;
    expect(problem({ ...production, AUDITFLOW_MASTER_KEY: secretLooking })).not.toContain(secretLooking.slice(7));
  });

  test('production reads the key, or a key file (Docker/Kubernetes secrets), and previous keys for the switch', async () => {
    const current = keyText('main-2');
    const previous = keyText('main-1');
    const fromEnv = loadConfig({ ...production, AUDITFLOW_MASTER_KEY: current, AUDITFLOW_PREVIOUS_MASTER_KEYS: previous });
    expect(fromEnv.vaultKeyring.toJSON()).toEqual({ current: 'main-2', keyIds: ['main-1', 'main-2'] });

    const file = path.join(dir, 'master-key');
    await writeFile(file, `${current}\n`);
    const fromFile = loadConfig({ ...production, AUDITFLOW_MASTER_KEY_FILE: file });
    expect(fromFile.vaultKeyring.current).toEqual(fromEnv.vaultKeyring.current);

    await writeFile(file, 'garbage');
    expect(problem({ ...production, AUDITFLOW_MASTER_KEY_FILE: file })).toMatch(/AUDITFLOW_MASTER_KEY_FILE: the master key must be/);
  });

  test('outside production, a key is generated once into the data directory (mode 0600) and reused', async () => {
    const env = { ...base, NODE_ENV: 'development', AUDITFLOW_DATA_DIR: dir };
    const first = loadConfig(env).vaultKeyring;
    expect(loadConfig(env).vaultKeyring.current).toEqual(first.current);
    const file = path.join(dir, 'master-key');
    expect(parseMasterKey(await readFile(file, 'utf8'))).toEqual(first.current);
    if (process.platform !== 'win32') expect((await stat(file)).mode & 0o077).toBe(0);
  });
});
