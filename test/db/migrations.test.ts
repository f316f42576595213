import { Client } from 'pg';
import { migrateDown, migrateUp } from '../../db/migrate';
import { createScratchDatabase } from '../harness/databases';

const foundationTables = [
  'tenants',
  'users',
  'memberships',
  'api_tokens',
  'refresh_tokens',
  'invitations',
  'password_resets',
  'projects',
  'audit_logs',
  'audit_logs_archive',
];

async function tablesIn(url: string): Promise<string[]> {
  const c = new Client({ connectionString: url });
  await c.connect();
  const { rows } = await c.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
  );
  await c.end();
  return rows.map((r) => r.table_name);
}

describe('database migrations', () => {
  let db: Awaited<ReturnType<typeof createScratchDatabase>>;
  beforeEach(async () => {
    db = await createScratchDatabase();
  });
  afterEach(() => db.drop());

  it('create every table going up and remove them all going down, repeatably', async () => {
    const applied = await migrateUp(db.url);
    expect(applied.length).toBeGreaterThan(0);
    expect(await tablesIn(db.url)).toEqual(expect.arrayContaining(foundationTables));

    expect(await migrateUp(db.url)).toEqual([]); // already up to date

    const reverted = await migrateDown(db.url, { to: 0 });
    expect(reverted).toEqual([...applied].reverse());
    expect(await tablesIn(db.url)).toEqual(['schema_migrations']);

    expect(await migrateUp(db.url)).toEqual(applied);
    expect(await tablesIn(db.url)).toEqual(expect.arrayContaining(foundationTables));
  });

  it('are safe when several instances start at once: each migration runs exactly once', async () => {
    const runs = await Promise.all([migrateUp(db.url), migrateUp(db.url), migrateUp(db.url)]);
    const all = runs.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(runs.filter((r) => r.length > 0)).toHaveLength(1);

    const c = new Client({ connectionString: db.url });
    await c.connect();
    const { rows } = await c.query<{ name: string }>('SELECT name FROM schema_migrations');
    await c.end();
    expect(rows.map((r) => r.name).sort()).toEqual([...all].sort());
  });
});
