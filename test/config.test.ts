import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, configSchema, configVariables, loadConfig } from '../lib/config';

/**
 * lib/config.ts is the one list of environment variables. The README's configuration table and
 * docker-compose.yml's application environment are checked against it here, so that neither can
 * drift from the schema; and loadConfig must name every bad variable.
 */

const repoRoot = path.resolve(__dirname, '..');
const readRepoFile = (name: string): string => readFileSync(path.join(repoRoot, name), 'utf8');

/** A strong secret for the tests: 48 random-looking bytes. */
const strongSecret = 'pX8s0QvJ3kz7Wm2Yb9Tn4Lr6Hc1Fd5Ge0Aj8Uq3Ro7Ik2Ns6Vw9Ey4Zt1Mb5Cx0Sg';

/** A vault master key in the `<keyId>:<base64 of 32 bytes>` format. */
const productionMasterKey = `main-1:${Buffer.alloc(32, 7).toString('base64')}`;

/** A complete, valid production environment. */
const productionEnv: NodeJS.ProcessEnv = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://auditflow:secret@postgres:5432/auditflow',
  TEMPORAL_ADDRESS: 'temporal:7233',
  JWT_SECRET: strongSecret,
  AUDITFLOW_MASTER_KEY: productionMasterKey,
  PUBLIC_URL: 'https://auditflow.example.test',
  CORS_ORIGINS: 'https://app.example.test, https://admin.example.test',
  TRUST_PROXY: 'true',
};

// ---------------------------------------------------------------------------------------------
// README

/**
 * The configuration table of the README: the rows of the markdown table(s) in the section
 * headed "## Configuration" (up to the next "## " heading) whose first cell is a backticked
 * variable name. Returns the name and the remaining cells of each row.
 */
