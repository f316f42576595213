/**
 * Every problem type the API answers with. `type` in a problem+json body is `/problems/<slug>`,
 * and `GET /problems/<slug>` serves this description.
 */
export const problemTypes: Record<string, { title: string; description: string }> = {
  'validation-error': { title: 'Validation failed', description: 'The request body, query or path did not match the schema; `errors` lists each field and what is wrong with it.' },
  'malformed-json': { title: 'Malformed JSON', description: 'The request body is not valid JSON.' },
  'unsupported-media-type': {
    title: 'Unsupported media type',
    description:
      'The body is of a media type the route does not take: routes accept `application/json` bodies, and routes that take uploads also `multipart/form-data`, whose file part must be of one of the media types the OpenAPI document lists for it.',
  },
  'payload-too-large': { title: 'Payload too large', description: 'The request body, or an uploaded file, exceeds the configured size limit (`limit`, in bytes: `BODY_LIMIT_BYTES` for JSON, `UPLOAD_MAX_BYTES` for uploads).' },
  'malformed-multipart': { title: 'Malformed multipart body', description: 'The `multipart/form-data` body could not be parsed: no boundary, a malformed part header, or a form that ends early.' },
  unauthorized: { title: 'Unauthorized', description: 'No valid credentials: the bearer token is missing, malformed, expired, revoked, or for a removed member.' },
  'invalid-credentials': { title: 'Invalid credentials', description: 'The email and password do not match an account.' },
  forbidden: { title: 'Forbidden', description: 'The caller is authenticated but its role does not grant this action.' },
  'not-found': { title: 'Not found', description: 'No such resource in your tenant (resources of other tenants are reported as not found).' },
  'route-not-found': { title: 'Route not found', description: 'No route matches this path.' },
  'method-not-allowed': { title: 'Method not allowed', description: 'The route exists but does not accept this HTTP method; `Allow` lists the ones it does.' },
  conflict: { title: 'Conflict', description: 'The request conflicts with the current state (a duplicate name, the last admin leaving, an already used token).' },
  'registration-closed': { title: 'Registration closed', description: 'Open registration is disabled on this installation; ask an admin for an invitation.' },
  'weak-password': { title: 'Weak password', description: 'The password is too easy to guess; `feedback` says why.' },
  'invalid-token': { title: 'Invalid or expired token', description: 'The emailed token (invitation, verification, password reset) is unknown, used or expired.' },
  'idempotency-key-reused': { title: 'Idempotency-Key reused', description: 'The Idempotency-Key was already used, within 24 hours, for a different request on this route; use a new key for a new request.' },
  'secret-in-use': { title: 'Secret in use', description: 'Records still reference the secret (`references` lists them); remove the references, or delete with `?force=true`.' },
  'unresolvable-secret-reference': { title: 'Unresolvable secret reference', description: 'A `secret://<name>` reference is malformed (`reason: malformed`) or names no secret of the tenant (`reason: missing`).' },
  'invalid-llm-settings': { title: 'Invalid LLM settings', description: 'The settings name a provider that cannot do what its role needs, leave out an API key the provider requires, or point at an endpoint host the operator has not allowed (`LLM_ALLOWED_HOSTS`); `errors` names the field.' },
  'llm-budget-exhausted': { title: 'LLM budget exhausted', description: "The tenant's monthly LLM budget is spent (`budgetUsd`, `spentUsd`): work that calls models is refused until `resetsAt` or until an admin raises the budget." },
  'llm-provider-error': { title: 'LLM provider error', description: 'The model provider (and the fallback, if any) failed to answer a call made while you waited; `retryable` says whether trying again may help.' },
  'unsafe-repository-url': {
    title: 'Unsafe repository URL',
    description:
      'The repository to scan was refused before anything connected to it; `code` says why: `credentials-in-url` (tokens belong in the vault, referenced from the project settings), `scheme-not-allowed` (only https, http and file URLs; no `ext::`-style remote helpers or scp-like paths), `host-not-allowed` (not in `SCAN_ALLOWED_HOSTS`), `non-public-address` (the host resolves to a loopback, private, link-local or otherwise non-public address), `unresolvable`, `option-injection` (starts with `-`), `path-outside-roots` (a file URL outside `SCAN_FILE_ROOTS`) or `malformed`.',
  },
  'unsafe-document-url': {
    title: 'Unsafe document URL',
    description:
      'A document URL to ingest was refused before anything connected to it; `code` says why: `credentials-in-url`, `scheme-not-allowed` (only https and http), `host-not-allowed` (not in `INGEST_ALLOWED_HOSTS`), `non-public-address` (the host resolves to a loopback, private, link-local or otherwise non-public address), `unresolvable` or `malformed`.',
  },
  'archive-rejected': {
    title: 'Archive rejected',
    description:
      'The uploaded archive is not a ZIP we extract; `code` says why (`path-traversal`, `absolute-path`, `drive-letter`, `symlink`, `hardlink`, `special-file`, `duplicate-entry`, `ratio` (compression ratio above `ZIP_MAX_COMPRESSION_RATIO`), `corrupt` (not a ZIP, or a damaged one), `encrypted`, `unsupported-compression`) and `entry` names the entry at fault, when there is one.',
  },
  'archive-too-large': {
    title: 'Archive too large',
    description: 'The uploaded archive declares more entries (`code: too-many-entries`, limit `ZIP_MAX_ENTRIES`) or more inflated bytes (`code: too-large`, limit `ZIP_MAX_INFLATED_BYTES`) than this installation extracts.',
  },
  'too-many-requests': { title: 'Too many requests', description: 'Too many failed attempts; retry after `Retry-After` seconds.' },
  'service-unavailable': { title: 'Service unavailable', description: 'A dependency (database, Temporal) is not reachable.' },
  'internal-error': { title: 'Internal error', description: 'An unexpected error; the request id identifies it in the server logs.' },
};
