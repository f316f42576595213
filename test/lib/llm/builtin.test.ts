import { createBuiltinProvider } from '../../../lib/llm/builtin';
import { LlmProviderError } from '../../../lib/llm/errors';
import { NOTHING_RELEVANT_ANSWER } from '../../../lib/llm/extractive-chat';
import type { ChatMessage, ChatRequest, ChatStreamEvent } from '../../../lib/llm/types';

const provider = createBuiltinProvider();

const norm = (vector: number[]) => Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0));
const dot = (a: number[], b: number[]) => a.reduce((sum, x, i) => sum + x * (b[i] ?? 0), 0);

async function embedOne(text: string): Promise<number[]> {
  const { vectors } = await provider.embed({ model: 'hashing-384', inputs: [text] });
  return vectors[0] ?? [];
}

/** Why the promise was rejected, or a failure when it resolved. */
async function rejectionOf(promise: Promise<unknown>): Promise<LlmProviderError> {
  const error: unknown = await promise.then(
    () => new Error('expected a rejection'),
    (reason: unknown) => reason,
  );
  if (!(error instanceof LlmProviderError)) throw error;
  return error;
}

const handbook = [
  '## Backups',
  'Backups of the database run every night at 02:00 UTC. Each backup is kept for thirty days.',
  '',
  '## Networking',
  'The API listens on port 8080. TLS is terminated by the load balancer.',
  '',
  '## Accounts',
  'Passwords are hashed with bcrypt before they are stored. Sessions expire after twelve hours of inactivity.',
].join('\n');

const ask = (question: string, context: string): ChatRequest => ({
  model: 'extractive',
  messages: [
    { role: 'system', content: context },
    { role: 'user', content: question },
  ],
});

describe('built-in provider: embeddings (hashing-384)', () => {
  test('is named builtin, answers probes at once and takes large batches', async () => {
    expect(provider.name).toBe('builtin');
    expect(provider.maxEmbeddingBatch).toBeGreaterThanOrEqual(1000);
    await expect(provider.probe()).resolves.toBeUndefined();
  });

  test('gives 384-dimensional unit vectors, identical for the same text across calls and provider instances', async () => {
    const text = 'Connection pooling reuses open database connections.';
    const first = await embedOne(text);
    const again = await createBuiltinProvider().embed({ model: 'hashing-384', inputs: [text] });
    expect(first).toHaveLength(384);
    expect(norm(first)).toBeCloseTo(1, 10);
    expect(again.vectors[0]).toEqual(first);
  });

  test('folds case and Unicode compatibility forms, so ＤＡＴＡＢＡＳＥ and database embed alike', async () => {
    expect(await embedOne('ＤＡＴＡＢＡＳＥ Backup')).toEqual(await embedOne('database backup'));
  });

  test('gives the zero vector (not NaN) for a text without words', async () => {
    const { vectors } = await provider.embed({ model: 'hashing-384', inputs: ['', '  ', '...'] });
    for (const vector of vectors) {
      expect(vector).toHaveLength(384);
      expect(vector.every((x) => x === 0)).toBe(true);
    }
  });

  test('keeps the input order in a batch and counts words as prompt tokens', async () => {
    const inputs = ['tomato sauce recipe', 'TLS certificate renewal', 'the marathon runner slowed down'];
    const batch = await provider.embed({ model: 'hashing-384', inputs });
    expect(batch.model).toBe('hashing-384');
    expect(batch.vectors).toHaveLength(3);
    for (const [i, input] of inputs.entries()) expect(batch.vectors[i]).toEqual(await embedOne(input));
    expect(batch.usage.promptTokens).toBe(3 + 3 + 5);
  });

  test('embeds a batch larger than one event-loop turn completely and in order', async () => {
    const inputs = Array.from({ length: 600 }, (_, i) => `document number ${i}`);
    const { vectors } = await provider.embed({ model: 'hashing-384', inputs });
    expect(vectors).toHaveLength(600);
    expect(vectors[599]).toEqual(await embedOne('document number 599'));
  });

  test('places texts that share words and word forms closer than texts that do not', async () => {
    const query = await embedOne('How are database backups scheduled?');
    const related = await embedOne('The database is backed up on a nightly schedule.');
    const unrelated = await embedOne('Simmer the tomato sauce for forty minutes.');
    expect(dot(query, related)).toBeGreaterThan(dot(query, unrelated) + 0.1);
  });

  test('refuses any other embedding model, naming the one it supports', async () => {
    const error = await rejectionOf(provider.embed({ model: 'text-embedding-3-small', inputs: ['x'] }));
    expect(error.kind).toBe('bad_request');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('hashing-384');
  });
});

