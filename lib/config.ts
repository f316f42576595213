import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { generateMasterKey, Keyring, MalformedMasterKeyError, parseMasterKey, type MasterKey } from './envelope';
import { providerNames } from './llm/provider-names';

/**
 * Every environment variable the platform reads, in one schema. Start-up fails with a message
 * naming each bad variable; the README's table and docker-compose.yml are checked against
 * `configVariables` by a test, so docs and deployment files cannot drift from this list.
 */

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    AUDITFLOW_DATA_DIR: z.string().min(1).default('.data'),
    API_HOST: z.string().min(1).default('0.0.0.0'),
    API_PORT: int(0, 65535).default(3000),
    PUBLIC_URL: z.url().default('http://localhost:3000'),
    TRUST_PROXY: bool.default(false),
    TRUST_PROXY_HOPS: int(1, 10).default(1),
    CORS_ORIGINS: list.default([]),
    BODY_LIMIT_BYTES: int(1024, 100 * 1024 * 1024).default(1024 * 1024),
    SSE_HEARTBEAT_SECONDS: int(1, 300).default(15),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    LOG_PRETTY: bool.optional(),

    DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL'),
    DATABASE_POOL_MAX: int(1, 200).default(10),

    TEMPORAL_ADDRESS: z.string().min(1).default('127.0.0.1:7233'),
    TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
    TEMPORAL_UI_URL: z.url().default('http://localhost:8233'),
    TEMPORAL_TASK_QUEUE: z.string().min(1).default('auditflow'),
    /** Defaults to `<TEMPORAL_TASK_QUEUE>-llm`, so each deployment (and each test app) has its own. */
    TEMPORAL_LLM_TASK_QUEUE: z.string().min(1).optional(),

    JWT_SECRET: z.string().optional(),
    JWT_ISSUER: z.string().min(1).default('auditflow'),
    JWT_AUDIENCE: z.string().min(1).default('auditflow-api'),
    ACCESS_TOKEN_TTL_SECONDS: int(60, 3600).default(900),
    REFRESH_TOKEN_TTL_DAYS: int(1, 365).default(30),

    BCRYPT_COST: int(4, 15).default(12),
    REGISTRATION_OPEN: bool.default(true),
    LOGIN_MAX_FAILURES_PER_ACCOUNT: int(1, 1000).default(5),
    LOGIN_MAX_FAILURES_PER_IP: int(1, 100000).default(50),
    LOGIN_LOCKOUT_SECONDS: int(1, 86400).default(900),
    INVITATION_TTL_HOURS: int(1, 24 * 30).default(72),

    SMTP_URL: z.string().regex(/^smtps?:\/\//, 'must be an smtp:// or smtps:// URL').optional(),
    MAIL_FROM: z.string().min(3).default('AuditFlow <no-reply@auditflow.local>'),

    AUDIT_RETENTION_DAYS: int(1, 36500).default(365),

    AUDITFLOW_MASTER_KEY: z.string().optional(),
    AUDITFLOW_MASTER_KEY_FILE: z.string().min(1).optional(),
    AUDITFLOW_PREVIOUS_MASTER_KEYS: list.default([]),
    VAULT_KEEP_VERSIONS: int(0, 100).default(5),

    LLM_CHAT_PROVIDER: z.enum(providerNames).default('builtin'),
    LLM_CHAT_MODEL: z.string().min(1).optional(),
    LLM_CHAT_BASE_URL: z.url().optional(),
    LLM_CHAT_API_KEY: z.string().min(1).optional(),
    LLM_EMBEDDING_PROVIDER: z.enum(providerNames).default('builtin'),
    LLM_EMBEDDING_MODEL: z.string().min(1).optional(),
    LLM_EMBEDDING_BASE_URL: z.url().optional(),
    LLM_EMBEDDING_API_KEY: z.string().min(1).optional(),
    LLM_ALLOWED_HOSTS: list.default([]),
    LLM_MONTHLY_BUDGET_USD: z.coerce.number().min(0).max(1e9).optional(),
    LLM_CACHE_TTL_SECONDS: int(0, 365 * 86400).default(7 * 86400),
    LLM_REQUESTS_PER_MINUTE: int(1, 1_000_000).default(600),
    LLM_TIMEOUT_SECONDS: int(1, 3600).default(120),
    LLM_INLINE_TIMEOUT_SECONDS: int(1, 300).default(20),
    LLM_WORKER_CONCURRENCY: int(1, 1000).default(8),
    LLM_QUEUE_ACTIVITIES_PER_SECOND: z.coerce.number().min(0.1).max(100_000).default(50),

    S3_ENDPOINT: z.url().optional(),
    S3_BUCKET: z.string().min(3).max(63).default('auditflow'),
    S3_REGION: z.string().min(1).default('us-east-1'),
    S3_ACCESS_KEY_ID: z.string().min(1).optional(),
    S3_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    S3_FORCE_PATH_STYLE: bool.default(true),

    VECTOR_STORE: z.enum(['lancedb', 'qdrant']).optional(),
    QDRANT_URL: z.url().optional(),
    QDRANT_API_KEY: z.string().min(1).optional(),
    INGEST_ALLOWED_HOSTS: list.default([]),
    INGEST_MAX_DOCUMENT_BYTES: int(1024, 1024 * 1024 * 1024).default(50 * 1024 * 1024),
    INGEST_MAX_DOCUMENTS: int(1, 1_000_000).default(5000),
    INGEST_BATCH_MAX_BYTES: int(1024, 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    INGEST_FETCH_TIMEOUT_SECONDS: int(1, 3600).default(120),
    CHUNK_TARGET_TOKENS: int(32, 8192).default(400),
    CHUNK_OVERLAP_TOKENS: int(0, 2048).default(60),
    PARSER_TIMEOUT_SECONDS: int(1, 3600).default(60),
    PARSER_MAX_MEMORY_MB: int(32, 16384).default(512),

    SCAN_ALLOWED_HOSTS: list.default(['github.com', 'gitlab.com']),
    SCAN_FILE_ROOTS: list.default([]),
    SCAN_FETCH_TIMEOUT_SECONDS: int(5, 3600).default(300),
    SCAN_MAX_REPOSITORY_BYTES: int(1024 * 1024, 50 * 1024 * 1024 * 1024).default(1024 * 1024 * 1024),
    SCAN_MAX_TREE_ENTRIES: int(1, 10_000_000).default(500_000),
    SCAN_MAX_FILE_BYTES: int(1024, 100 * 1024 * 1024).default(1024 * 1024),
    SCAN_MAX_FILES: int(1, 10_000_000).default(200_000),
    SCAN_LLM_MAX_FILES: int(0, 100_000).default(200),
    UPLOAD_MAX_BYTES: int(1024, 10 * 1024 * 1024 * 1024).default(200 * 1024 * 1024),
    ZIP_MAX_ENTRIES: int(1, 10_000_000).default(200_000),
    ZIP_MAX_INFLATED_BYTES: int(1024, 100 * 1024 * 1024 * 1024).default(2 * 1024 * 1024 * 1024),
    ZIP_MAX_COMPRESSION_RATIO: int(2, 100_000).default(200),
  })
  .superRefine((c, issue) => {
    const secret = c.JWT_SECRET;
    if (secret === undefined) {
      if (c.NODE_ENV === 'production') {
        issue.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'is required in production' });
      }
    } else if (Buffer.byteLength(secret) < 32 || new Set(secret).size < 10) {
      issue.addIssue({ code: 'custom', path: ['JWT_SECRET'], message: 'must be at least 32 bytes of random data' });
    }
    if (c.S3_ENDPOINT !== undefined && (c.S3_ACCESS_KEY_ID === undefined || c.S3_SECRET_ACCESS_KEY === undefined)) {
      issue.addIssue({ code: 'custom', path: ['S3_ENDPOINT'], message: 'needs S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY' });
    }
    if (c.VECTOR_STORE === 'qdrant' && c.QDRANT_URL === undefined) {
      issue.addIssue({ code: 'custom', path: ['VECTOR_STORE'], message: 'qdrant needs QDRANT_URL' });
    }
    if (c.CHUNK_OVERLAP_TOKENS >= c.CHUNK_TARGET_TOKENS) {
      issue.addIssue({ code: 'custom', path: ['CHUNK_OVERLAP_TOKENS'], message: 'must be smaller than CHUNK_TARGET_TOKENS' });
    }
    if (c.NODE_ENV === 'production' && c.BCRYPT_COST < 12) {
      issue.addIssue({ code: 'custom', path: ['BCRYPT_COST'], message: 'must be at least 12 in production' });
    }
    if (c.AUDITFLOW_MASTER_KEY !== undefined && c.AUDITFLOW_MASTER_KEY_FILE !== undefined) {
      issue.addIssue({ code: 'custom', path: ['AUDITFLOW_MASTER_KEY'], message: 'set either AUDITFLOW_MASTER_KEY or AUDITFLOW_MASTER_KEY_FILE, not both' });
    } else if (c.NODE_ENV === 'production' && c.AUDITFLOW_MASTER_KEY === undefined && c.AUDITFLOW_MASTER_KEY_FILE === undefined) {
      issue.addIssue({ code: 'custom', path: ['AUDITFLOW_MASTER_KEY'], message: 'is required in production (or AUDITFLOW_MASTER_KEY_FILE)' });
    }
    if (c.AUDITFLOW_MASTER_KEY !== undefined) {
      const problem = masterKeyProblem(c.AUDITFLOW_MASTER_KEY);
      if (problem) issue.addIssue({ code: 'custom', path: ['AUDITFLOW_MASTER_KEY'], message: problem });
    }
    c.AUDITFLOW_PREVIOUS_MASTER_KEYS.forEach((text, i) => {
      const problem = masterKeyProblem(text);
      if (problem) issue.addIssue({ code: 'custom', path: ['AUDITFLOW_PREVIOUS_MASTER_KEYS'], message: `entry ${i + 1} ${problem}` });
    });
  });

