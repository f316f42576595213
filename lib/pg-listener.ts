import { Client } from 'pg';
import type { Logger } from './logger';

/** Called when there may be something new to read; it reads for itself (a wake carries no data). */
export type Wake = () => void;

export interface PgListenerOptions {
  connectionString: string;
  /** Channels to LISTEN on, fixed for the listener's life (every connection listens on all of them). */
  channels: readonly string[];
  logger: Logger;
  /** Shown in pg_stat_activity, so operators (and tests) can tell this connection apart. */
  applicationName?: string;
  /** Reconnection delays: doubling from `min` up to `max` while Postgres stays unreachable. */
  reconnectDelayMs?: { min: number; max: number };
}

/**
 * One dedicated Postgres connection per process that LISTENs on named channels and wakes the
 * subscribers of each (channel, payload) pair when a NOTIFY arrives. A subscription is a Set
 * entry and nothing else: no connection, no timer, no polling.
 *
 * Notifications sent while the connection is down are lost, so after every reconnection all
 * subscribers are woken to re-read what they follow.
 */
export class PgListener {
  private readonly subscribers = new Map<string, Map<string, Set<Wake>>>();
  private client: Client | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private failedAttempts = 0;
  private closed = false;
  private readonly delays: { min: number; max: number };

  constructor(private readonly options: PgListenerOptions) {
    this.delays = options.reconnectDelayMs ?? { min: 100, max: 30_000 };
  }

  /** Connects and listens; rejects if Postgres cannot be reached now (start-up should fail loudly). */
  async start(): Promise<void> {
    await this.connect();
  }

  /**
   * Wakes `wake` on each notification of `channel` carrying `payload`, and after a reconnection.
   * Subscribe before reading what you follow, so nothing announced in between is missed.
   * Returns the unsubscribe function.
   */
  subscribe(channel: string, payload: string, wake: Wake): () => void {
    if (!this.options.channels.includes(channel)) throw new Error(`PgListener does not listen on channel "${channel}"`);
    const byPayload = this.subscribers.get(channel) ?? new Map<string, Set<Wake>>();
    this.subscribers.set(channel, byPayload);
    const wakes = byPayload.get(payload) ?? new Set<Wake>();
    byPayload.set(payload, wakes);
    wakes.add(wake);
    return () => {
      wakes.delete(wake);
      if (wakes.size === 0 && byPayload.get(payload) === wakes) byPayload.delete(payload);
    };
  }

  /** How many subscriptions are open, over all channels and payloads. */
  subscriberCount(): number {
    let count = 0;
    for (const byPayload of this.subscribers.values()) for (const wakes of byPayload.values()) count += wakes.size;
    return count;
  }

  /** Stops listening and reconnecting; subscribers are not woken again. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined); // a connection already broken has nothing to end
  }

  private async connect(): Promise<void> {
    const client = new Client({ connectionString: this.options.connectionString, application_name: this.options.applicationName ?? 'pg-listener', keepAlive: true });
    // Without an 'error' listener a dropped connection would crash the process.
    client.on('error', (err) => this.dropped(client, err));
    client.on('end', () => this.dropped(client));
    client.on('notification', (message) => {
      if (message.payload !== undefined) this.wake(message.channel, message.payload);
    });
    try {
      await client.connect();
      for (const channel of this.options.channels) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => undefined); // late errors of an abandoned connection
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.failedAttempts = 0;
  }

  private wake(channel: string, payload: string): void {
    for (const wake of this.subscribers.get(channel)?.get(payload) ?? []) wake();
  }

  private wakeAll(): void {
    for (const byPayload of this.subscribers.values()) for (const wakes of byPayload.values()) for (const wake of wakes) wake();
  }

  /** The connection broke (or ended): forget it and reconnect, unless we are closing. */
  private dropped(client: Client, err?: Error): void {
    if (client !== this.client) return; // a second event for the same connection, or one we ended
    this.client = null;
    client.end().catch(() => undefined);
    if (this.closed) return;
    this.options.logger.warn({ err, channels: this.options.channels }, 'LISTEN connection lost; reconnecting');
    this.scheduleReconnect();
  }

  private reconnectDelay(): number {
    return Math.min(this.delays.max, this.delays.min * 2 ** this.failedAttempts);
  }

  private scheduleReconnect(): void {
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect().then(
        () => {
          if (this.closed) return;
          this.options.logger.info({ channels: this.options.channels }, 'LISTEN connection restored');
          this.wakeAll();
        },
        (err: unknown) => {
          this.failedAttempts++;
          if (this.closed) return;
          this.options.logger.warn({ err, retryInMs: this.reconnectDelay() }, 'LISTEN reconnection failed');
          this.scheduleReconnect();
        },
      );
    }, this.reconnectDelay());
  }
}
