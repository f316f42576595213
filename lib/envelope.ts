import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

/**
 * Envelope encryption: every value is encrypted under its own random data key (AES-256-GCM), and
 * the data key is stored wrapped (AES-256-GCM) under a master key named by a key id. Rotating the
 * master key re-wraps data keys only; values are never re-encrypted for it. Callers pass the
 * associated data that binds a sealed value to its place (which record, which version): a sealed
 * value moved elsewhere fails authentication instead of decrypting.
 */

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHM = 'aes-256-gcm';

export interface MasterKey {
  readonly id: string;
  readonly key: Buffer;
}

/** A value as stored: nothing here is secret without the master key. */
export interface SealedValue {
  ciphertext: Buffer;
  iv: Buffer;
  authTag: Buffer;
  wrappedDataKey: Buffer;
  dataKeyIv: Buffer;
  dataKeyAuthTag: Buffer;
  masterKeyId: string;
}

/** Authentication failed: the stored value, its key or its associated data were altered or moved. */
export class TamperedCiphertextError extends Error {
  constructor(what: 'value' | 'data key') {
    super(`The ${what} failed authentication: it was altered, or it belongs to another record.`);
    this.name = 'TamperedCiphertextError';
  }
}

/** A data key is wrapped under a master key this process does not hold. */
export class UnknownMasterKeyError extends Error {
  constructor(readonly masterKeyId: string) {
    super(`Master key "${masterKeyId}" is not configured (set it in AUDITFLOW_PREVIOUS_MASTER_KEYS while switching keys).`);
    this.name = 'UnknownMasterKeyError';
  }
}

/** Raised by `parseMasterKey`; the message never contains the key material. */
export class MalformedMasterKeyError extends Error {
  constructor(reason: string) {
    super(`must be "<keyId>:<base64 of 32 bytes>" or the base64 of 32 bytes (${reason})`);
    this.name = 'MalformedMasterKeyError';
  }
}

const keyIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const base64Pattern = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * Reads `<keyId>:<base64>` or a bare base64 key. A bare key gets an id derived from a hash of
 * it, so the same key always has the same id without anyone naming it.
 */
export function parseMasterKey(text: string): MasterKey {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(':');
  const id = colon < 0 ? undefined : trimmed.slice(0, colon);
  const encoded = colon < 0 ? trimmed : trimmed.slice(colon + 1);
  if (id !== undefined && !keyIdPattern.test(id)) throw new MalformedMasterKeyError('the key id may hold only letters, digits, ".", "_" and "-"');
  if (!base64Pattern.test(encoded)) throw new MalformedMasterKeyError('the key is not base64');
  // Node's base64 decoder also reads the URL-safe alphabet.
  const key = Buffer.from(encoded, 'base64');
  if (key.length !== KEY_BYTES) throw new MalformedMasterKeyError(`the key decodes to ${key.length} bytes`);
  return { id: id ?? derivedKeyId(key), key };
}

function derivedKeyId(key: Buffer): string {
  return `k-${createHash('sha256').update('auditflow master key id\0').update(key).digest('hex').slice(0, 16)}`;
}