function readmeConfigRows(readme: string): Array<{ name: string; cells: string[] }> {
  const start = readme.search(/^## Configuration\b/m);
  if (start < 0) throw new Error('README.md has no "## Configuration" section');
  const rest = readme.slice(start + 1);
  const end = rest.search(/^## /m);
  const section = end < 0 ? rest : rest.slice(0, end);
  const rows: Array<{ name: string; cells: string[] }> = [];
  for (const line of section.split('\n')) {
    const match = /^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|(.*)\|\s*$/.exec(line);
    if (match?.[1] && match[2] !== undefined) rows.push({ name: match[1], cells: match[2].split('|').map((c) => c.trim()) });
  }
  return rows;
}

describe('README configuration table', () => {
  const rows = readmeConfigRows(readRepoFile('README.md'));
  const documented = rows.map((r) => r.name);

  test('lists every variable of the schema, once', () => {
    expect(documented.filter((name, i) => documented.indexOf(name) !== i)).toEqual([]);
    expect(configVariables.filter((name) => !documented.includes(name))).toEqual([]);
  });

  test('lists no variable the schema does not read', () => {
    expect(documented.filter((name) => !configVariables.includes(name))).toEqual([]);
  });

  test("shows each variable's schema default in its default column", () => {
    const wrong: string[] = [];
    for (const { name, cells } of rows) {
      const field = configSchema.shape[name as keyof typeof configSchema.shape];
      const parsed = field.safeParse(undefined);
      if (!parsed.success || parsed.data === undefined) continue; // required, or optional without a default
      const value = Array.isArray(parsed.data) ? parsed.data.join(',') : String(parsed.data);
      if (value === '') continue; // an empty list: nothing to show
      if (!(cells[0] ?? '').includes(`\`${value}\``)) wrong.push(`${name}: expected \`${value}\` in "${cells[0] ?? ''}"`);
    }
    expect(wrong).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

/**
 * A minimal reader for the one construct we check, so no YAML library is needed: the mapping
 * under the top-level anchor line `x-app-env: &app-env`, written as one `  KEY: value` line per
 * variable, ending at the next line that is not indented (comments and blank lines skipped).
 * Values keep their text, with surrounding double quotes removed.
 */
function composeAppEnv(compose: string): Map<string, string> {
  const lines = compose.split('\n');
  const start = lines.findIndex((l) => /^x-app-env:\s*&app-env\s*$/.test(l));
  if (start < 0) throw new Error('docker-compose.yml has no top-level `x-app-env: &app-env` block');
  const env = new Map<string, string>();
  for (const line of lines.slice(start + 1)) {
    if (/^\s*(#.*)?$/.test(line)) continue;
    if (!/^\s/.test(line)) break;
    const match = /^ {2}([A-Za-z_][A-Za-z0-9_]*):\s*(.*?)\s*$/.exec(line);
    if (!match?.[1]) throw new Error(`unexpected line in x-app-env (one "  KEY: value" per line): ${line}`);
    env.set(match[1], (match[2] ?? '').replace(/^"(.*)"$/, '$1'));
  }
  return env;
}

/** The lines of the block of `services.<name>` (two-space indentation, as written). */
function composeService(compose: string, name: string): string[] {
  const lines = compose.split('\n');
  const start = lines.findIndex((l) => l === `  ${name}:`);
  if (start < 0) throw new Error(`docker-compose.yml has no service "${name}"`);
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() !== '' && !line.startsWith('    ') && !line.trimStart().startsWith('#')) break;
    body.push(line);
  }
  return body;
}

describe('docker-compose.yml application environment', () => {
  const compose = readRepoFile('docker-compose.yml');
  const env = composeAppEnv(compose);

  test('sets only variables of the schema', () => {
    expect([...env.keys()].filter((name) => !configVariables.includes(name))).toEqual([]);
  });

  test('sets everything a production deployment needs', () => {
    for (const name of ['NODE_ENV', 'DATABASE_URL', 'TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'JWT_SECRET', 'AUDITFLOW_MASTER_KEY', 'AUDITFLOW_MASTER_KEY_FILE']) {
      expect([name, env.has(name)]).toEqual([name, true]);
    }
    expect(env.get('NODE_ENV')).toBe('production');
  });

  test('takes secrets from the environment, required, never written in the file', () => {
    expect(env.get('JWT_SECRET')).toMatch(/^\$\{JWT_SECRET:\?[^}]*\}$/);
    expect(env.get('DATABASE_URL')).toMatch(/^postgres:\/\/[^:]+:\$\{POSTGRES_PASSWORD:\?[^}]*\}@/);
  });

  test('is what loadConfig accepts once the variables are substituted', () => {
    // Substitute like compose: ${VAR:?msg} and ${VAR:-default} from `vars`, else the default.
    const vars: Record<string, string> = { JWT_SECRET: strongSecret, POSTGRES_PASSWORD: 'pw', AUDITFLOW_MASTER_KEY: productionMasterKey };
    const substituted = Object.fromEntries(
      [...env].map(([name, value]) => [
        name,
        value.replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_m, v: string, op?: string, arg?: string) => vars[v] ?? (op === '-' ? (arg ?? '') : '')),
      ]),
    );
    const config = loadConfig(substituted);
    expect(config.NODE_ENV).toBe('production');
    expect(config.DATABASE_URL).toBe('postgres://auditflow:pw@postgres:5432/auditflow');
  });

  test.each(['api', 'worker', 'migrate'])('service %s uses exactly that environment', (name) => {
    expect(composeService(compose, name)).toContain('    environment: *app-env');
  });
});

// ---------------------------------------------------------------------------------------------
// loadConfig

/** The message of the ConfigError that loadConfig(env) throws (fails the test if none). */
function configProblem(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).message;
  }
  throw new Error('loadConfig accepted the environment');
}

describe('loadConfig', () => {
  test('accepts a valid production environment and converts the values', () => {
    const config = loadConfig(productionEnv);
    expect(config).toMatchObject({
      NODE_ENV: 'production',
      API_PORT: 3000,
      TRUST_PROXY: true,
      CORS_ORIGINS: ['https://app.example.test', 'https://admin.example.test'],
      JWT_SECRET: strongSecret,
      BCRYPT_COST: 12,
      TEMPORAL_TASK_QUEUE: 'auditflow',
      TEMPORAL_LLM_TASK_QUEUE: 'auditflow-llm',
    });
    expect(path.isAbsolute(config.AUDITFLOW_DATA_DIR)).toBe(true);
  });

  test.each<[string, NodeJS.ProcessEnv, RegExp]>([
    ['a missing DATABASE_URL', { ...productionEnv, DATABASE_URL: undefined }, /DATABASE_URL/],
    ['a DATABASE_URL that is not postgres://', { ...productionEnv, DATABASE_URL: 'mysql://x@y/z' }, /DATABASE_URL: must be a postgres:\/\/ URL/],
    ['API_PORT=abc', { ...productionEnv, API_PORT: 'abc' }, /API_PORT/],
    ['API_PORT=70000', { ...productionEnv, API_PORT: '70000' }, /API_PORT/],
    ['NODE_ENV=staging', { ...productionEnv, NODE_ENV: 'staging' }, /NODE_ENV/],
    ['LOG_LEVEL=verbose', { ...productionEnv, LOG_LEVEL: 'verbose' }, /LOG_LEVEL/],
    ['TRUST_PROXY=maybe', { ...productionEnv, TRUST_PROXY: 'maybe' }, /TRUST_PROXY/],
    ['PUBLIC_URL that is not a URL', { ...productionEnv, PUBLIC_URL: 'auditflow.example' }, /PUBLIC_URL/],
    ['SMTP_URL that is not smtp(s)://', { ...productionEnv, SMTP_URL: 'http://mail' }, /SMTP_URL: must be an smtp/],
    ['production without JWT_SECRET', { ...productionEnv, JWT_SECRET: undefined }, /JWT_SECRET: is required in production/],
    ['production with an empty JWT_SECRET', { ...productionEnv, JWT_SECRET: '' }, /JWT_SECRET: is required in production/],
    ['a short JWT_SECRET', { ...productionEnv, JWT_SECRET: 'too-short-secret' }, /JWT_SECRET: must be at least 32 bytes/],
    ['a long but repetitive JWT_SECRET', { ...productionEnv, JWT_SECRET: 'ab'.repeat(40) }, /JWT_SECRET: must be at least 32 bytes/],
    ['BCRYPT_COST=10 in production', { ...productionEnv, BCRYPT_COST: '10' }, /BCRYPT_COST: must be at least 12 in production/],
    ['BCRYPT_COST=3', { ...productionEnv, NODE_ENV: 'test', BCRYPT_COST: '3' }, /BCRYPT_COST/],
  ])('rejects %s, naming the variable', (_label, env, message) => {
    expect(configProblem(env)).toMatch(message);
  });

  test('reports every bad variable at once', () => {
    const message = configProblem({ NODE_ENV: 'production', JWT_SECRET: strongSecret, API_PORT: 'abc', LOG_LEVEL: 'loud', SMTP_URL: 'mail' });
    for (const name of ['DATABASE_URL', 'API_PORT', 'LOG_LEVEL', 'SMTP_URL']) expect(message).toContain(name);
  });

  test('treats an empty value as unset', () => {
    expect(loadConfig({ ...productionEnv, API_PORT: '', LOG_LEVEL: '' })).toMatchObject({ API_PORT: 3000, LOG_LEVEL: 'info' });
  });

  test('allows bcrypt cost 4 outside production (fast tests)', () => {
    expect(loadConfig({ ...productionEnv, NODE_ENV: 'test', BCRYPT_COST: '4' }).BCRYPT_COST).toBe(4);
  });

  test('outside production, generates a JWT secret once and keeps it in the data directory', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'auditflow-config-'));
    try {
      const env = { NODE_ENV: 'development', DATABASE_URL: productionEnv.DATABASE_URL, AUDITFLOW_DATA_DIR: dataDir };
      const first = loadConfig(env);
      expect(Buffer.byteLength(first.JWT_SECRET)).toBeGreaterThanOrEqual(32);
      expect(loadConfig(env).JWT_SECRET).toBe(first.JWT_SECRET);
      const file = path.join(dataDir, 'jwt-secret');
      expect((await readFile(file, 'utf8')).trim()).toBe(first.JWT_SECRET);
      if (process.platform !== 'win32') expect((await stat(file)).mode & 0o077).toBe(0);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
