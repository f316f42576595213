import { stripJsonFence } from './json-output';
import { estimateTokens } from './pricing';
import type { CallScope } from './provider-errors';
import type { ChatRequest, ChatStreamEvent, TokenUsage } from './types';

/**
 * What the providers calling a vendor SDK (openai-compatible.ts, anthropic.ts) do alike: the
 * options each request gets, the reading of a streamed answer, and the answer's text and
 * estimated usage.
 */

/** The SDK's options for one call: the scope's signal, and its time limit as the SDK's own timeout. */
export function requestOptions(scope: CallScope): { signal?: AbortSignal; timeout?: number } {
  return {
    ...(scope.signal === undefined ? {} : { signal: scope.signal }),
    ...(scope.timeoutMs === undefined ? {} : { timeout: scope.timeoutMs }),
  };
}

/**
 * Reads a streamed answer: `open` sends the request; `deltaOf` takes what the provider needs from
 * each item (model, usage, finish reason) and answers the item's text, if any. Yields the text
 * deltas and returns the whole text. A stream the SDK ended quietly because the call was stopped
 * throws (a cut-off answer must not look complete); whatever fails, opening, reading or in
 * `deltaOf`, is thrown as `failure` makes it.
 */
export async function* streamedText<Item>(
  scope: CallScope,
  failure: (error: unknown, scope: CallScope) => unknown,
  open: () => Promise<AsyncIterable<Item>>,
  deltaOf: (item: Item) => string | null | undefined,
): AsyncGenerator<ChatStreamEvent, string, undefined> {
  let text = '';
  try {
    const stream = await open();
    for await (const item of stream) {
      const delta = deltaOf(item);
      if (delta) {
        text += delta;
        yield { type: 'delta', text: delta };
      }
    }
    scope.throwIfStopped();
  } catch (error) {
    throw failure(error, scope);
  }
  return text;
}

/** The answer's text as callers get it: a JSON answer without the Markdown fence models put around it. */
export function answerText(request: ChatRequest, text: string): string {
  return request.json ? stripJsonFence(text) : text;
}

/** Usage estimated from the prompt and the answer, for servers that report none. */
export function estimatedUsage(request: ChatRequest, text: string): TokenUsage {
  return { promptTokens: estimateTokens(request.messages.map((message) => message.content).join('\n')), completionTokens: estimateTokens(text) };
}
