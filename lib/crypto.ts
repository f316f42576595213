import { createHash, randomBytes } from 'node:crypto';

/** A URL-safe random secret with 256 bits of entropy (tokens sent by mail or shown once). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * Digest under which high-entropy tokens are stored. A fast hash is right here: the tokens are
 * random, so there is nothing to brute-force, and lookups stay indexable.
 */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
