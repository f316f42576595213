import { STATUS_CODES } from 'node:http';
import * as Anthropic from '@anthropic-ai/sdk';
import * as OpenAi from 'openai';
import { LlmProviderError, type LlmErrorKind } from './errors';

/**
 * Turns whatever the `openai` or `@anthropic-ai/sdk` client threw into an `LlmProviderError`
 * whose kind says whether trying again can help, with a message a user can act on and that
 * never carries the API key.
 */

/** Provider messages can be long (whole request echoes); enough to say what went wrong. */
const maxProviderMessageLength = 300;

/**
 * One call's cancellation and time limit. The SDKs' own timeout covers only the wait for the
 * response headers, so a stream that stalls later would hang: the deadline signal covers the
 * whole call, headers and body.
 */
export interface CallScope {
  /** What the SDK gets: fires on the caller's abort or at the deadline. */
  readonly signal: AbortSignal | undefined;
  readonly callerSignal: AbortSignal | undefined;
  readonly deadline: AbortSignal | undefined;
  readonly timeoutMs: number | undefined;
  /**
   * Throws when the call was stopped: the SDKs end a stream quietly when their signal fires,
   * and a cut-off answer must not look complete.
   */
  throwIfStopped(): void;
}

export function callScope(options: { signal?: AbortSignal; timeoutMs?: number } | undefined): CallScope {
  const callerSignal = options?.signal;
  const deadline = options?.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
  const signal = callerSignal && deadline ? AbortSignal.any([callerSignal, deadline]) : (callerSignal ?? deadline);
  return {
    signal,
    callerSignal,
    deadline,
    timeoutMs: options?.timeoutMs,
    throwIfStopped() {
      if (callerSignal?.aborted) throw callerSignal.reason;
      if (deadline?.aborted) throw deadline.reason;
    },
  };
}

export interface ErrorContext {
  /** The provider's name, first word of every message. */
  provider: string;
  /** Replaced by `[redacted]` wherever it appears: providers echo keys in their messages. */
  apiKey?: string | undefined;
  /** The call's signals: a caller's abort is a cancellation, the deadline a timeout. */
  scope?: CallScope | undefined;
}

type SdkApiError = OpenAi.APIError | Anthropic.APIError;

function isAbort(error: unknown): boolean {
  if (error instanceof OpenAi.APIUserAbortError || error instanceof Anthropic.APIUserAbortError) return true;
  return error instanceof Error && error.name === 'AbortError';
}

export function redactKey(text: string, apiKey: string | undefined): string {
  return apiKey ? text.split(apiKey).join('[redacted]') : text;
}

function statusText(status: number): string {
  if (status === 529) return 'Overloaded'; // Anthropic's own status, not in Node's table
  return STATUS_CODES[status] ?? 'Error';
}

function kindOfStatus(status: number): LlmErrorKind {
  if (status === 429) return 'rate_limited';
  if (status === 408) return 'timeout';
  if (status >= 500) return 'server_error';
  if (status === 401) return 'unauthorized';
  if (status === 402 || status === 403) return 'forbidden'; // 402: the account cannot pay; as final as a refusal
  if (status === 404) return 'not_found';
  return 'bad_request';
}

/** Errors sent inside a stream carry no HTTP status, only the error type of the body. */
function kindOfErrorType(type: string | null | undefined): LlmErrorKind {
  switch (type) {
    case 'rate_limit_error':
    case 'rate_limit_exceeded':
      return 'rate_limited';
    case 'authentication_error':
      return 'unauthorized';
    case 'permission_error':
      return 'forbidden';
    case 'not_found_error':
      return 'not_found';
    case 'invalid_request_error':
      return 'bad_request';
    case 'timeout_error':
      return 'timeout';
    default:
      return 'server_error'; // api_error, overloaded_error, or nothing said: the server broke mid-answer
  }
}

/**
 * How long the provider asks us to wait: `retry-after-ms` (OpenAI), else `retry-after` in
 * seconds or as an HTTP date. Undefined when it did not say (or said something unreadable).
 */
