import http from 'node:http';

/** One dispatched Server-Sent Event (`data` lines joined with newlines, as a browser does). */
export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

export type SseMessage = ({ kind: 'event' } & SseEvent) | { kind: 'comment'; text: string };

/** Parses complete SSE blocks (each ended by a blank line); a trailing partial block is ignored. */
export function parseSse(text: string): SseMessage[] {
  const messages: SseMessage[] = [];
  const blocks = text.split(/\r?\n\r?\n/).slice(0, -1);
  for (const block of blocks) {
    const event: SseEvent = { data: '' };
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) {
        messages.push({ kind: 'comment', text: line.slice(1).trim() });
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') data.push(value);
      else if (field === 'id' || field === 'event') event[field] = value;
    }
    if (data.length > 0 || event.id !== undefined || event.event !== undefined) messages.push({ kind: 'event', ...event, data: data.join('\n') });
  }
  return messages;
}

export interface SseStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Everything received so far, in order. */
  readonly messages: SseMessage[];
  events(): SseEvent[];
  /** True once the server ended the response. */
  readonly ended: boolean;
  /** Resolves when `condition` holds (checked on each chunk and at the end); rejects after `timeoutMs`. */
  waitFor(condition: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  /** Drops the connection, as a client going away does. */
  close(): void;
}

/** Opens an event stream with `http.get` and parses it as it arrives; resolves once the response headers are in. */
export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      const messages: SseMessage[] = [];
      const checks = new Set<() => void>();
      let buffer = '';
      let ended = false;
      const changed = () => {
        for (const check of checks) check();
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        const complete = buffer.lastIndexOf('\n\n') + 2;
        if (complete < 2) return;
        messages.push(...parseSse(buffer.slice(0, complete)));
        buffer = buffer.slice(complete);
        changed();
      });
      res.on('end', () => {
        ended = true;
        changed();
      });
      res.on('error', () => undefined); // a connection we dropped on purpose
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages,
        events: () => messages.flatMap((m) => (m.kind === 'event' ? [{ id: m.id, event: m.event, data: m.data }] : [])),
        get ended() {
          return ended;
        },
        waitFor(condition, what, timeoutMs = 30_000) {
          return new Promise<void>((done, fail) => {
            const finish = (outcome: () => void) => {
              clearTimeout(timer);
              checks.delete(check);
              outcome();
            };
            const check = () => {
              if (condition()) finish(done);
              else if (ended) finish(() => fail(new Error(`the stream ended before ${what}; received:\n${JSON.stringify(messages, null, 2)}`)));
            };
            const timer = setTimeout(() => finish(() => fail(new Error(`no ${what} within ${timeoutMs} ms; received:\n${JSON.stringify(messages, null, 2)}`))), timeoutMs);
            checks.add(check);
            check();
          });
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}
