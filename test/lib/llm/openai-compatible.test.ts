import { createServer } from 'node:net';
import { LlmProviderError } from '../../../lib/llm/errors';
import { createOpenAiCompatibleProvider, type OpenAiCompatibleConfig } from '../../../lib/llm/openai-compatible';
import { defaultAzureApiVersion, presetNames, presets, resolveBaseUrl, type PresetName } from '../../../lib/llm/presets';
import type { LlmProvider } from '../../../lib/llm/types';
import { abortOnceReceived, collect, failureOf, llmStandInForSuite, standInEmbedding } from '../../harness/llm-stand-in';

const apiKey = 'sk-test-0123456789abcdef';
const closedSchema = {
  type: 'object',
  properties: { verdict: { type: 'string' }, score: { type: 'number' } },
  required: ['verdict', 'score'],
  additionalProperties: false,
};
const openSchema = { type: 'object', properties: { verdict: { type: 'string' } } };

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

describe('OpenAI-compatible provider', () => {
  const standIn = llmStandInForSuite('openai', {
    reply: (request) => (request.body.response_format || /JSON/.test(JSON.stringify(request.body.messages)) ? '```json\n{"verdict":"ok","score":1}\n```' : `echo: ${request.body.messages.at(-1).content}`),
  });
  const provider = (config: Partial<OpenAiCompatibleConfig> = {}): LlmProvider =>
    createOpenAiCompatibleProvider({ preset: 'openai', baseUrl: standIn.url, apiKey, ...config });

  describe('chat', () => {
    test('sends the messages, temperature and token limit, and returns the text, model, usage and finish reason', async () => {
      const result = await provider().chat({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hello there' },
        ],
        temperature: 0.2,
        maxTokens: 50,
      });

      expect(result).toEqual({
        text: 'echo: hello there',
        model: 'gpt-4o-mini',
        usage: { promptTokens: Math.ceil('Be brief.hello there'.length / 4), completionTokens: Math.ceil('echo: hello there'.length / 4) },
        finishReason: 'stop',
      });
      expect(standIn.requests).toHaveLength(1);
      expect(standIn.requests[0]!.body).toEqual({
        model: 'gpt-4o-mini',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'hello there' },
        ],
        temperature: 0.2,
        max_completion_tokens: 50, // OpenAI's current field; compatible servers get max_tokens
      });
    });

    test('compatible servers get max_tokens for the token limit', async () => {
      await provider({ preset: 'vllm' }).chat({ model: 'm', messages: [{ role: 'user', content: 'hi' }], maxTokens: 9 });
      expect(standIn.requests[0]!.body).toMatchObject({ max_tokens: 9 });
      expect(standIn.requests[0]!.body).not.toHaveProperty('max_completion_tokens');
    });
  });

  describe('JSON output', () => {
    const json = { name: 'audit verdict', schema: closedSchema };

    test('a json_schema preset gets the schema as response_format, strict when the schema allows it', async () => {
      const result = await provider().chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'judge' }], json });

      expect(standIn.requests[0]!.body.response_format).toEqual({
        type: 'json_schema',
        json_schema: { name: 'audit_verdict', schema: closedSchema, strict: true },
      });
      expect(JSON.parse(result.text)).toEqual({ verdict: 'ok', score: 1 }); // the Markdown fence is gone
    });

    test('a schema strict mode would reject (open object, optional fields) is sent non-strict', async () => {
      await provider().chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'judge' }], json: { name: 'v', schema: openSchema } });
      expect(standIn.requests[0]!.body.response_format.json_schema.strict).toBe(false);
    });

    test('a json_object preset gets json_object, and the schema in the system prompt', async () => {
      const result = await provider({ preset: 'deepseek' }).chat({
        model: 'deepseek-chat',
        messages: [
          { role: 'system', content: 'You audit code.' },
          { role: 'user', content: 'judge' },
        ],
        json,
      });

      const body = standIn.requests[0]!.body;
      expect(body.response_format).toEqual({ type: 'json_object' });
      expect(body.messages[0].role).toBe('system');
      expect(body.messages[0].content).toMatch(/^You audit code\.\n\nAnswer with only a JSON object/);
      expect(body.messages[0].content).toContain(JSON.stringify(closedSchema));
      expect(body.messages[1]).toEqual({ role: 'user', content: 'judge' });
      expect(JSON.parse(result.text)).toEqual({ verdict: 'ok', score: 1 });
    });
  });

  describe('streaming', () => {
    test('yields text deltas, then one done event with the whole text and the usage of the final chunk', async () => {
      const events = await collect(provider().streamChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream these words please' }] }));

      const deltas = events.filter((event) => event.type === 'delta');
      expect(deltas.length).toBeGreaterThan(1);
      expect(deltas.map((event) => event.text).join('')).toBe('echo: stream these words please');
      expect(events.at(-1)).toEqual({
        type: 'done',
        result: {
          text: 'echo: stream these words please',
          model: 'gpt-4o-mini',
          usage: { promptTokens: Math.ceil('stream these words please'.length / 4), completionTokens: Math.ceil('echo: stream these words please'.length / 4) },
          finishReason: 'stop',
        },
      });
      expect(events.filter((event) => event.type === 'done')).toHaveLength(1);
      expect(standIn.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    });

    test('when the server reports no usage (Mistral is not asked: it rejects the option), usage is estimated at four characters a token', async () => {
      const events = await collect(
        provider({ preset: 'mistral' }).streamChat({ model: 'mistral-small-latest', messages: [{ role: 'user', content: 'a'.repeat(40) }] }),
      );

      expect(standIn.requests[0]!.body).not.toHaveProperty('stream_options');
      const done = events.at(-1);
      expect(done?.type === 'done' && done.result.usage).toEqual({ promptTokens: 10, completionTokens: Math.ceil(`echo: ${'a'.repeat(40)}`.length / 4) });
    });

    test('a failure before the first chunk surfaces as an LlmProviderError from the stream', async () => {
      standIn.script({ status: 503 });
      const error = await failureOf(collect(provider().streamChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })));
      expect(error).toBeInstanceOf(LlmProviderError);
      expect(error).toMatchObject({ kind: 'server_error', retryable: true });
    });
  });

  describe('embeddings', () => {
    test('one request for all inputs, as floats; one vector per input, in input order', async () => {
      const inputs = ['first text', 'second text', 'third text'];
      const result = await provider().embed({ model: 'text-embedding-3-small', inputs });

      expect(result.vectors).toEqual(inputs.map(standInEmbedding));
      expect(result.model).toBe('text-embedding-3-small');
      expect(result.usage.promptTokens).toBe(Math.ceil(inputs.join('').length / 4));
      expect(standIn.requests).toHaveLength(1);
      expect(standIn.requests[0]).toMatchObject({
        path: '/v1/embeddings',
        body: { model: 'text-embedding-3-small', input: inputs, encoding_format: 'float' },
      });
    });

    test('a preset without embeddings refuses without calling the server', async () => {
      const error = await failureOf(provider({ preset: 'deepseek' }).embed({ model: 'x', inputs: ['a'] }));
      expect(error).toMatchObject({ kind: 'unsupported', retryable: false });
      expect(standIn.requests).toHaveLength(0);
    });

    test('each provider says how many inputs one request may carry', () => {
      expect(provider().maxEmbeddingBatch).toBe(2048);
      expect(provider({ preset: 'gemini' }).maxEmbeddingBatch).toBe(100);
    });
  });

  describe('failures', () => {
    const chat = (config: Partial<OpenAiCompatibleConfig> = {}) =>
      provider(config).chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

    test.each([
      ['Retry-After in seconds', { 'retry-after': '2' }, 2000],
      ['retry-after-ms', { 'retry-after-ms': '1500', 'retry-after': '9' }, 1500],
    ])('429 with %s → rate_limited, retryable, with the wait the server asked for', async (_how, headers, retryAfterMs) => {
      standIn.script({ status: 429, headers });
      const error = await failureOf(chat());

      expect(error).toBeInstanceOf(LlmProviderError);
      expect(error).toMatchObject({ provider: 'openai', kind: 'rate_limited', retryable: true, details: { status: 429, retryAfterMs } });
      expect(standIn.requests).toHaveLength(1); // the client itself never retries
    });

    test('429 with Retry-After as an HTTP date → the time until then', async () => {
      standIn.script({ status: 429, headers: { 'retry-after': new Date(Date.now() + 5000).toUTCString() } });
      const error = (await failureOf(chat())) as LlmProviderError;
      expect(error.details.retryAfterMs).toBeGreaterThan(2000); // the date has whole seconds
      expect(error.details.retryAfterMs).toBeLessThanOrEqual(5000);
    });

    test('500 → server_error, retryable, tried once', async () => {
      standIn.script({ status: 500 });
      const error = await failureOf(chat());
      expect(error).toMatchObject({ kind: 'server_error', retryable: true, details: { status: 500 } });
      expect((error as Error).message).toBe('openai answered 500 Internal Server Error: stand-in: 500 Internal Server Error');
      expect(standIn.requests).toHaveLength(1);
    });

    test('401 → unauthorized, not retryable, with a clear message that never contains the key, even when the server echoes it', async () => {
      standIn.script({
        status: 401,
        body: { error: { message: `Incorrect API key provided: ${apiKey}. You can find your API key at https://platform.openai.com.`, type: 'invalid_request_error', code: 'invalid_api_key' } },
      });
      const error = await failureOf(chat());

      expect(error).toMatchObject({ kind: 'unauthorized', retryable: false, details: { status: 401 } });
      expect((error as Error).message).toBe(
        'openai answered 401 Unauthorized: Incorrect API key provided: [redacted]. You can find your API key at https://platform.openai.com.',
      );
      expect(JSON.stringify(error)).not.toContain(apiKey);
      expect(String((error as Error).stack)).not.toContain(apiKey);
    });

    test('a long provider message is cut to 300 characters', async () => {
      standIn.script({ status: 400, body: { error: { message: 'x'.repeat(1000) } } });
      const error = (await failureOf(chat())) as Error;
      expect(error.message.length).toBeLessThan('openai answered 400 Bad Request: '.length + 301);
    });

    test.each([
      [400, 'bad_request', false],
      [403, 'forbidden', false],
      [404, 'not_found', false],
      [408, 'timeout', true],
      [422, 'bad_request', false],
      [502, 'server_error', true],
      [503, 'server_error', true],
    ])('%i → %s (retryable: %s)', async (status, kind, retryable) => {
      standIn.script({ status });
      const error = await failureOf(chat());
      expect(error).toMatchObject({ kind, retryable, details: { status } });
    });

    test('a server that cannot be reached → connection, retryable', async () => {
      const error = await failureOf(chat({ baseUrl: `http://127.0.0.1:${await closedPort()}` }));
      expect(error).toMatchObject({ kind: 'connection', retryable: true });
      expect((error as Error).message).toMatch(/^openai could not be reached/);
    });

    test('a server slower than timeoutMs → timeout, retryable', async () => {
      standIn.script({ status: 200, delayMs: 5000 });
      const started = Date.now();
      const error = await failureOf(provider().chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { timeoutMs: 100 }));
      expect(error).toMatchObject({ kind: 'timeout', retryable: true });
      expect((error as Error).message).toBe('openai did not answer within 100 ms');
      expect(Date.now() - started).toBeLessThan(4000);
    });

    test('an abort by the caller rejects with the caller’s own abort reason, not a retryable provider error', async () => {
      standIn.script({ status: 200, delayMs: 5000 });
      const controller = new AbortController();
      const reason = new Error('cancelled by the test');
      setTimeout(() => controller.abort(reason), 50);
      const error = await failureOf(provider().chat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { signal: controller.signal }));
      expect(error).toBe(reason);
    });

    test('an abort of a stream rejects the stream with the abort reason', async () => {
      standIn.script({ status: 200, delayMs: 5000 });
      const controller = new AbortController();
      abortOnceReceived(standIn, controller);
      const error = await failureOf(collect(provider().streamChat({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, { signal: controller.signal })));
      expect(error).toBe(controller.signal.reason);
      expect(error).toMatchObject({ name: 'AbortError' });
    });

    test('a preset that needs a key refuses to start without one', () => {
      expect(() => createOpenAiCompatibleProvider({ preset: 'groq' })).toThrow(expect.objectContaining({ kind: 'unauthorized', message: 'Groq needs an API key' }));
    });
  });

  describe('probe', () => {
    test('lists the models with the configured key', async () => {
      await provider().probe();
      expect(standIn.requests[0]).toMatchObject({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${apiKey}` } });
    });

    test('a rejected key fails the probe as unauthorized', async () => {
      standIn.script({ status: 401 });
      await expect(provider().probe()).rejects.toMatchObject({ kind: 'unauthorized' });
    });
  });

  describe('presets', () => {
    // A configured base URL with no path gets the preset's path; the stand-in listens on a bare host:port.
    test.each<[PresetName, string | undefined, string, Record<string, string>, Record<string, string | undefined>]>([
      ['openai', apiKey, '/v1/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
      ['azure', apiKey, '/openai/deployments/gpt-4o-mini/chat/completions', { 'api-version': defaultAzureApiVersion }, { 'api-key': apiKey, authorization: undefined }],
      ['ollama', undefined, '/v1/chat/completions', {}, { authorization: undefined }],
      ['vllm', undefined, '/v1/chat/completions', {}, { authorization: undefined }],
      ['vllm', apiKey, '/v1/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
      ['lmstudio', undefined, '/v1/chat/completions', {}, { authorization: undefined }],
      [
        'openrouter',
        apiKey,
        '/api/v1/chat/completions',
        {},
        { authorization: `Bearer ${apiKey}`, 'http-referer': 'https://audit.example.com', 'x-title': 'AuditFlow' },
      ],
      ['groq', apiKey, '/openai/v1/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
      ['together', apiKey, '/v1/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
      ['mistral', apiKey, '/v1/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
      ['deepseek', apiKey, '/v1/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
      ['gemini', apiKey, '/v1beta/openai/chat/completions', {}, { authorization: `Bearer ${apiKey}` }],
    ])('%s with key %s: POST %s', async (preset, key, path, query, headers) => {
      const result = await createOpenAiCompatibleProvider({ preset, baseUrl: standIn.url, apiKey: key, appUrl: 'https://audit.example.com' }).chat({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'which path?' }],
      });

      expect(result.text).toBe('echo: which path?');
      const [request] = standIn.requests;
      expect(request).toMatchObject({ method: 'POST', path, query });
      for (const [name, value] of Object.entries(headers)) expect([name, request!.headers[name]]).toEqual([name, value]);
      // Never an organisation or project picked up from OPENAI_* variables of the process.
      expect(request!.headers['openai-organization']).toBeUndefined();
      expect(request!.headers['openai-project']).toBeUndefined();
    });

    test('every preset is covered by the table above', () => {
      expect(presetNames).toEqual(['openai', 'azure', 'ollama', 'vllm', 'lmstudio', 'openrouter', 'groq', 'together', 'mistral', 'deepseek', 'gemini']);
    });

    test('a configured base URL with a path is used as it is', async () => {
      await provider({ preset: 'vllm', baseUrl: `${standIn.url}/proxy/llm/` }).chat({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
      expect(standIn.requests[0]!.path).toBe('/proxy/llm/chat/completions');
    });

    test('azure takes its api-version from the configuration, and embeddings go to the deployment too', async () => {
      const azure = provider({ preset: 'azure', apiVersion: '2025-01-01-preview' });
      await azure.embed({ model: 'embed-deployment', inputs: ['a'] });
      expect(standIn.requests[0]).toMatchObject({ path: '/openai/deployments/embed-deployment/embeddings', query: { 'api-version': '2025-01-01-preview' } });
    });

    test.each(presetNames.filter((name) => name !== 'azure'))('%s has a default base URL with its path', (name) => {
      const preset = presets[name];
      expect(resolveBaseUrl(name, undefined)).toBe(preset.defaultBaseUrl);
      expect(new URL(resolveBaseUrl(name, undefined)).pathname).toBe(preset.defaultPath);
    });

    test('base URLs: a bare host gets the default path, a path is kept, a trailing slash is dropped', () => {
      expect(resolveBaseUrl('vllm', 'http://gpu-box:8000')).toBe('http://gpu-box:8000/v1');
      expect(resolveBaseUrl('vllm', 'http://gpu-box:8000/')).toBe('http://gpu-box:8000/v1');
      expect(resolveBaseUrl('ollama', 'http://gpu-box:11434/custom/v1/')).toBe('http://gpu-box:11434/custom/v1');
      expect(resolveBaseUrl('azure', 'https://my-resource.openai.azure.com')).toBe('https://my-resource.openai.azure.com/openai');
    });

    test('azure has no default endpoint: without one the provider cannot be created', () => {
      expect(() => createOpenAiCompatibleProvider({ preset: 'azure', apiKey })).toThrow(expect.objectContaining({ kind: 'bad_request' }));
    });
  });
});
