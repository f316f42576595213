import { createHash } from 'node:crypto';
import { createServer, STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Stand-ins for remote model providers: HTTP servers on 127.0.0.1 speaking OpenAI's
 * chat-completions wire format or Anthropic's Messages API, so tests drive the real `openai`
 * and `@anthropic-ai/sdk` clients (DESIGN.md, "Testing conventions"). Answers are
 * deterministic; failures are scripted per request; every request is recorded.
 */

export interface RecordedLlmRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed JSON of whatever the client sent; tests read it freely
  receivedAt: number;
}

export interface ScriptedReply {
  status: number;
  headers?: Record<string, string>;
  /**
   * JSON, or a string sent verbatim (e.g. a hand-written SSE stream, with its content-type in
   * `headers`). Left out: an error status gets the wire's error body, a 2xx the normal answer.
   */
  body?: unknown;
  /** Waits this long before answering (a slow provider); a client that gives up meanwhile gets nothing. */
  delayMs?: number;
}

export interface LlmStandIn {
  /** http://127.0.0.1:<port>, no path. */
  url: string;
  requests: RecordedLlmRequest[];
  /** The next requests get these, in order; then normal answers resume. */
  script(...replies: ScriptedReply[]): void;
  close(): Promise<void>;
}

export interface LlmStandInOptions {
  /** The answer text; defaults to `echo: <last user message>`. */
  reply?: (request: RecordedLlmRequest) => string;
  /** Reported token usage; defaults to about four characters per token of the prompt and answer. */
  usage?: { promptTokens: number; completionTokens: number };
}

type Wire = 'openai' | 'anthropic';

/** 8-dimensional vectors derived from a sha256 of the text: the same text always gets the same vector. */
export function standInEmbedding(text: string): number[] {
  const digest = createHash('sha256').update(text).digest();
  return Array.from({ length: 8 }, (_, i) => Math.round(((digest[i] ?? 0) / 255) * 2000 - 1000) / 1000);
}

const tokensOf = (text: string) => Math.ceil(text.length / 4);

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) => (typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string' ? part.text : ''))
      .join('');
  }
  return '';
}

interface WireMessage {
  role?: unknown;
  content?: unknown;
}

function messagesOf(body: unknown): WireMessage[] {
  if (typeof body !== 'object' || body === null || !('messages' in body) || !Array.isArray(body.messages)) return [];
  return body.messages as WireMessage[];
}

function lastUserMessage(body: unknown): string {
  const user = messagesOf(body).filter((message) => message.role === 'user');
  return textOf(user[user.length - 1]?.content);
}

function promptChars(body: unknown): number {
  const system = typeof body === 'object' && body !== null && 'system' in body ? textOf(body.system) : '';
  return messagesOf(body).reduce((sum, message) => sum + textOf(message.content).length, system.length);
}

/** Pieces of about a word each, spaces kept, so the deltas join back to the text. */
function pieces(text: string): string[] {
  return text.match(/\S+\s*|\s+/g) ?? [];
}

function openAiErrorBody(status: number): unknown {
  const type = status === 429 ? 'rate_limit_exceeded' : status >= 500 ? 'server_error' : 'invalid_request_error';
  return { error: { message: `stand-in: ${status} ${STATUS_CODES[status] ?? 'Error'}`, type, param: null, code: null } };
}

function anthropicErrorBody(status: number): unknown {
  const types: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    403: 'permission_error',
    404: 'not_found_error',
    413: 'request_too_large',
    429: 'rate_limit_error',
    529: 'overloaded_error',
  };
  const message = `stand-in: ${status} ${STATUS_CODES[status] ?? (status === 529 ? 'Overloaded' : 'Error')}`;
  return { type: 'error', error: { type: types[status] ?? 'api_error', message } };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function startSse(res: ServerResponse, headers: Record<string, string>): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', ...headers });
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

