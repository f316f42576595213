import { LlmProviderError } from './errors';
import { answerExtractively } from './extractive-chat';
import { countWords, embedText } from './hashing-embedder';
import type { CallOptions, ChatRequest, ChatResult, ChatStreamEvent, EmbeddingRequest, EmbeddingResult, LlmProvider } from './types';

/**
 * The default provider: offline, deterministic and free. Embeddings come from a hashing embedder
 * (lexical similarity, 384 dimensions); chat quotes the most relevant sentences of the context it
 * is given. It cannot produce structured output, so features that need a real model's judgement
 * (the LLM code analyzer) stay off while a tenant's chat provider is `builtin`.
 *
 * Work is synchronous and takes milliseconds; `timeoutMs` is therefore ignored, and the caller's
 * abort signal is honoured between batches and stream deltas (an abort surfaces as the signal's
 * own reason, as it does for the HTTP providers).
 */

export const BUILTIN_PROVIDER_NAME = 'builtin';
export const BUILTIN_EMBEDDING_MODEL = 'hashing-384';
export const BUILTIN_CHAT_MODEL = 'extractive';

/** Inputs embedded between two yields to the event loop, so a large batch does not stall the API. */
const embeddingsPerTurn = 256;
/** Words per streamed delta: a few deltas for a typical answer, as a model would send. */
const wordsPerDelta = 8;

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

function refuseUnknownModel(kind: 'chat' | 'embedding', model: string, supported: string): void {
  if (model !== supported) {
    throw new LlmProviderError(
      BUILTIN_PROVIDER_NAME,
      'bad_request',
      `builtin: unknown ${kind} model "${model}"; the built-in provider supports only "${supported}"`,
    );
  }
}

function answer(request: ChatRequest): ChatResult {
  refuseUnknownModel('chat', request.model, BUILTIN_CHAT_MODEL);
  if (request.json) {
    throw new LlmProviderError(
      BUILTIN_PROVIDER_NAME,
      'unsupported',
      `builtin: the built-in provider does not produce structured output (requested "${request.json.name}"); configure a real chat model (OpenAI-compatible or Anthropic) for this feature`,
    );
  }
  if (!request.messages.some((message) => message.role === 'user')) {
    throw new LlmProviderError(BUILTIN_PROVIDER_NAME, 'bad_request', 'builtin: a chat request needs at least one user message (the question)');
  }
  // Temperature and maxTokens do not apply: the answer is a quote of at most a few sentences.
  const text = answerExtractively(request.messages);
  const promptTokens = request.messages.reduce((sum, message) => sum + countWords(message.content), 0);
  return { text, model: BUILTIN_CHAT_MODEL, usage: { promptTokens, completionTokens: countWords(text) }, finishReason: 'stop' };
}

/** `text` cut after every `wordsPerDelta` words (whitespace kept), so the pieces join back exactly. */
function splitIntoDeltas(text: string): string[] {
  const words = text.match(/\s*\S+\s*/g) ?? [];
  const deltas: string[] = [];
  for (let i = 0; i < words.length; i += wordsPerDelta) deltas.push(words.slice(i, i + wordsPerDelta).join(''));
  return deltas;
}

export function createBuiltinProvider(): LlmProvider {
  return {
    name: BUILTIN_PROVIDER_NAME,
    maxEmbeddingBatch: 2048,

    chat(request: ChatRequest, options?: CallOptions): Promise<ChatResult> {
      // A promise executor turns a thrown refusal into a rejection, as an async client would.
      return new Promise((resolve) => {
        options?.signal?.throwIfAborted();
        resolve(answer(request));
      });
    },

    async *streamChat(request: ChatRequest, options?: CallOptions): AsyncIterable<ChatStreamEvent> {
      options?.signal?.throwIfAborted();
      const result = answer(request);
      for (const text of splitIntoDeltas(result.text)) {
        yield { type: 'delta', text };
        await yieldToEventLoop();
        options?.signal?.throwIfAborted();
      }
      yield { type: 'done', result };
    },

    async embed(request: EmbeddingRequest, options?: CallOptions): Promise<EmbeddingResult> {
      refuseUnknownModel('embedding', request.model, BUILTIN_EMBEDDING_MODEL);
      const vectors: number[][] = [];
      let promptTokens = 0;
      for (let start = 0; start < request.inputs.length; start += embeddingsPerTurn) {
        options?.signal?.throwIfAborted();
        if (start > 0) await yieldToEventLoop();
        for (const input of request.inputs.slice(start, start + embeddingsPerTurn)) {
          vectors.push(embedText(input));
          promptTokens += countWords(input);
        }
      }
      return { vectors, model: BUILTIN_EMBEDDING_MODEL, usage: { promptTokens } };
    },

    probe(): Promise<void> {
      return Promise.resolve(); // nothing remote to reach
    },
  };
}
