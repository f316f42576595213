import Anthropic from '@anthropic-ai/sdk';
import { LlmProviderError } from './errors';
import { jsonInstruction } from './json-output';
import { callScope, toLlmProviderError, type CallScope } from './provider-errors';
import { answerText, estimatedUsage, requestOptions, streamedText } from './sdk-calls';
import type { CallOptions, ChatRequest, ChatResult, ChatStreamEvent, EmbeddingResult, LlmProvider, TokenUsage } from './types';

/**
 * Claude through `@anthropic-ai/sdk` (the Messages API). System messages go to `system`; JSON
 * answers are asked for in the system prompt (schema included) and cleaned of Markdown fences,
 * which works with every Claude model. Anthropic has no embeddings API.
 */

export interface AnthropicConfig {
  /** Defaults to https://api.anthropic.com; a trailing `/v1` is dropped (the SDK adds it). */
  baseUrl?: string | undefined;
  apiKey?: string | undefined;
}

export const anthropicDefaults = {
  baseUrl: 'https://api.anthropic.com',
  chatModel: 'claude-sonnet-4-6',
  /** The Messages API requires a limit; this one fits every current model's output. */
  maxTokens: 4096,
} as const;

const name = 'anthropic';

function resolveAnthropicBaseUrl(configured: string | undefined): string {
  if (configured === undefined || configured === '') return anthropicDefaults.baseUrl;
  let url: URL;
  try {
    url = new URL(configured);
  } catch {
    throw new LlmProviderError(name, 'bad_request', `anthropic base URL is not a URL: ${configured.slice(0, 200)}`);
  }
  url.pathname = url.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}

export function createAnthropicProvider(config: AnthropicConfig): LlmProvider {
  if (!config.apiKey) throw new LlmProviderError(name, 'unauthorized', 'Anthropic needs an API key');
  const apiKey = config.apiKey;
  // An explicit key and base URL: the SDK then reads neither ANTHROPIC_* variables nor profiles.
  const client = new Anthropic({ apiKey, baseURL: resolveAnthropicBaseUrl(config.baseUrl), maxRetries: 0 });
  const failure = (error: unknown, scope: CallScope) => toLlmProviderError(error, { provider: name, apiKey, scope });

  function messagesBody(request: ChatRequest) {
    const systemParts = request.messages.filter((message) => message.role === 'system').map((message) => message.content);
    if (request.json) systemParts.push(jsonInstruction(request.json));
    const system = systemParts.join('\n\n');
    return {
      model: request.model,
      max_tokens: request.maxTokens ?? anthropicDefaults.maxTokens,
      ...(system === '' ? {} : { system }),
      messages: request.messages
        .filter((message) => message.role !== 'system')
        .map((message) => ({ role: message.role as 'user' | 'assistant', content: message.content })),
      ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
    };
  }

  return {
    name,
    maxEmbeddingBatch: 1,

    async chat(request: ChatRequest, options?: CallOptions): Promise<ChatResult> {
      const scope = callScope(options);
      try {
        const message = await client.messages.create(messagesBody(request), requestOptions(scope));
        const text = message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
        return {
          text: answerText(request, text),
          model: message.model || request.model,
          usage: { promptTokens: message.usage.input_tokens, completionTokens: message.usage.output_tokens },
          finishReason: message.stop_reason ?? null,
        };
      } catch (error) {
        throw failure(error, scope);
      }
    },

    async *streamChat(request: ChatRequest, options?: CallOptions): AsyncIterable<ChatStreamEvent> {
      const scope = callScope(options);
      let model = request.model;
      const usage: TokenUsage = { promptTokens: 0, completionTokens: 0 };
      let sawUsage = false;
      let finishReason: string | null = null;
      const text = yield* streamedText(
        scope,
        failure,
        () => client.messages.create({ ...messagesBody(request), stream: true }, requestOptions(scope)),
        (event) => {
          switch (event.type) {
            case 'message_start':
              // Input tokens are counted once, at the start; output tokens grow with each message_delta.
              model = event.message.model || model;
              usage.promptTokens = event.message.usage.input_tokens;
              usage.completionTokens = event.message.usage.output_tokens;
              sawUsage = true;
              return undefined;
            case 'content_block_delta':
              return event.delta.type === 'text_delta' ? event.delta.text : undefined;
            case 'message_delta':
              usage.completionTokens = event.usage.output_tokens;
              if (event.usage.input_tokens != null) usage.promptTokens = event.usage.input_tokens;
              finishReason = event.delta.stop_reason ?? finishReason;
              sawUsage = true;
              return undefined;
            default:
              return undefined;
          }
        },
      );
      const result: ChatResult = { text: answerText(request, text), model, usage: sawUsage ? usage : estimatedUsage(request, text), finishReason };
      yield { type: 'done', result };
    },

    embed(): Promise<EmbeddingResult> {
      return Promise.reject(new LlmProviderError(name, 'unsupported', 'Anthropic has no embeddings API: choose another embedding provider'));
    },

    async probe(options?: CallOptions): Promise<void> {
      const scope = callScope(options);
      try {
        await client.models.list(undefined, requestOptions(scope));
      } catch (error) {
        throw failure(error, scope);
      }
    },
  };
}