export async function startLlmStandIn(wire: Wire, options: LlmStandInOptions = {}): Promise<LlmStandIn> {
  const requests: RecordedLlmRequest[] = [];
  const scripted: ScriptedReply[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let counter = 0;

  const answerText = (request: RecordedLlmRequest) => options.reply?.(request) ?? `echo: ${lastUserMessage(request.body)}`;
  const usageOf = (request: RecordedLlmRequest, text: string) =>
    options.usage ?? { promptTokens: Math.ceil(promptChars(request.body) / 4), completionTokens: tokensOf(text) };

  /** Resolves false when the client went away before the delay ended. */
  const delay = (res: ServerResponse, ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve(!res.destroyed);
      }, ms);
      timers.add(timer);
      res.once('close', () => {
        clearTimeout(timer);
        timers.delete(timer);
        resolve(false);
      });
    });

  function openAiChat(request: RecordedLlmRequest, res: ServerResponse, headers: Record<string, string>): void {
    const body = request.body as { model?: string; stream?: boolean; stream_options?: { include_usage?: boolean } };
    const text = answerText(request);
    const usage = usageOf(request, text);
    const wireUsage = { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens, total_tokens: usage.promptTokens + usage.completionTokens };
    const id = `chatcmpl-stand-in-${++counter}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model ?? 'stand-in';
    if (!body.stream) {
      sendJson(
        res,
        200,
        {
          id,
          object: 'chat.completion',
          created,
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
          usage: wireUsage,
        },
        headers,
      );
      return;
    }
    // As OpenAI streams: a role chunk, content chunks, a finish chunk, then (when asked) a usage chunk with no choices.
    const withUsage = body.stream_options?.include_usage === true;
    const chunk = (choices: unknown[], usageField?: unknown) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices,
      ...(withUsage ? { usage: usageField ?? null } : {}),
    });
    startSse(res, headers);
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    send(chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]));
    for (const piece of pieces(text)) send(chunk([{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }]));
    send(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
    if (withUsage) send(chunk([], wireUsage));
    res.end('data: [DONE]\n\n');
  }

  function openAiEmbeddings(request: RecordedLlmRequest, res: ServerResponse, headers: Record<string, string>): void {
    const body = request.body as { model?: string; input?: string | string[]; encoding_format?: string };
    const inputs = typeof body.input === 'string' ? [body.input] : (body.input ?? []);
    const encode = (vector: number[]) =>
      body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
    sendJson(
      res,
      200,
      {
        object: 'list',
        model: body.model ?? 'stand-in-embedding',
        data: inputs.map((input, index) => ({ object: 'embedding', index, embedding: encode(standInEmbedding(input)) })),
        usage: { prompt_tokens: tokensOf(inputs.join('')), total_tokens: tokensOf(inputs.join('')) },
      },
      headers,
    );
  }

  function anthropicMessages(request: RecordedLlmRequest, res: ServerResponse, headers: Record<string, string>): void {
    const body = request.body as { model?: string; stream?: boolean };
    const text = answerText(request);
    const usage = usageOf(request, text);
    const id = `msg_stand_in_${++counter}`;
    const model = body.model ?? 'claude-stand-in';
    const wireUsage = (input: number, output: number) => ({
      input_tokens: input,
      output_tokens: output,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      server_tool_use: null,
      service_tier: 'standard',
    });
    const message = (content: unknown[], stopReason: string | null, usageField: unknown) => ({
      id,
      type: 'message',
      role: 'assistant',
      model,
      content,
      stop_reason: stopReason,
      stop_sequence: null,
      usage: usageField,
    });
    if (!body.stream) {
      sendJson(res, 200, message([{ type: 'text', text, citations: null }], 'end_turn', wireUsage(usage.promptTokens, usage.completionTokens)), headers);
      return;
    }
    // As Anthropic streams: input tokens in message_start, the output count in message_delta.
    startSse(res, headers);
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...(data as object) })}\n\n`);
    send('message_start', { message: message([], null, wireUsage(usage.promptTokens, 1)) });
    send('content_block_start', { index: 0, content_block: { type: 'text', text: '', citations: null } });
    send('ping', {});
    for (const piece of pieces(text)) send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: piece } });
    send('content_block_stop', { index: 0 });
    send('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.completionTokens } });
    send('message_stop', {});
    res.end();
  }

  function answer(request: RecordedLlmRequest, res: ServerResponse, headers: Record<string, string>): void {
    const { method, path } = request;
    const notFound = () => sendJson(res, 404, wire === 'openai' ? openAiErrorBody(404) : anthropicErrorBody(404), headers);
    if (wire === 'openai') {
      if (method === 'POST' && path.endsWith('/chat/completions')) return openAiChat(request, res, headers);
      if (method === 'POST' && path.endsWith('/embeddings')) return openAiEmbeddings(request, res, headers);
      if (method === 'GET' && path.endsWith('/models')) {
        return sendJson(res, 200, { object: 'list', data: [{ id: 'stand-in-model', object: 'model', created: 0, owned_by: 'stand-in' }] }, headers);
      }
      return notFound();
    }
    if (method === 'POST' && path.endsWith('/v1/messages')) return anthropicMessages(request, res, headers);
    if (method === 'GET' && path.endsWith('/v1/models')) {
      const model = { type: 'model', id: 'claude-stand-in', display_name: 'Stand-in', created_at: '2025-01-01T00:00:00Z' };
      return sendJson(res, 200, { data: [model], has_more: false, first_id: model.id, last_id: model.id }, headers);
    }
    return notFound();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const request: RecordedLlmRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body: await readBody(req),
      receivedAt: Date.now(),
    };
    requests.push(request);
    const reply = scripted.shift();
    if (reply?.delayMs !== undefined && !(await delay(res, reply.delayMs))) return;
    if (reply && (reply.body !== undefined || reply.status >= 300)) {
      const body = reply.body ?? (wire === 'openai' ? openAiErrorBody(reply.status) : anthropicErrorBody(reply.status));
      if (typeof body === 'string') {
        res.writeHead(reply.status, { 'content-type': 'text/plain', ...reply.headers });
        res.end(body);
      } else {
        sendJson(res, reply.status, body, reply.headers);
      }
      return;
    }
    answer(request, res, reply?.headers ?? {});
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: { message: `stand-in failed: ${String(error)}` } });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script(...replies) {
      scripted.push(...replies);
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
}

