import { createHmac } from 'node:crypto';
import bcrypt from 'bcrypt';
import { ZxcvbnFactory, type FeedbackType } from '@zxcvbn-ts/core';
import * as zxcvbnCommon from '@zxcvbn-ts/language-common';
import * as zxcvbnEn from '@zxcvbn-ts/language-en';
import { randomToken } from '../lib/crypto';
import { AppError } from '../lib/errors';

export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 256;
/** zxcvbn's scale: 3 is "safely unguessable" against an online attack with throttling. */
const MIN_STRENGTH_SCORE = 3;

/**
 * bcrypt reads at most 72 bytes and stops at a NUL byte, so every password is first condensed to
 * a 44-character base64 HMAC-SHA256. The key is no secret: it keeps our pre-hashes apart from
 * plain SHA-256 digests leaked elsewhere, which could otherwise be tried against ours.
 */
function prehash(password: string): string {
  return createHmac('sha256', 'auditflow/password/v1').update(password, 'utf8').digest('base64');
}

export function hashPassword(password: string, cost: number): Promise<string> {
  return bcrypt.hash(prehash(password), cost);
}

export function verifyPassword(password: string, hash: string): Promise<boolean> {
  return bcrypt.compare(prehash(password), hash);
}

/** Whether a stored hash was made with another cost than the configured one (rehash on next sign-in). */
export function hashCostDiffers(hash: string, cost: number): boolean {
  return bcrypt.getRounds(hash) !== cost;
}

const dummyHashes = new Map<number, Promise<string>>();

/**
 * Spends the time a real check takes when there is no account to check against, so an unknown
 * email cannot be told from a wrong password by the response time. Always false.
 */
export async function verifyAgainstNothing(password: string, cost: number): Promise<false> {
  let dummy = dummyHashes.get(cost);
  if (!dummy) {
    dummy = hashPassword(randomToken(), cost);
    dummyHashes.set(cost, dummy);
  }
  await verifyPassword(password, await dummy);
  return false;
}

let strengthEstimator: ZxcvbnFactory | undefined;

function estimator(): ZxcvbnFactory {
  // Built on first use: ranking the dictionaries takes a moment and most processes never need it.
  strengthEstimator ??= new ZxcvbnFactory({
    dictionary: { ...zxcvbnCommon.dictionary, ...zxcvbnEn.dictionary },
    graphs: zxcvbnCommon.adjacencyGraphs,
    translations: zxcvbnEn.translations,
    // The estimate runs on the event loop of a public route: with the defaults a crafted
    // 256-character password takes seconds, with these at most about 0.1 s. Scoring only a prefix
    // errs towards "weak", never "strong"; common l33t spellings are still caught.
    maxLength: 100,
    l33tMaxSubstitutions: 6,
  });
  return strengthEstimator;
}

/** The words a guesser would try first for this person: whole inputs and their parts (email local part, domain, name words). */
function personalWords(inputs: readonly string[]): string[] {
  const words = new Set<string>();
  for (const input of inputs) {
    const lower = input.toLowerCase().trim();
    if (lower) words.add(lower);
    for (const part of lower.split(/[^\p{L}\p{N}]+/u)) if (part.length >= 3) words.add(part);
  }
  return [...words];
}

export class WeakPasswordError extends AppError {
  constructor(feedback: FeedbackType) {
    super(422, 'weak-password', feedback.warning ?? 'This password is too easy to guess.', {
      feedback: { warning: feedback.warning, suggestions: feedback.suggestions },
    });
  }
}

/** Refuses passwords a guesser would find quickly, counting the person's own email and name as known words. */
export function assertStrongPassword(password: string, personalInputs: readonly string[]): void {
  const result = estimator().check(password, personalWords(personalInputs));
  if (result.score < MIN_STRENGTH_SCORE) throw new WeakPasswordError(result.feedback);
}
