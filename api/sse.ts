import { once } from 'node:events';
import { finished, PassThrough } from 'node:stream';
import { ValidationError } from '../lib/errors';
import type { Ctx } from './route';

export interface ServerSentEvent {
  id: number;
  event: string;
  /** Sent as one line of JSON. */
  data: unknown;
}

export interface EventStream {
  /** Aborts when the response is over: the client went away, or the stream ended. */
  signal: AbortSignal;
  /** Writes one event; resolves once the client can take more (a slow client slows the sender). */
  send(event: ServerSentEvent): Promise<void>;
  end(): void;
}

/**
 * Answers the request with a Server-Sent Events stream. Comment lines every `heartbeatMs` keep
 * proxies from closing an idle stream; everything (heartbeat, `signal`) is released when the
 * response ends or the client disconnects.
 */
export function openEventStream(ctx: Ctx, heartbeatMs: number): EventStream {
  const body = new PassThrough();
  const done = new AbortController();
  ctx.status = 200;
  ctx.set({
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    // nginx would otherwise buffer the stream and deliver events late, in bursts.
    'X-Accel-Buffering': 'no',
  });
  ctx.body = body;
  // Headers now, so the client knows the stream is open before the first event.
  ctx.flushHeaders();
  ctx.req.socket.setNoDelay(true);

  const heartbeat = setInterval(() => body.write(': keep-alive\n\n'), heartbeatMs);
  // `finished` also reports a response that closed while the route was still preparing.
  finished(ctx.res, () => {
    clearInterval(heartbeat);
    done.abort();
  });

  return {
    signal: done.signal,
    async send({ id, event, data }) {
      if (!body.write(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`)) await once(body, 'drain', { signal: done.signal });
    },
    end: () => body.end(),
  };
}

const eventIdPattern = /^\d{1,9}$/;

/**
 * The `Last-Event-ID` header a reconnecting EventSource sends: the id of the last event it got
 * (our ids are non-negative integers). Undefined when absent.
 */
export function lastEventIdOf(ctx: Ctx): number | undefined {
  const header = ctx.get('Last-Event-ID');
  if (header === '') return undefined;
  if (!eventIdPattern.test(header)) {
    throw new ValidationError('Invalid Last-Event-ID.', [{ path: 'header.Last-Event-ID', message: 'must be the id of an event: a non-negative integer' }]);
  }
  return Number(header);
}