function masterKeyProblem(text: string): string | null {
  try {
    parseMasterKey(text);
    return null;
  } catch (err) {
    if (err instanceof MalformedMasterKeyError) return err.message;
    throw err;
  }
}

export type Config = z.output<typeof configSchema> & {
  JWT_SECRET: string;
  TEMPORAL_LLM_TASK_QUEUE: string;
  /** The vault's master keys (current and previous), read from the variables above or the dev key file. */
  vaultKeyring: Keyring;
};

/** The names of all variables the schema reads, for docs and deployment-file checks. */
export const configVariables: readonly string[] = Object.keys(configSchema.shape);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the configuration from an environment. Outside production an unset JWT_SECRET is
 * generated once and persisted under the data directory, so restarts keep sessions valid.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const values = Object.fromEntries(configVariables.map((name) => [name, env[name] === '' ? undefined : env[name]]));
  const parsed = configSchema.safeParse(values);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`));
  }
  const c = parsed.data;
  const secret = c.JWT_SECRET ?? persistentDevSecret(path.join(c.AUDITFLOW_DATA_DIR, 'jwt-secret'));
  return {
    ...c,
    AUDITFLOW_DATA_DIR: path.resolve(c.AUDITFLOW_DATA_DIR),
    TEMPORAL_LLM_TASK_QUEUE: c.TEMPORAL_LLM_TASK_QUEUE ?? `${c.TEMPORAL_TASK_QUEUE}-llm`,
    JWT_SECRET: secret,
    vaultKeyring: vaultKeyring(c),
  };
}

/**
 * The master key comes from AUDITFLOW_MASTER_KEY, from the file AUDITFLOW_MASTER_KEY_FILE names
 * (Docker and Kubernetes secrets), or, outside production (the schema refuses production without
 * one), from `<data dir>/master-key`, generated on first start.
 */
function vaultKeyring(c: z.output<typeof configSchema>): Keyring {
  const [name, text] =
    c.AUDITFLOW_MASTER_KEY !== undefined
      ? ['AUDITFLOW_MASTER_KEY', c.AUDITFLOW_MASTER_KEY]
      : c.AUDITFLOW_MASTER_KEY_FILE !== undefined
        ? ['AUDITFLOW_MASTER_KEY_FILE', readKeyFile(c.AUDITFLOW_MASTER_KEY_FILE)]
        : ['AUDITFLOW_DATA_DIR', persistentDevSecret(path.join(c.AUDITFLOW_DATA_DIR, 'master-key'), generateMasterKey)];
  let current: MasterKey;
  try {
    current = parseMasterKey(text);
  } catch (err) {
    if (err instanceof MalformedMasterKeyError) throw new ConfigError([`${name}: the master key ${err.message}`]);
    throw err;
  }
  const previous = c.AUDITFLOW_PREVIOUS_MASTER_KEYS.map(parseMasterKey);
  const clash = previous.find((p) => previous.concat(current).some((q) => q.id === p.id && !q.key.equals(p.key)));
  if (clash) throw new ConfigError([`AUDITFLOW_PREVIOUS_MASTER_KEYS: two different master keys have the id "${clash.id}"`]);
  return new Keyring(current, previous);
}

function readKeyFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`AUDITFLOW_MASTER_KEY_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
}

/** Reads a secret file, creating it (mode 0600) from `generate` (default: 48 random bytes) when absent. */
export function persistentDevSecret(file: string, generate: () => string = () => randomBytes(48).toString('base64url')): string {
  mkdirSync(path.dirname(file), { recursive: true });
  try {
    writeFileSync(file, generate(), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // 'wx' fails when the file exists (an earlier run, or another process that won the race): reuse it.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  const secret = readFileSync(file, 'utf8').trim();
  if (!secret) throw new ConfigError([`${file} is empty: delete it to generate a new secret`]);
  return secret;
}
