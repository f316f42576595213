import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Job } from '../../db';
import { freePort } from '../../scripts/services';
import { jobEventsAfter, recordJobEvent } from '../../services/jobs';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { runEntry } from '../harness/processes';
import { openSse, parseSse, type SseEvent, type SseStream } from '../harness/sse';
import { createTestWorker } from '../harness/worker';

/** What `data:` of each event carries. */
interface StreamedEvent {
  seq: number;
  type: string;
  data: Record<string, unknown>;
  createdAt: string;
}
const payload = (event: SseEvent) => JSON.parse(event.data) as StreamedEvent;

async function waitUntil(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('job event streams (GET /jobs/:id/events)', () => {
  let t: TestApp;
  let admin: Member;
  let baseUrl: string;
  const opened: SseStream[] = [];
  beforeAll(async () => {
    // Heartbeats every second, so the heartbeat test needs no long wait.
    t = await startTestApp({ SSE_HEARTBEAT_SECONDS: '1' });
    admin = await registerTenant(t);
    baseUrl = `http://127.0.0.1:${(t.server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    // A failed test may leave its stream open: drop it, so that the tests after it start clean.
    // Streams the server ended are released by the server alone: none may stay subscribed.
    for (const stream of opened.splice(0)) stream.close();
    await waitUntil(() => t.jobEvents.subscriberCount() === 0, 'every subscription to be released');
  });
  afterAll(() => t.close());

  const auth = () => ({ Authorization: `Bearer ${admin.accessToken}` });
  const streamUrl = (jobId: string) => `${baseUrl}/api/v1/jobs/${jobId}/events`;
  const open = async (url: string, headers: Record<string, string>) => {
    const stream = await openSse(url, headers);
    opened.push(stream);
    return stream;
  };

  /** A job row of the admin's tenant with no workflow behind it: the tests write its events. */
  async function jobWithEvents(...types: string[]): Promise<string> {
    const id = randomUUID();
    await Job.create({ id, tenantId: admin.tenantId, projectId: null, kind: 'deleteProject', workflowId: `stream-test-${id}`, title: 'streamed', requestedBy: 'system' });
    for (const type of types) await recordEvent(id, type);
    return id;
  }

  /** Records an event the way activities do; `completed`, `failed` and `cancelled` also set the status. */
  async function recordEvent(jobId: string, type: string): Promise<void> {
    const status = type === 'running' || type === 'completed' || type === 'failed' || type === 'cancelled' ? type : undefined;
    const { event } = await recordJobEvent(t.sequelize, jobId, { type, ...(status ? { status } : {}), data: { note: `${type} event` } });
    if (!event) throw new Error(`the ${type} event was not recorded`);
  }

  it('streams a real job end to end: every event in order, id = seq, and closes after the terminal event', async () => {
    const { worker, connection } = await createTestWorker(t);
    let running: Promise<void> | undefined;
    try {
      const project = (await t.post('/api/v1/projects', { name: `streamed-${randomUUID()}` }, { token: admin.accessToken })).body;
      await Job.bulkCreate(
        Array.from({ length: 3 }, () => {
          const id = randomUUID();
          return { id, tenantId: admin.tenantId, projectId: project.id, kind: 'deleteProject', workflowId: `seed-${id}`, title: 'seeded', requestedBy: 'system', status: 'completed' as const };
        }),
      );
      const started = await t.delete(`/api/v1/projects/${project.id}`, { token: admin.accessToken });
      expect(started.status).toBe(202);
      const jobId: string = started.body.id;

      const stream = await open(streamUrl(jobId), auth());
      expect(stream.status).toBe(200);
      expect(stream.headers).toMatchObject({
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      // No worker polls yet: the job waits at `queued`, so what follows arrives live.
      await stream.waitFor(() => stream.events().length === 1, 'the queued event');
      running = worker.run();
      await stream.waitFor(() => stream.ended, 'the end of the stream');

      const events = stream.events();
      expect(events.map((e) => e.event)).toEqual(['queued', 'running', 'progress', 'completed']);
      const stored = await jobEventsAfter(jobId, 0);
      expect(events.map((e) => e.id)).toEqual(stored.map((e) => String(e.seq)));
      expect(events.map(payload)).toEqual(stored.map((e) => ({ seq: e.seq, type: e.type, data: e.data, createdAt: e.createdAt.toISOString() })));
      expect(payload(events[3] as SseEvent).data).toMatchObject({ status: 'completed', counters: { jobs: 3 } });
    } finally {
      worker.shutdown();
      await running;
      await connection.close();
    }
  });

  it('replays only the events after Last-Event-ID (header, or ?lastEventId=), and answers 204 when there are none left', async () => {
    const jobId = await jobWithEvents('queued', 'running', 'progress', 'progress', 'completed');
    const seqs = (res: { text: string }) => parseSse(res.text).flatMap((m) => (m.kind === 'event' ? [Number(m.id)] : []));

    // The job has finished: the stream replays and closes at once, so a plain request reads it whole.
    const fromHeader = await t.get(`/api/v1/jobs/${jobId}/events`, { token: admin.accessToken, headers: { 'Last-Event-ID': '2' } });
    expect(fromHeader.status).toBe(200);
    expect(seqs(fromHeader)).toEqual([3, 4, 5]);
    expect(seqs(await t.get(`/api/v1/jobs/${jobId}/events?lastEventId=2`, { token: admin.accessToken }))).toEqual([3, 4, 5]);
    expect(seqs(await t.get(`/api/v1/jobs/${jobId}/events`, { token: admin.accessToken }))).toEqual([1, 2, 3, 4, 5]);
    // A reconnecting EventSource keeps its URL and sends the id it last saw: the header wins.
    const both = await t.get(`/api/v1/jobs/${jobId}/events?lastEventId=1`, { token: admin.accessToken, headers: { 'Last-Event-ID': '4' } });
    expect(seqs(both)).toEqual([5]);

    // Nothing after the terminal event: 204 tells an EventSource to stop reconnecting.
    const done = await t.get(`/api/v1/jobs/${jobId}/events`, { token: admin.accessToken, headers: { 'Last-Event-ID': '5' } });
    expect(done.status).toBe(204);

    const bad = await t.get(`/api/v1/jobs/${jobId}/events`, { token: admin.accessToken, headers: { 'Last-Event-ID': 'latest' } });
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toEqual([expect.objectContaining({ path: 'header.Last-Event-ID' })]);
  });

  it('replays from Last-Event-ID on a running job, then continues live', async () => {
    const jobId = await jobWithEvents('queued', 'running', 'progress');
    const stream = await open(streamUrl(jobId), { ...auth(), 'Last-Event-ID': '1' });
    await stream.waitFor(() => stream.events().length === 2, 'the replayed events');
    await recordEvent(jobId, 'progress');
    await recordEvent(jobId, 'failed');
    await stream.waitFor(() => stream.ended, 'the end of the stream');
    expect(stream.events().map((e) => [e.id, e.event])).toEqual([
      ['2', 'running'],
      ['3', 'progress'],
      ['4', 'progress'],
      ['5', 'failed'],
    ]);
  });

  it("answers 404 problem+json for another tenant's job, before any stream starts", async () => {
    const jobId = await jobWithEvents('queued');
    const stranger = await registerTenant(t, 'stranger');
    const res = await t.get(`/api/v1/jobs/${jobId}/events`, { token: stranger.accessToken });
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.type).toBe('/problems/not-found');
  });

  it('streams through any API instance: events written through one are streamed by another process', async () => {
    const port = await freePort();
    const other = runEntry('api/server.ts', { API_PORT: String(port), API_HOST: '127.0.0.1', TEMPORAL_TASK_QUEUE: t.config.TEMPORAL_TASK_QUEUE, LOG_LEVEL: 'info' });
    try {
      await other.waitFor(/"msg":"API listening"/, 60_000);
      const jobId = await jobWithEvents('queued', 'running');

      const stream = await open(`http://127.0.0.1:${port}/api/v1/jobs/${jobId}/events`, { ...auth(), 'Last-Event-ID': '1' });
      expect(stream.status).toBe(200);
      // Once the replayed event is in, the other instance has read the table: what follows reaches it by NOTIFY.
      await stream.waitFor(() => stream.events().length === 1, 'the replayed event');
      await recordEvent(jobId, 'progress');
      await stream.waitFor(() => stream.events().length === 2, 'the progress event written by this instance');
      await recordEvent(jobId, 'completed');
      await stream.waitFor(() => stream.ended, 'the end of the stream');
      expect(stream.events().map((e) => [e.id, e.event])).toEqual([
        ['2', 'running'],
        ['3', 'progress'],
        ['4', 'completed'],
      ]);
    } finally {
      other.child.kill('SIGTERM');
      await other.exited;
    }
  });

  it('sends keep-alive comments while a stream is idle', async () => {
    const jobId = await jobWithEvents('queued');
    const stream = await open(streamUrl(jobId), auth());
    await stream.waitFor(() => stream.messages.filter((m) => m.kind === 'comment' && m.text === 'keep-alive').length >= 2, 'two keep-alive comments');
    expect(stream.events().map((e) => e.event)).toEqual(['queued']);
  });

  it('releases the subscription when the client disconnects', async () => {
    const jobId = await jobWithEvents('queued');
    const stream = await open(streamUrl(jobId), auth());
    await stream.waitFor(() => stream.events().length === 1, 'the queued event');
    expect(t.jobEvents.subscriberCount()).toBe(1);
    stream.close();
    await waitUntil(() => t.jobEvents.subscriberCount() === 0, 'the subscription to be released');
    // The job goes on without the stream, and a new one picks up where the client left off.
    await recordEvent(jobId, 'cancelled');
    const resumed = await open(streamUrl(jobId), { ...auth(), 'Last-Event-ID': '1' });
    await resumed.waitFor(() => resumed.ended, 'the end of the resumed stream');
    expect(resumed.events().map((e) => [e.id, e.event])).toEqual([['2', 'cancelled']]);
  });
});
