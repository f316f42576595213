/**
 * Every provider failure, whatever the client library threw, becomes one `LlmProviderError`
 * with a kind that decides whether trying again can help. Messages never carry the API key.
 */

export type LlmErrorKind =
  | 'rate_limited'
  | 'server_error'
  | 'timeout'
  | 'connection'
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'unsupported'
  | 'invalid_output';

const retryableKinds: ReadonlySet<LlmErrorKind> = new Set(['rate_limited', 'server_error', 'timeout', 'connection']);

export class LlmProviderError extends Error {
  constructor(
    readonly provider: string,
    readonly kind: LlmErrorKind,
    message: string,
    readonly details: { status?: number; retryAfterMs?: number } = {},
  ) {
    super(message);
    this.name = 'LlmProviderError';
  }

  /** 429, 5xx, timeouts and dropped connections may succeed later; 4xx and unsupported calls never will. */
  get retryable(): boolean {
    return retryableKinds.has(this.kind);
  }
}
