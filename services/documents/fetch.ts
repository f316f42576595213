import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { checkRemoteUrl, UnsafeSourceError, type CheckedSource, type SourceNames, type UnsafeSourceCode } from '../../lib/net-guard';

/**
 * Fetching documents named by URL (issue 7, criterion 1), with the rules of repository fetches:
 * http(s) only, the host allowlisted (INGEST_ALLOWED_HOSTS) and resolved once, its address pinned
 * for the connection (a second DNS answer cannot differ), every redirect checked the same way
 * before it is followed, the body counted against a size cap while it arrives, and a deadline.
 */

export type DocumentFetchErrorCode = 'http-status' | 'too-large' | 'too-many-redirects' | 'timeout' | 'network';

/** The document could not be fetched; `retryable` says whether trying again later may help. */
export class DocumentFetchError extends Error {
  constructor(
    readonly code: DocumentFetchErrorCode,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'DocumentFetchError';
  }
}

export interface FetchPolicy {
  allowedHosts: string[];
  maxBytes: number;
  timeoutMs: number;
  maxRedirects?: number;
}

export interface FetchedDocument {
  bytes: Buffer;
  /** The Content-Type the server declared, if any. */
  mediaType: string | null;
  /** Where the document was finally read, after redirects. */
  url: string;
}

const DEFAULT_MAX_REDIRECTS = 5;

/** A document URL refused by the source rules (a problem of its own: `unsafe-document-url`, naming INGEST_ALLOWED_HOSTS). */
export class UnsafeDocumentUrlError extends UnsafeSourceError {
  constructor(code: UnsafeSourceCode, message: string) {
    super(code, message);
    this.name = 'UnsafeDocumentUrlError';
  }
}

const documentNames: SourceNames = {
  url: 'document URL',
  allowlist: 'INGEST_ALLOWED_HOSTS',
  credentials: 'documents are fetched without credentials, so remove them from the URL',
};

/**
 * Refuses, before anything connects, a URL the workers would refuse: any scheme but https and
 * http (documents come from the network or an upload, never from a worker's disk), credentials,
 * hosts not allowlisted or resolving to non-public addresses. Returns the checked URL and the address to pin.
 */
export async function checkDocumentUrl(raw: string, allowedHosts: string[]) {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(raw)?.[1]?.toLowerCase();
  if (scheme !== 'https' && scheme !== 'http') {
    throw new UnsafeDocumentUrlError('scheme-not-allowed', `Documents are fetched from https:// (or http://) URLs only${scheme ? `, not ${scheme}:` : ''}.`);
  }
  let checked: CheckedSource;
  try {
    checked = await checkRemoteUrl(raw, { allowedHosts, fileRoots: [], names: documentNames });
  } catch (err) {
    throw err instanceof UnsafeSourceError ? new UnsafeDocumentUrlError(err.code, err.message) : err;
  }
  // Only http(s) gets this far, so the source is remote: this narrows the type.
  if (checked.kind !== 'remote') throw new UnsafeDocumentUrlError('scheme-not-allowed', 'Documents are fetched over https or http only.');
  return checked;
}

/** A DNS lookup that answers the checked address whatever it is asked: the connection goes where the check looked. */
function pinnedLookup(address: string): LookupFunction {
  const family = address.includes(':') ? 6 : 4;
  return ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (options?.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  }) as LookupFunction;
}

type Response = { kind: 'redirect'; location: string } | { kind: 'body'; bytes: Buffer; mediaType: string | null };

function requestOnce(url: URL, address: string, policy: FetchPolicy, signal: AbortSignal): Promise<Response> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<Response>((resolve, reject) => {
    const req = client.request(url, { method: 'GET', lookup: pinnedLookup(address), signal, headers: { accept: '*/*', 'accept-encoding': 'identity', 'user-agent': 'AuditFlow-ingest' } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        resolve({ kind: 'redirect', location: res.headers.location });
        return;
      }
      if (status < 200 || status >= 300) {
        res.resume();
        // A server error or throttling may pass; a 4xx is the same tomorrow.
        reject(new DocumentFetchError('http-status', `${url.href} answered HTTP ${status}.`, status >= 500 || status === 429));
        return;
      }
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (declared > policy.maxBytes) {
        res.destroy();
        reject(tooLarge(url, policy.maxBytes));
        return;
      }
      const parts: Buffer[] = [];
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > policy.maxBytes) {
          res.destroy();
          reject(tooLarge(url, policy.maxBytes));
          return;
        }
        parts.push(chunk);
      });
      res.on('end', () => resolve({ kind: 'body', bytes: Buffer.concat(parts), mediaType: res.headers['content-type'] ?? null }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const tooLarge = (url: URL, maxBytes: number) => new DocumentFetchError('too-large', `${url.href} is larger than ${maxBytes} bytes (INGEST_MAX_DOCUMENT_BYTES).`, false);

/**
 * Fetches one document. Rejects with `UnsafeDocumentUrlError` for a refused URL (or redirect),
 * `DocumentFetchError` for what went wrong on the way, and `signal.reason` when `signal` aborts.
 */
export async function fetchDocument(raw: string, policy: FetchPolicy, signal?: AbortSignal): Promise<FetchedDocument> {
  const deadline = AbortSignal.timeout(policy.timeoutMs);
  const combined = signal ? AbortSignal.any([signal, deadline]) : deadline;
  let current = raw;
  for (let redirects = 0; ; redirects++) {
    const checked = await checkDocumentUrl(current, policy.allowedHosts);
    let response: Response;
    try {
      response = await requestOnce(checked.url, checked.address, policy, combined);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (deadline.aborted) throw new DocumentFetchError('timeout', `${checked.url.href} did not answer within ${policy.timeoutMs} ms.`, true);
      if (err instanceof DocumentFetchError) throw err;
      throw new DocumentFetchError('network', `${checked.url.href} could not be read: ${(err as Error).message}`, true);
    }
    if (response.kind === 'body') return { bytes: response.bytes, mediaType: response.mediaType, url: checked.url.href };
    if (redirects >= (policy.maxRedirects ?? DEFAULT_MAX_REDIRECTS)) {
      throw new DocumentFetchError('too-many-redirects', `${raw} redirected more than ${policy.maxRedirects ?? DEFAULT_MAX_REDIRECTS} times.`, false);
    }
    current = new URL(response.location, checked.url).href;
  }
}