describe('built-in provider: extractive chat', () => {
  test('quotes the sentences of the context that answer the question, in their original order', async () => {
    const result = await provider.chat(ask('How long is each database backup kept, and when do backups run?', handbook));
    expect(result.text).toBe('Backups of the database run every night at 02:00 UTC. Each backup is kept for thirty days.');
    expect(result.model).toBe('extractive');
    expect(result.finishReason).toBe('stop');
    expect(result.usage.completionTokens).toBe(17); // words of the two quoted sentences
    expect(result.usage.promptTokens).toBeGreaterThan(40);
  });

  test('leaves out sentences about other things', async () => {
    const result = await provider.chat(ask('Which port does the API listen on?', handbook));
    expect(result.text).toBe('The API listens on port 8080.');
  });

  test('reads the context after a "Context:" line of the question, and from earlier turns', async () => {
    const inMessage = await provider.chat({
      model: 'extractive',
      messages: [{ role: 'user', content: `How are passwords stored?\n\nContext:\n${handbook}` }],
    });
    expect(inMessage.text).toBe('Passwords are hashed with bcrypt before they are stored.');

    const conversation: ChatMessage[] = [
      { role: 'user', content: 'Here are my notes. Sessions expire after twelve hours of inactivity.' },
      { role: 'assistant', content: 'Noted.' },
      { role: 'user', content: 'When do sessions expire?' },
    ];
    expect((await provider.chat({ model: 'extractive', messages: conversation })).text).toBe(
      'Sessions expire after twelve hours of inactivity.',
    );
  });

  test('keeps a source citation marker with each quoted sentence', async () => {
    const sources = [
      '[1] The load balancer terminates TLS. It forwards plain HTTP to the API.',
      '',
      '[2] Passwords are hashed with bcrypt, e.g. at cost 12. Sessions expire after twelve hours.',
    ].join('\n');
    const result = await provider.chat(ask('How are passwords hashed?', sources));
    expect(result.text).toBe('Passwords are hashed with bcrypt, e.g. at cost 12. [2]');
  });

  test('ranks a sentence together with the heading of its section', async () => {
    const notes = ['## Retention', 'Each copy is kept for thirty days.', '', '## Schedule', 'Copies are made at midnight.'].join('\n');
    expect((await provider.chat(ask('What is the retention period?', notes))).text).toBe('Each copy is kept for thirty days.');
  });

  test('says honestly that it found nothing when the context does not cover the question', async () => {
    expect((await provider.chat(ask('What is the capital of France?', handbook))).text).toBe(NOTHING_RELEVANT_ANSWER);
    expect((await provider.chat(ask('How long are backups kept?', ''))).text).toBe(NOTHING_RELEVANT_ANSWER);
    expect(NOTHING_RELEVANT_ANSWER).toMatch(/built-in provider found nothing relevant/);
  });

  test('refuses structured (JSON) output as unsupported, telling the user to configure a real model', async () => {
    const error = await rejectionOf(
      provider.chat({ ...ask('Classify this finding', handbook), json: { name: 'finding', schema: { type: 'object' } } }),
    );
    expect(error.kind).toBe('unsupported');
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/does not produce structured output/);
    expect(error.message).toMatch(/configure a real chat model/);
  });

  test('refuses other chat models and requests without a question', async () => {
    const unknownModel = await rejectionOf(provider.chat({ ...ask('Which port?', handbook), model: 'gpt-4o' }));
    expect(unknownModel.kind).toBe('bad_request');
    expect(unknownModel.message).toContain('"extractive"');
    const noQuestion = await rejectionOf(provider.chat({ model: 'extractive', messages: [{ role: 'system', content: handbook }] }));
    expect(noQuestion.kind).toBe('bad_request');
  });

  test('streams the same answer as a few deltas followed by done', async () => {
    const request = ask('How long is each database backup kept, and when do backups run?', handbook);
    const events: ChatStreamEvent[] = [];
    for await (const event of provider.streamChat(request)) events.push(event);

    const deltas = events.filter((event) => event.type === 'delta');
    const done = events[events.length - 1];
    expect(done?.type).toBe('done');
    expect(events.filter((event) => event.type === 'done')).toHaveLength(1);
    expect(deltas.length).toBeGreaterThan(1);
    if (done?.type !== 'done') return;
    expect(deltas.map((delta) => delta.text).join('')).toBe(done.result.text);
    expect(done.result).toEqual(await provider.chat(request));
  });

  test('streaming refuses JSON output too, before any delta', async () => {
    const stream = provider.streamChat({ ...ask('Classify', handbook), json: { name: 'x', schema: {} } });
    const events: ChatStreamEvent[] = [];
    const consume = async () => {
      for await (const event of stream) events.push(event);
    };
    const error = await rejectionOf(consume());
    expect(error.kind).toBe('unsupported');
    expect(events).toHaveLength(0);
  });
});
