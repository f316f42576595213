/**
 * The provider-neutral shapes every model client speaks. Provider clients (OpenAI-compatible,
 * Anthropic, the built-in offline one) translate to and from their wire formats; the gateway in
 * services/llm adds settings, budgets, cache, rate limits and usage on top of this interface.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Asks for a JSON object answer; `schema` (JSON Schema) is enforced where the provider can. */
export interface JsonOutput {
  name: string;
  schema: Record<string, unknown>;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  json?: JsonOutput;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface ChatResult {
  text: string;
  /** The model that answered, as the provider names it. */
  model: string;
  usage: TokenUsage;
  finishReason: string | null;
}

/** A streamed completion: text deltas, then one `done` carrying the whole result and its usage. */
export type ChatStreamEvent = { type: 'delta'; text: string } | { type: 'done'; result: ChatResult };

export interface EmbeddingRequest {
  model: string;
  inputs: string[];
}

export interface EmbeddingResult {
  /** One vector per input, in input order. */
  vectors: number[][];
  model: string;
  usage: { promptTokens: number };
}

export interface CallOptions {
  /** Aborts the HTTP request (Temporal's cancellation signal, or an API request's deadline). */
  signal?: AbortSignal;
  /** The provider call's own time limit; a call that exceeds it fails as a retryable `timeout`. */
  timeoutMs?: number;
}

export interface LlmProvider {
  /** The provider's name: `builtin`, `anthropic` or an OpenAI-compatible preset. */
  readonly name: string;
  /** How many inputs one embeddings request may carry. */
  readonly maxEmbeddingBatch: number;
  chat(request: ChatRequest, options?: CallOptions): Promise<ChatResult>;
  streamChat(request: ChatRequest, options?: CallOptions): AsyncIterable<ChatStreamEvent, void>;
  embed(request: EmbeddingRequest, options?: CallOptions): Promise<EmbeddingResult>;
  /** Resolves when the endpoint answers with these credentials (a cheap call, e.g. listing models). */
  probe(options?: CallOptions): Promise<void>;
}