export function retryAfterMsOf(headers: Headers | undefined, now = Date.now()): number | undefined {
  const milliseconds = headers?.get('retry-after-ms');
  if (milliseconds != null && milliseconds.trim() !== '') {
    const value = Number(milliseconds);
    if (Number.isFinite(value) && value >= 0) return Math.ceil(value);
  }
  const retryAfter = headers?.get('retry-after')?.trim();
  if (!retryAfter) return undefined;
  if (/^\d+(\.\d+)?$/.test(retryAfter)) return Math.ceil(Number(retryAfter) * 1000);
  const date = Date.parse(retryAfter);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** The provider's own words: `error.message` of the body in both wire formats, else the SDK's text. */
function providerMessageOf(error: SdkApiError): string {
  // openai keeps the body's `error` object; @anthropic-ai/sdk keeps the whole body.
  const body: unknown = error.error;
  const inner = isObject(body) && isObject(body.error) ? body.error : body;
  if (isObject(inner) && typeof inner.message === 'string' && inner.message !== '') return inner.message;
  // The SDK's message is "<status> <body or text>"; the status is said separately.
  return error.message.replace(/^\d{3}\s+/, '');
}

function errorTypeOf(error: SdkApiError): string | null {
  if (error instanceof Anthropic.APIError) return error.type;
  return error.type ?? null;
}

function shorten(text: string): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > maxProviderMessageLength ? `${oneLine.slice(0, maxProviderMessageLength - 1)}…` : oneLine;
}

/**
 * What to throw for a failed call: an `LlmProviderError` for provider failures. A cancellation
 * by the caller becomes the caller's own abort reason (Temporal's CancelledFailure, or the
 * AbortError of a plain controller): it must stay an abort, or a cancelled activity would be
 * retried. Anything else is not a provider failure and is returned unchanged (a bug of ours
 * should surface as itself).
 */
export function toLlmProviderError(error: unknown, context: ErrorContext): unknown {
  const { provider, apiKey, scope } = context;
  if (error instanceof LlmProviderError) return error;
  if (scope?.callerSignal?.aborted) return scope.callerSignal.reason;
  const make = (kind: LlmErrorKind, message: string, details: LlmProviderError['details'] = {}) =>
    new LlmProviderError(provider, kind, redactKey(message, apiKey), details);

  if (scope?.deadline?.aborted || error instanceof OpenAi.APIConnectionTimeoutError || error instanceof Anthropic.APIConnectionTimeoutError) {
    return make('timeout', `${provider} did not answer within ${scope?.timeoutMs === undefined ? 'the time limit' : `${scope.timeoutMs} ms`}`);
  }
  if (isAbort(error)) return error; // aborted by something else than the caller or the deadline: not ours to classify
  if (error instanceof OpenAi.APIConnectionError || error instanceof Anthropic.APIConnectionError) {
    const cause = error.cause instanceof Error ? `: ${shorten(redactKey(causeChain(error.cause), apiKey))}` : '';
    return make('connection', `${provider} could not be reached${cause}`);
  }
  if (error instanceof OpenAi.APIError || error instanceof Anthropic.APIError) return fromApiError(error, context);
  return error;
}

/** An answer with an error status, or an error event inside a stream (no status then). */
function fromApiError(error: SdkApiError, { provider, apiKey }: ErrorContext): LlmProviderError {
  const said = shorten(redactKey(providerMessageOf(error), apiKey));
  const { status } = error;
  const retryAfterMs = retryAfterMsOf(error.headers);
  const details = { ...(status === undefined ? {} : { status }), ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  const [kind, message] =
    status === undefined
      ? [kindOfErrorType(errorTypeOf(error)), `${provider} failed while answering: ${said}`]
      : [kindOfStatus(status), `${provider} answered ${status} ${statusText(status)}: ${said}`];
  return new LlmProviderError(provider, kind, redactKey(message, apiKey), details);
}

/** "fetch failed: connect ECONNREFUSED 127.0.0.1:9" rather than only "fetch failed". */
function causeChain(error: Error): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 4; depth++) {
    parts.push(current.message);
    current = current.cause;
  }
  return parts.join(': ');
}
