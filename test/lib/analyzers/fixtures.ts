/**
 * Builders for fake credentials used by the analyzer tests. Nothing here is a real key: values
 * come from a seeded generator at run time and every token is assembled from parts, so this
 * source file holds no string that a secret scanner would take for a leaked credential.
 */
import { base62, crc32 } from '../../../lib/analyzers/util';

export const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
export const LOWER = 'abcdefghijklmnopqrstuvwxyz';
export const DIGITS = '0123456789';
export const ALNUM = UPPER + LOWER + DIGITS;
export const BASE64 = ALNUM + '+/';
export const BASE32 = UPPER + '234567';

/** Deterministic pseudo-random string (a linear congruential generator; not for real secrets). */
export function fakeRandom(seed: number, length: number, alphabet = ALNUM): string {
  let state = (seed * 2654435761) >>> 0 || 1;
  let out = '';
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out += alphabet[(state >>> 8) % alphabet.length];
  }
  return out;
}

export const join = (...parts: string[]): string => parts.join('');

/** A classic GitHub token with a valid CRC32 checksum over its 30 random characters. */
export function fakeGithubToken(seed: number, kind: 'p' | 'o' | 'u' | 's' | 'r' = 'p'): string {
  const random = fakeRandom(seed, 30);
  return join('gh', kind, '_', random, base62(crc32(random), 6));
}

/** The same token with its last checksum character changed, so the checksum no longer matches. */
export function withBrokenChecksum(token: string): string {
  const last = token.slice(-1);
  return token.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

export const fakeAwsAccessKeyId = (seed: number): string => join('AK', 'IA', fakeRandom(seed, 16, BASE32));
export const fakeAwsSecretKey = (seed: number): string => fakeRandom(seed, 40, BASE64);

/** A PEM block of the given label ('RSA PRIVATE KEY', 'PUBLIC KEY') with a random body. */
export function fakePem(label: string, seed: number, lines = 6): string {
  const body = Array.from({ length: lines }, (_, i) => fakeRandom(seed + i, 64, BASE64)).join('\n');
  return join('-----BEGIN ', label, '-----\n', body, '\n-----END ', label, '-----');
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT-shaped string with the given header; the signature is random characters. */
export function fakeJwt(header: Record<string, unknown>, seed: number): string {
  return [b64url(header), b64url({ sub: 'user-1', iat: 1700000000 }), fakeRandom(seed, 43, ALNUM + '-_')].join('.');
}
