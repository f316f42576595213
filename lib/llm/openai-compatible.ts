import OpenAI, { AzureOpenAI } from 'openai';
import { LlmProviderError } from './errors';
import { isStrictCompatible, withJsonInstruction } from './json-output';
import { defaultAzureApiVersion, openRouterAppTitle, presets, resolveBaseUrl, type OpenAiCompatiblePreset, type PresetName } from './presets';
import { estimateTokens } from './pricing';
import { callScope, toLlmProviderError, type CallScope } from './provider-errors';
import { answerText, estimatedUsage, requestOptions, streamedText } from './sdk-calls';
import type { CallOptions, ChatRequest, ChatResult, ChatStreamEvent, EmbeddingRequest, EmbeddingResult, LlmProvider, TokenUsage } from './types';

/**
 * Every endpoint speaking OpenAI's chat-completions format, through the `openai` package: the
 * preset says where it lives and which dialect it speaks (presets.ts). The client never retries
 * (the gateway and Temporal decide that) and never reads OPENAI_* environment variables for
 * anything that changes where a request goes or whom it is billed to.
 */

export interface OpenAiCompatibleConfig {
  preset: PresetName;
  /** The API root (or, for azure, the resource endpoint); defaults to the preset's. */
  baseUrl?: string | undefined;
  apiKey?: string | undefined;
  /** Azure OpenAI's `api-version`; defaults to `defaultAzureApiVersion`. */
  apiVersion?: string | undefined;
  /** This deployment's public URL, sent to OpenRouter as `HTTP-Referer` (its app attribution). */
  appUrl?: string | undefined;
}

/** OpenRouter's attribution when no app URL is configured: the API's default address (lib/config PUBLIC_URL). */
const defaultAppUrl = 'http://localhost:3000';

/** The `openai` client insists on a key; keyless local servers get this one, and no Authorization header. */
const keylessPlaceholder = 'no-key';

/** JSON-schema names must match ^[a-zA-Z0-9_-]{1,64}$. */
function schemaName(name: string): string {
  return name.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 64) || 'answer';
}

function buildClient(config: OpenAiCompatibleConfig, baseURL: string): OpenAI {
  const common = {
    baseURL,
    maxRetries: 0,
    // Never from OPENAI_ORG_ID / OPENAI_PROJECT_ID: a key of another organisation would fail or bill elsewhere.
    organization: null,
    project: null,
  };
  if (config.preset === 'azure') {
    // AzureOpenAI sends `api-key`, adds `api-version` and puts the deployment (the request's
    // model) into the path: <endpoint>/openai/deployments/<model>/chat/completions.
    return new AzureOpenAI({ ...common, apiKey: config.apiKey, apiVersion: config.apiVersion ?? defaultAzureApiVersion });
  }
  const headers: Record<string, string | null> = {};
  if (!config.apiKey) headers.Authorization = null; // null removes the header the placeholder key would produce
  if (config.preset === 'openrouter') {
    headers['HTTP-Referer'] = config.appUrl ?? defaultAppUrl;
    headers['X-Title'] = openRouterAppTitle;
  }
  return new OpenAI({ ...common, apiKey: config.apiKey || keylessPlaceholder, defaultHeaders: headers });
}