/**
 * A stand-in for the tests of the `describe` block this is called in: started before them,
 * closed after them, its recorded requests cleared before each. Read it in tests and hooks only.
 */
export function llmStandInForSuite(wire: Wire, options: LlmStandInOptions = {}): LlmStandIn {
  let started: LlmStandIn | undefined;
  const current = () => {
    if (started === undefined) throw new Error('the stand-in starts in beforeAll: read it in tests and hooks only');
    return started;
  };
  beforeAll(async () => {
    started = await startLlmStandIn(wire, options);
  });
  afterAll(() => current().close());
  beforeEach(() => {
    current().requests.length = 0;
  });
  return {
    get url() {
      return current().url;
    },
    get requests() {
      return current().requests;
    },
    script: (...replies) => current().script(...replies),
    close: () => current().close(),
  };
}

// --- reading what a client call did ---------------------------------------------------------

/** What `promise` rejected with; fails the test when it resolves. */
export async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

/** Every event of a stream, in order, once it ends. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const events: T[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

/**
 * Aborts `controller` once the stand-in has received a request (not on a timer): the request is
 * then on record before the test ends, so it cannot land in the next test's requests.
 */
export function abortOnceReceived(standIn: LlmStandIn, controller: AbortController): void {
  const seen = standIn.requests.length;
  const poll = setInterval(() => {
    if (standIn.requests.length > seen) {
      clearInterval(poll);
      controller.abort();
    }
  }, 5);
}