/** A new master key in the format `parseMasterKey` reads (base64 only: its id is derived). */
export function generateMasterKey(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

/**
 * The master keys a process holds: the current one wraps new data keys; previous ones still
 * unwrap data keys wrapped before a switch. Inspecting or serialising it shows key ids only.
 */
export class Keyring {
  readonly #byId: Map<string, MasterKey>;

  constructor(
    readonly current: MasterKey,
    previous: readonly MasterKey[] = [],
  ) {
    this.#byId = new Map(previous.map((k) => [k.id, k]));
    this.#byId.set(current.id, current);
  }

  get currentKeyId(): string {
    return this.current.id;
  }

  get keyIds(): string[] {
    return [...this.#byId.keys()];
  }

  find(id: string): MasterKey {
    const key = this.#byId.get(id);
    if (!key) throw new UnknownMasterKeyError(id);
    return key;
  }

  toJSON(): { current: string; keyIds: string[] } {
    return { current: this.current.id, keyIds: this.keyIds };
  }

  [inspect.custom](): string {
    return `Keyring(${JSON.stringify(this.toJSON())})`;
  }
}

function encrypt(key: Buffer, plaintext: Buffer, associatedData: Buffer): { ciphertext: Buffer; iv: Buffer; authTag: Buffer } {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(associatedData);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, iv, authTag: cipher.getAuthTag() };
}

function decrypt(key: Buffer, sealed: { ciphertext: Buffer; iv: Buffer; authTag: Buffer }, associatedData: Buffer, what: 'value' | 'data key'): Buffer {
  // A tag or IV of the wrong length would make GCM accept a truncated tag: refuse it outright.
  if (sealed.iv.length !== IV_BYTES || sealed.authTag.length !== TAG_BYTES) throw new TamperedCiphertextError(what);
  const decipher = createDecipheriv(ALGORITHM, key, sealed.iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(associatedData);
  decipher.setAuthTag(sealed.authTag);
  try {
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
  } catch {
    throw new TamperedCiphertextError(what);
  }
}

/** The data key's associated data also names the master key, so a wrapped key cannot be relabelled. */
const dataKeyAad = (associatedData: string, masterKeyId: string) => Buffer.from(`data-key\0${masterKeyId}\0${associatedData}`);
const valueAad = (associatedData: string) => Buffer.from(`value\0${associatedData}`);

function wrapDataKey(keyring: Keyring, dataKey: Buffer, associatedData: string): Pick<SealedValue, 'wrappedDataKey' | 'dataKeyIv' | 'dataKeyAuthTag' | 'masterKeyId'> {
  const master = keyring.current;
  const wrapped = encrypt(master.key, dataKey, dataKeyAad(associatedData, master.id));
  return { wrappedDataKey: wrapped.ciphertext, dataKeyIv: wrapped.iv, dataKeyAuthTag: wrapped.authTag, masterKeyId: master.id };
}

function unwrapDataKey(keyring: Keyring, sealed: SealedValue, associatedData: string): Buffer {
  const master = keyring.find(sealed.masterKeyId);
  return decrypt(master.key, { ciphertext: sealed.wrappedDataKey, iv: sealed.dataKeyIv, authTag: sealed.dataKeyAuthTag }, dataKeyAad(associatedData, master.id), 'data key');
}

/** Encrypts `plaintext` under a fresh data key, wrapped under the keyring's current master key. */
export function seal(keyring: Keyring, plaintext: Buffer, associatedData: string): SealedValue {
  const dataKey = randomBytes(KEY_BYTES);
  try {
    return { ...encrypt(dataKey, plaintext, valueAad(associatedData)), ...wrapDataKey(keyring, dataKey, associatedData) };
  } finally {
    dataKey.fill(0);
  }
}

/** Decrypts a sealed value; throws `TamperedCiphertextError` rather than return anything unauthenticated. */
export function open(keyring: Keyring, sealed: SealedValue, associatedData: string): Buffer {
  const dataKey = unwrapDataKey(keyring, sealed, associatedData);
  try {
    return decrypt(dataKey, sealed, valueAad(associatedData), 'value');
  } finally {
    dataKey.fill(0);
  }
}

/**
 * The same sealed value with its data key re-wrapped under the keyring's current master key; the
 * value's ciphertext, IV and tag are untouched. Already current: returned as is.
 */
export function rewrap(keyring: Keyring, sealed: SealedValue, associatedData: string): SealedValue {
  if (sealed.masterKeyId === keyring.currentKeyId) return sealed;
  const dataKey = unwrapDataKey(keyring, sealed, associatedData);
  try {
    return { ...sealed, ...wrapDataKey(keyring, dataKey, associatedData) };
  } finally {
    dataKey.fill(0);
  }
}
