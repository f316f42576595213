import type { AddressInfo } from 'node:net';
import type { Client } from '@temporalio/client';
import { listenApi } from '../../api/listen';
import type { BlobStore } from '../../lib/blob-store';
import { createLogger } from '../../lib/logger';
import type { VectorStore } from '../../lib/vector-store';
import { runEntry, type RunningEntry } from '../../test/harness/processes';
import { withBenchDatabase, type BenchServices } from './index';
import { apiAt, type Api } from './api';
import { procStatus, resetPeakRss, stopWorker } from './worker-process';

/**
 * The platform as a deployment runs it, for benchmarks that go end to end (not a benchmark
 * itself: .ci/run runs only bench/*.ts): a fresh database, the API in this process, a worker
 * process (workers/main.ts) whose memory can be read, and a newly registered tenant's admin
 * signed in to the API.
 */
export interface BenchPlatform extends BenchServices {
  temporal: Client;
  blobs: BlobStore;
  vectors: VectorStore;
  /** Signed in as the admin of a tenant registered for the bench. */
  api: Api;
  tenantId: string;
  /** Registers another tenant (`label` names it and its admin), whose admin is signed in to the returned client. */
  registerTenant: (label: string) => Promise<{ api: Api; tenantId: string }>;
  worker: RunningEntry;
  /** The worker's process id, for /proc readings. */
  pid: number;
  /** The worker's peak RSS at start-up (workflow bundling), read before the peak was reset. */
  startupPeak: number | null;
  /** Whether the kernel let the peak be reset after start-up (else peaks include start-up). */
  peakReset: boolean;
}

const password = 'correct horse battery staple 42!';

/** Runs `bench` against the whole platform on `env` (Temporal's address among it), stopped and removed afterwards. */
export async function withBenchPlatform<T>(env: Record<string, string>, bench: (platform: BenchPlatform) => Promise<T>): Promise<T> {
  return withBenchDatabase(env, async (services) => {
    const { config, sequelize } = services;
    const api = await listenApi(config, { sequelize, logger: createLogger({ level: 'silent' }), host: '127.0.0.1', port: 0 });
    const { temporal, blobs, vectors, server } = api;
    const worker = runEntry('workers/main.ts', { ...env, DATABASE_URL: config.DATABASE_URL, AUDITFLOW_DATA_DIR: config.AUDITFLOW_DATA_DIR, LOG_LEVEL: 'info' });
    try {
      await worker.waitFor(/"msg":"worker started"/, 120_000);
      const pid = worker.child.pid ?? 0;
      const startupPeak = procStatus(pid, 'VmHWM');
      const peakReset = resetPeakRss(pid);
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const registerTenant = async (label: string) => {
        const api = apiAt(base);
        const registered = await api.call<{ accessToken: string; tenant: { id: string } }>('POST', '/auth/register', {
          email: `${label}@example.test`,
          password,
          name: label,
          tenantName: `${label} org`,
        });
        api.token = registered.accessToken;
        return { api, tenantId: registered.tenant.id };
      };
      const { api, tenantId } = await registerTenant('bench');
      return await bench({ ...services, temporal, blobs, vectors, api, tenantId, registerTenant, worker, pid, startupPeak, peakReset });
    } finally {
      await stopWorker(worker);
      await api.close();
    }
  });
}
