import { rm } from 'node:fs/promises';

interface Services {
  postgres: { stop(): Promise<void> };
  temporal: { stop(): Promise<void> };
  dir: string;
}

export default async function globalTeardown(): Promise<void> {
  const services = (globalThis as { __auditflowServices?: Services }).__auditflowServices;
  if (!services) return;
  await Promise.allSettled([services.postgres.stop(), services.temporal.stop()]);
  await rm(services.dir, { recursive: true, force: true });
}