export function createOpenAiCompatibleProvider(config: OpenAiCompatibleConfig): LlmProvider {
  const name = config.preset;
  const preset: OpenAiCompatiblePreset = presets[name];
  if (preset.apiKeyRequired && !config.apiKey) {
    throw new LlmProviderError(name, 'unauthorized', `${preset.label} needs an API key`);
  }
  const client = buildClient(config, resolveBaseUrl(name, config.baseUrl));
  const failure = (error: unknown, scope: CallScope) => toLlmProviderError(error, { provider: name, apiKey: config.apiKey, scope });

  function chatBody(request: ChatRequest) {
    const messages = request.json && preset.jsonMode === 'json_object' ? withJsonInstruction(request.messages, request.json) : request.messages;
    return {
      model: request.model,
      messages: messages.map((message) => ({ role: message.role, content: message.content })),
      ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
      ...(request.maxTokens === undefined ? {} : { [preset.maxTokensField]: request.maxTokens }),
      ...(request.json === undefined
        ? {}
        : {
            response_format:
              preset.jsonMode === 'json_schema'
                ? {
                    type: 'json_schema' as const,
                    json_schema: { name: schemaName(request.json.name), schema: request.json.schema, strict: isStrictCompatible(request.json.schema) },
                  }
                : { type: 'json_object' as const },
          }),
    };
  }

  return {
    name,
    maxEmbeddingBatch: preset.embeddings?.maxBatch ?? 1,

    async chat(request: ChatRequest, options?: CallOptions): Promise<ChatResult> {
      const scope = callScope(options);
      try {
        const completion = await client.chat.completions.create(chatBody(request), requestOptions(scope));
        const choice = completion.choices[0];
        if (choice === undefined) {
          throw new LlmProviderError(name, 'invalid_output', `${name} answered without a choice`);
        }
        const text = choice.message.content ?? '';
        return {
          text: answerText(request, text),
          model: completion.model || request.model,
          usage: completion.usage
            ? { promptTokens: completion.usage.prompt_tokens, completionTokens: completion.usage.completion_tokens }
            : estimatedUsage(request, text),
          finishReason: choice.finish_reason ?? null,
        };
      } catch (error) {
        throw failure(error, scope);
      }
    },

    async *streamChat(request: ChatRequest, options?: CallOptions): AsyncIterable<ChatStreamEvent> {
      const scope = callScope(options);
      let model = request.model;
      let usage: TokenUsage | undefined;
      let finishReason: string | null = null;
      const text = yield* streamedText(
        scope,
        failure,
        () =>
          client.chat.completions.create(
            {
              ...chatBody(request),
              stream: true,
              // Usage arrives in a last chunk only when asked for; Mistral rejects the option and always sends it.
              ...(preset.streamUsageOption ? { stream_options: { include_usage: true } } : {}),
            },
            requestOptions(scope),
          ),
        (chunk) => {
          if (chunk.model) model = chunk.model;
          if (chunk.usage) usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens };
          const choice = chunk.choices[0];
          if (choice?.finish_reason) finishReason = choice.finish_reason;
          return choice?.delta.content;
        },
      );
      yield { type: 'done', result: { text: answerText(request, text), model, usage: usage ?? estimatedUsage(request, text), finishReason } };
    },

    async embed(request: EmbeddingRequest, options?: CallOptions): Promise<EmbeddingResult> {
      if (preset.embeddings === null) {
        throw new LlmProviderError(name, 'unsupported', `${preset.label} serves no embeddings`);
      }
      const scope = callScope(options);
      try {
        // Floats, not the SDK's default base64: several compatible servers cannot encode base64.
        const response = await client.embeddings.create(
          { model: request.model, input: request.inputs, encoding_format: 'float' },
          requestOptions(scope),
        );
        const vectors = [...response.data].sort((a, b) => a.index - b.index).map((item) => item.embedding);
        if (vectors.length !== request.inputs.length) {
          throw new LlmProviderError(name, 'invalid_output', `${name} answered ${vectors.length} embeddings for ${request.inputs.length} inputs`);
        }
        return {
          vectors,
          model: response.model || request.model,
          usage: { promptTokens: response.usage?.prompt_tokens ?? estimateTokens(request.inputs.join('\n')) },
        };
      } catch (error) {
        throw failure(error, scope);
      }
    },

    async probe(options?: CallOptions): Promise<void> {
      const scope = callScope(options);
      try {
        await client.models.list(requestOptions(scope));
      } catch (error) {
        throw failure(error, scope);
      }
    },
  };
}
