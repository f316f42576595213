import { createHash } from 'node:crypto';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Runs of whitespace collapsed to one space, trimmed. */
export function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

const CRC_TABLE = ((): Uint32Array => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, as zlib) of the UTF-8 bytes of `text`, unsigned. */
export function crc32(text: string): number {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(text, 'utf8')) {
    crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Base62 (digits, upper, lower) of a non-negative integer, left-padded with '0' to `width`. */
export function base62(value: number, width = 0): string {
  let n = Math.floor(value);
  let out = '';
  do {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  } while (n > 0);
  return out.padStart(width, '0');
}

/** Shannon entropy in bits per character. */
export function shannonEntropy(text: string): number {
  if (text.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  const length = [...text].length;
  let entropy = 0;
  for (const count of counts.values()) {
    const p = count / length;
    entropy -= p * Math.log2(p);
  }
  return entropy;
}

const placeholderWords =
  /example|sample|placeholder|changeme|change_me|change-me|dummy|redacted|your[_-]?|insert|replace|todo|fixme|notreal|not_real|secret_here|xxxx|\*\*\*\*|\.\.\.|<[^>]*>|\$\{|\{\{|%\(|%s|\$[A-Z_]{2,}/i;

/**
 * A value that stands for a secret without being one: a template variable, an env reference,
 * 'changeme', 'xxxx…', a documented example, or a single repeated character.
 */
export function isPlaceholder(value: string): boolean {
  if (placeholderWords.test(value)) return true;
  if (/^(.)\1+$/.test(value)) return true;
  // Mostly one character ('0000…1', 'XXXXXXXXXXXXXXXXXXXXXXXA').
  const counts = new Map<string, number>();
  for (const ch of value) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  return Math.max(...counts.values()) / value.length > 0.6;
}
