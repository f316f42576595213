import { anthropicDefaults, createAnthropicProvider, type AnthropicConfig } from '../../../lib/llm/anthropic';
import { LlmProviderError } from '../../../lib/llm/errors';
import type { LlmProvider } from '../../../lib/llm/types';
import { abortOnceReceived, collect, failureOf, llmStandInForSuite } from '../../harness/llm-stand-in';

const apiKey = 'sk-ant-test-0123456789abcdef';
const schema = {
  type: 'object',
  properties: { verdict: { type: 'string' } },
  required: ['verdict'],
  additionalProperties: false,
};

describe('Anthropic provider', () => {
  const standIn = llmStandInForSuite('anthropic', {
    reply: (request) =>
      String(request.body.system ?? '').includes('JSON Schema')
        ? 'Here it is:\n```json\n{"verdict":"ok"}\n```'
        : `echo: ${request.body.messages.at(-1).content}`,
    usage: { promptTokens: 21, completionTokens: 8 },
  });
  const provider = (config: AnthropicConfig = {}): LlmProvider => createAnthropicProvider({ baseUrl: standIn.url, apiKey, ...config });
  const ask = (content: string) => ({ model: 'claude-haiku-4-5', messages: [{ role: 'user' as const, content }] });

  test('chat: system messages go to `system`, the rest to `messages`; a token limit is always sent', async () => {
    const result = await provider().chat({
      model: 'claude-haiku-4-5',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi' },
        { role: 'user', content: 'how are you' },
      ],
      temperature: 0,
    });

    expect(result).toEqual({ text: 'echo: how are you', model: 'claude-haiku-4-5', usage: { promptTokens: 21, completionTokens: 8 }, finishReason: 'end_turn' });
    const [request] = standIn.requests;
    expect(request).toMatchObject({ method: 'POST', path: '/v1/messages' });
    expect(request!.headers.authorization).toBe(`Bearer ${apiKey}`); // how @anthropic-ai/sdk 1.x sends an API key
    expect(request!.headers['anthropic-version']).toBeDefined();
    expect(request!.body).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: anthropicDefaults.maxTokens,
      system: 'Be brief.',
      messages: [
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi' },
        { role: 'user', content: 'how are you' },
      ],
      temperature: 0,
    });
  });

  test('chat: the caller’s token limit replaces the default', async () => {
    await provider().chat({ ...ask('hi'), maxTokens: 100 });
    expect(standIn.requests[0]!.body.max_tokens).toBe(100);
  });

  test('JSON output: the schema is given in the system prompt, and the Markdown fence around the answer is stripped', async () => {
    const result = await provider().chat({
      model: 'claude-haiku-4-5',
      messages: [
        { role: 'system', content: 'You audit code.' },
        { role: 'user', content: 'judge' },
      ],
      json: { name: 'verdict', schema },
    });

    const system: string = standIn.requests[0]!.body.system;
    expect(system).toMatch(/^You audit code\.\n\nAnswer with only a JSON object/);
    expect(system).toContain(JSON.stringify(schema));
    expect(JSON.parse(result.text)).toEqual({ verdict: 'ok' });
  });

  test('streaming: text deltas, then done with input tokens from message_start and output tokens from message_delta', async () => {
    const events = await collect(provider().streamChat(ask('stream these words')));

    const deltas = events.filter((event) => event.type === 'delta');
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.map((event) => event.text).join('')).toBe('echo: stream these words');
    expect(events.at(-1)).toEqual({
      type: 'done',
      result: { text: 'echo: stream these words', model: 'claude-haiku-4-5', usage: { promptTokens: 21, completionTokens: 8 }, finishReason: 'end_turn' },
    });
    expect(standIn.requests[0]!.body.stream).toBe(true);
  });

  test('streaming: an error event in the middle of the stream fails it with the error’s kind', async () => {
    const start = { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } } };
    const overloaded = { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } };
    standIn.script({
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body: `event: message_start\ndata: ${JSON.stringify(start)}\n\nevent: error\ndata: ${JSON.stringify(overloaded)}\n\n`,
    });

    const error = await failureOf(collect(provider().streamChat(ask('hi'))));
    expect(error).toBeInstanceOf(LlmProviderError);
    expect(error).toMatchObject({ kind: 'server_error', retryable: true, message: 'anthropic failed while answering: Overloaded' });
  });

  test('embeddings are unsupported (Anthropic has no embeddings API), without a request', async () => {
    const error = await failureOf(provider().embed({ model: 'any', inputs: ['a'] }));
    expect(error).toBeInstanceOf(LlmProviderError);
    expect(error).toMatchObject({ kind: 'unsupported', retryable: false });
    expect(standIn.requests).toHaveLength(0);
  });

  test('429 with Retry-After → rate_limited, retryable, with the wait; tried once', async () => {
    standIn.script({ status: 429, headers: { 'retry-after': '7' } });
    const error = await failureOf(provider().chat(ask('hi')));
    expect(error).toMatchObject({ provider: 'anthropic', kind: 'rate_limited', retryable: true, details: { status: 429, retryAfterMs: 7000 } });
    expect(standIn.requests).toHaveLength(1);
  });

  test.each([
    [500, 'server_error', 'anthropic answered 500 Internal Server Error: stand-in: 500 Internal Server Error'],
    [529, 'server_error', 'anthropic answered 529 Overloaded: stand-in: 529 Overloaded'],
  ])('%i → %s, retryable', async (status, kind, message) => {
    standIn.script({ status });
    const error = await failureOf(provider().chat(ask('hi')));
    expect(error).toMatchObject({ kind, retryable: true, message, details: { status } });
    expect(standIn.requests).toHaveLength(1);
  });

  test('401 → unauthorized, not retryable, and the key echoed by the server is redacted', async () => {
    standIn.script({ status: 401, body: { type: 'error', error: { type: 'authentication_error', message: `invalid API key: ${apiKey}` } } });
    const error = await failureOf(provider().chat(ask('hi')));
    expect(error).toMatchObject({ kind: 'unauthorized', retryable: false, message: 'anthropic answered 401 Unauthorized: invalid API key: [redacted]' });
    expect(JSON.stringify(error)).not.toContain(apiKey);
  });

  test('an abort by the caller rejects with the caller’s abort reason', async () => {
    standIn.script({ status: 200, delayMs: 5000 });
    const controller = new AbortController();
    abortOnceReceived(standIn, controller);
    const error = await failureOf(provider().chat(ask('hi'), { signal: controller.signal }));
    expect(error).toBe(controller.signal.reason);
  });

  test('probe lists the models', async () => {
    await provider().probe();
    expect(standIn.requests[0]).toMatchObject({ method: 'GET', path: '/v1/models' });
    expect(standIn.requests[0]!.headers.authorization).toBe(`Bearer ${apiKey}`);
  });

  test('a base URL ending in /v1 is accepted (the SDK adds /v1 itself)', async () => {
    await provider({ baseUrl: `${standIn.url}/v1/` }).chat(ask('hi'));
    expect(standIn.requests[0]!.path).toBe('/v1/messages');
  });

  test('without an API key the provider cannot be created', () => {
    expect(() => createAnthropicProvider({})).toThrow(expect.objectContaining({ kind: 'unauthorized' }));
  });
});
