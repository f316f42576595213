import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { createLogger } from '../../lib/logger';
import { PgListener } from '../../lib/pg-listener';

const databaseUrl = process.env.DATABASE_URL ?? '';
const logger = createLogger({ level: 'silent' });

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('PgListener', () => {
  let sql: Client;
  beforeAll(async () => {
    sql = new Client({ connectionString: databaseUrl });
    await sql.connect();
  });
  afterAll(() => sql.end());

  // Each test its own channel and connection name: suites share the database server.
  const channel = () => `test_${randomUUID().replaceAll('-', '')}`;
  const notify = (ch: string, payload: string) => sql.query('SELECT pg_notify($1, $2)', [ch, payload]);
  const connections = async (applicationName: string) =>
    Number((await sql.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rows[0]?.n);
  const dropConnection = (applicationName: string) => sql.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName]);

  it('wakes the subscribers of a notification’s payload only, and forgets those who unsubscribe', async () => {
    const ch = channel();
    const listener = new PgListener({ connectionString: databaseUrl, channels: [ch], logger });
    await listener.start();
    try {
      const woken: string[] = [];
      const unsubscribeA = listener.subscribe(ch, 'a', () => woken.push('a1'));
      listener.subscribe(ch, 'a', () => woken.push('a2'))();
      const unsubscribeB = listener.subscribe(ch, 'b', () => woken.push('b'));
      expect(listener.subscriberCount()).toBe(2);

      await notify(ch, 'a');
      await waitUntil(() => woken.length > 0, 'a wake-up');
      await notify(ch, 'b'); // notifications arrive in order: once b is woken, a's is long done
      await waitUntil(() => woken.includes('b'), 'the wake-up of b');
      expect(woken).toEqual(['a1', 'b']);

      unsubscribeA();
      unsubscribeB();
      expect(listener.subscriberCount()).toBe(0);
      expect(() => listener.subscribe('another_channel', 'a', () => undefined)).toThrow(/does not listen/);
    } finally {
      await listener.close();
    }
  });

  it('reconnects after losing its connection and wakes every subscriber to re-read what it missed', async () => {
    const ch = channel();
    const applicationName = `listener-${randomUUID()}`;
    const listener = new PgListener({ connectionString: databaseUrl, channels: [ch], logger, applicationName, reconnectDelayMs: { min: 50, max: 200 } });
    await listener.start();
    try {
      let wakesA = 0;
      let wakesB = 0;
      listener.subscribe(ch, 'a', () => wakesA++);
      listener.subscribe(ch, 'b', () => wakesB++);

      await dropConnection(applicationName);
      // No notification was sent: these wake-ups are the reconnection's.
      await waitUntil(() => wakesA === 1 && wakesB === 1, 'both subscribers to be woken after reconnecting');
      expect(await connections(applicationName)).toBe(1);

      // Listening again on the new connection.
      await notify(ch, 'b');
      await waitUntil(() => wakesB === 2, 'a notification on the new connection');
      expect(wakesA).toBe(1);
    } finally {
      await listener.close();
    }
  });

  it('stops reconnecting once closed', async () => {
    const applicationName = `listener-${randomUUID()}`;
    const listener = new PgListener({ connectionString: databaseUrl, channels: [channel()], logger, applicationName, reconnectDelayMs: { min: 50, max: 50 } });
    await listener.start();
    await dropConnection(applicationName);
    await listener.close();
    await new Promise((r) => setTimeout(r, 500)); // ten reconnection delays
    expect(await connections(applicationName)).toBe(0);
  });

  it('fails to start when Postgres cannot be reached, so a process does not start deaf', async () => {
    const unreachable = new URL(databaseUrl);
    unreachable.port = '1';
    const listener = new PgListener({ connectionString: unreachable.toString(), channels: [channel()], logger });
    await expect(listener.start()).rejects.toThrow();
    await listener.close();
  });
});
