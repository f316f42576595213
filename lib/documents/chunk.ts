/**
 * Token-aware chunking of normalised document text (issue 7, criterion 4).
 *
 * The text is split at markdown headings into sections, and a chunk never spans two. Within a
 * section, paragraphs (blank-line separated) are packed greedily up to `targetTokens`; only a
 * paragraph that cannot fit in one chunk is split further: at sentence ends, then (for a
 * "sentence" still too large, such as a code block or a list) at line breaks, and only then
 * hard-cut at a token boundary. Every chunk after the first of a section starts up to
 * `overlapTokens` earlier, at a sentence or word boundary in the tail of its predecessor.
 *
 * Guarantees: `text === input.slice(start, end)`, starting and ending with non-whitespace;
 * offsets are JavaScript string indices (UTF-16 code units) and never fall inside a surrogate
 * pair; `tokens === countTokens(text)`; and the overlap counts toward the target, so
 * `tokens <= targetTokens` for every chunk.
 *
 * Tokens are OpenAI's cl100k_base, from js-tiktoken's rank table, but merged by our own byte-pair
 * encoder: js-tiktoken's merge is quadratic in the length of a pre-token with a string join per
 * pair (1 MB of Chinese took 46 s, one 4,096-letter word 5 s). Ours yields the same tokens in
 * O(n log n), checked against the library when the encoder is created and in the tests.
 */
import { TextEncoder } from 'node:util';
import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';

export interface Chunk {
  /** 0-based, in document order. */
  index: number;
  /** Exactly `input.slice(start, end)`. */
  text: string;
  /** Offsets into the input, in UTF-16 code units (JavaScript string indices). */
  start: number;
  end: number;
  /** The headings above this chunk, outermost first (e.g. `['Install', 'From source']`). */
  headingPath: string[];
  /** cl100k_base tokens in `text`. */
  tokens: number;
}

export interface ChunkOptions {
  /** Upper bound on every chunk's tokens, overlap included. At least 4 (one character can take 4 tokens). */
  targetTokens: number;
  /** Tokens of the previous chunk's tail repeated at the start of the next one in the same section; less than targetTokens. */
  overlapTokens: number;
}

/** A character can take up to 4 tokens (one per UTF-8 byte), so no smaller budget always fits one. */
const MIN_TOKENS_PER_PIECE = 4;

// ---------------------------------------------------------------------------------------------
// Tokens

/** js-tiktoken's rank table: a token's UTF-8 bytes joined with commas → the token's id. */
type RankTable = Map<string, number>;

interface Encoder {
  readonly tiktoken: Tiktoken;
  readonly ranks: RankTable;
  /** cl100k_base's pre-tokenizer (words, numbers, punctuation runs, whitespace). */
  readonly pretokenizer: RegExp;
  readonly utf8: TextEncoder;
  /** Tokens of short pre-tokens already seen: prose repeats its words, so most lookups hit. */
  readonly pieceCache: Map<string, readonly number[]>;
}

const PIECE_CACHE_MAX_ENTRIES = 50_000;
const PIECE_CACHE_MAX_LENGTH = 32;

/** Tokenised by js-tiktoken and by our merge when the encoder is created: they must agree. */
const ENCODER_PROBE =
  "Hello, world! It's 2024: naïve café — 東京都の天気は晴れ。 👩🏽‍💻 e\u0301 <|endoftext|>   \n\n\tconst x = f(1234567);";

let sharedEncoder: Encoder | undefined;

/** The cl100k_base encoder, built on first use (js-tiktoken parses its ranks: a few hundred milliseconds). */
function getEncoder(): Encoder {
  if (sharedEncoder) return sharedEncoder;
  const tiktoken = new Tiktoken(cl100kBase);
  // The rank table is a public field at runtime but left out of js-tiktoken's type declarations.
  const ranks: unknown = Reflect.get(tiktoken, 'rankMap');
  if (!isRankTable(ranks)) {
    throw new Error('js-tiktoken no longer exposes its rank table (rankMap): lib/documents/chunk.ts needs updating');
  }
  const encoder: Encoder = {
    tiktoken,
    ranks,
    pretokenizer: new RegExp(cl100kBase.pat_str, 'gu'),
    utf8: new TextEncoder(),
    pieceCache: new Map(),
  };
  if (encodeWith(encoder, ENCODER_PROBE).join() !== tiktoken.encode(ENCODER_PROBE, [], []).join()) {
    throw new Error('our byte-pair merge disagrees with js-tiktoken: lib/documents/chunk.ts needs updating');
  }
  sharedEncoder = encoder;
  return encoder;
}

function isRankTable(value: unknown): value is RankTable {
  // Byte 33 ("!") is cl100k_base's token 0.
  return value instanceof Map && value.get('33') === 0;
}

/** Number of cl100k_base tokens in `text` (special-token text such as `<|endoftext|>` counts as plain text). */
export function countTokens(text: string): number {
  return countWith(getEncoder(), text);
}

function countWith(encoder: Encoder, text: string): number {
  let count = 0;
  for (const match of text.matchAll(encoder.pretokenizer)) count += pieceTokens(encoder, match[0]).length;
  return count;
}

function encodeWith(encoder: Encoder, text: string): number[] {
  const tokens: number[] = [];
  for (const match of text.matchAll(encoder.pretokenizer)) {
    for (const token of pieceTokens(encoder, match[0])) tokens.push(token);
  }
  return tokens;
}

function pieceTokens(encoder: Encoder, piece: string): readonly number[] {
  const cached = encoder.pieceCache.get(piece);
  if (cached) return cached;
  const tokens = bytePairEncode(encoder.utf8.encode(piece), encoder.ranks);
  if (piece.length <= PIECE_CACHE_MAX_LENGTH) {
    if (encoder.pieceCache.size >= PIECE_CACHE_MAX_ENTRIES) encoder.pieceCache.clear();
    encoder.pieceCache.set(piece, tokens);
  }
  return tokens;
}

const NO_RANK = -1;

/**
 * Byte-pair encoding of one pre-token, as tiktoken does it: repeatedly merge the adjacent pair of
 * parts with the lowest rank, the leftmost on ties, until no pair has a rank. Parts are named by
 * their first byte and linked through `partEnd`/`partBefore`; candidate pairs wait in a min-heap
 * keyed by (rank, position), and an entry is stale once `pairRank` of its position has changed.
 */
function bytePairEncode(bytes: Uint8Array, ranks: RankTable): number[] {
  const length = bytes.length;
  const rankOf = (start: number, end: number) => ranks.get(rankKey(bytes, start, end));
  const whole = rankOf(0, length);
  if (whole !== undefined) return [whole];

  // Indices below stay within [0, length), so the non-null assertions on typed arrays hold.
  const partEnd = new Int32Array(length);
  const partBefore = new Int32Array(length);
  const pairRank = new Int32Array(length).fill(NO_RANK);
  const heap = new MinHeap();
  const rankPair = (start: number) => {
    const next = partEnd[start]!;
    const rank = next < length ? rankOf(start, partEnd[next]!) : undefined;
    pairRank[start] = rank ?? NO_RANK;
    if (rank !== undefined) heap.push(rank * length + start);
  };
  for (let i = 0; i < length; i++) {
    partEnd[i] = i + 1;
    partBefore[i] = i - 1;
  }
  for (let i = 0; i < length - 1; i++) rankPair(i);

  while (heap.size > 0) {
    const key = heap.pop();
    const start = key % length;
    if (pairRank[start] !== (key - start) / length) continue;
    const absorbed = partEnd[start]!;
    const end = partEnd[absorbed]!;
    partEnd[start] = end;
    pairRank[absorbed] = NO_RANK;
    if (end < length) partBefore[end] = start;
    rankPair(start);
    const before = partBefore[start]!;
    if (before >= 0) rankPair(before);
  }

  const tokens: number[] = [];
  for (let start = 0; start < length; start = partEnd[start]!) {
    const rank = rankOf(start, partEnd[start]!);
    // Every part is a single byte or a merged ranked pair, so it always has a rank.
    if (rank === undefined) throw new Error('byte-pair merge produced a part without a rank');
    tokens.push(rank);
  }
  return tokens;
}

const BYTE_STRINGS = Array.from({ length: 256 }, (_, byte) => String(byte));
const COMMA_BYTE_STRINGS = BYTE_STRINGS.map((byte) => `,${byte}`);

/** The rank table's key of `bytes[start, end)`, i.e. `bytes.subarray(start, end).join(',')` at twice the speed. */
function rankKey(bytes: Uint8Array, start: number, end: number): string {
  let key = BYTE_STRINGS[bytes[start]!]!;
  for (let i = start + 1; i < end; i++) key += COMMA_BYTE_STRINGS[bytes[i]!]!;
  return key;
}

/** A binary min-heap of numbers. */
class MinHeap {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  push(value: number): void {
    const items = this.items;
    let i = items.push(value) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= value) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = value;
  }

  /** Removes and returns the smallest value; the heap must not be empty. */
  pop(): number {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= items.length) break;
        const right = left + 1;
        const child = right < items.length && items[right]! < items[left]! ? right : left;
        if (items[child]! >= last) break;
        items[i] = items[child]!;
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// Chunking

interface Range {
  start: number;
  end: number;
}

interface Span extends Range {
  tokens: number;
}

/** A packing unit: a whole paragraph, or a sentence, line or hard-cut piece of an oversized one. */
interface Unit extends Span {
  /** The first piece of a paragraph too large for one chunk: it starts a new chunk. */
  opensSplitParagraph: boolean;
}

interface Section extends Range {
  headingPath: string[];
  /** The heading line(s); absent for text before the first heading. */
  heading?: Range;
}

interface Context {
  readonly text: string;
  readonly encoder: Encoder;
  readonly targetTokens: number;
  readonly overlapTokens: number;
  /** Budget of a hard-cut piece: leaves room for a full overlap when the target allows one. */
  readonly hardCutTokens: number;
}

/** Splits `text` into chunks; see the module comment for the rules and guarantees. Deterministic. */
export function chunkText(text: string, options: ChunkOptions): Chunk[] {
  validateOptions(options);
  if (!/\S/.test(text)) return [];
  const { targetTokens, overlapTokens } = options;
  const context: Context = {
    text,
    encoder: getEncoder(),
    targetTokens,
    overlapTokens,
    hardCutTokens: targetTokens - overlapTokens >= MIN_TOKENS_PER_PIECE ? targetTokens - overlapTokens : targetTokens,
  };
  const chunks: Chunk[] = [];
  for (const section of splitSections(text)) {
    const bodyStart = section.heading?.end ?? section.start;
    const paragraphs = paragraphRanges(text, bodyStart, section.end);
    if (section.heading) paragraphs.unshift(trimRange(text, section.heading.start, section.heading.end));
    for (const span of packSection(context, sectionUnits(context, paragraphs), bodyStart)) {
      chunks.push({
        index: chunks.length,
        text: text.slice(span.start, span.end),
        start: span.start,
        end: span.end,
        headingPath: [...section.headingPath],
        tokens: span.tokens,
      });
    }
  }
  return chunks;
}

function validateOptions({ targetTokens, overlapTokens }: ChunkOptions): void {
  if (!Number.isInteger(targetTokens) || targetTokens < MIN_TOKENS_PER_PIECE) {
    throw new RangeError(`targetTokens must be an integer of at least ${MIN_TOKENS_PER_PIECE}, got ${targetTokens}`);
  }
  if (!Number.isInteger(overlapTokens) || overlapTokens < 0 || overlapTokens >= targetTokens) {
    throw new RangeError(`overlapTokens must be an integer from 0 to targetTokens - 1, got ${overlapTokens}`);
  }
}

function tokensIn(context: Context, start: number, end: number): number {
  return countWith(context.encoder, context.text.slice(start, end));
}

// --- sections --------------------------------------------------------------------------------

interface Heading extends Range {
  level: number;
  title: string;
}

/** `# Title`, up to three spaces of indentation, an optional closing run of `#`. */
const ATX_HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
/** The underline of a setext heading: `===` (level 1) or `---` (level 2), three or more. */
const SETEXT_UNDERLINE = /^ {0,3}(={3,}|-{3,})[ \t]*$/;
/** Lines that are not a setext heading's text even above `---`: list items, quotes, tables, code. */
const NOT_SETEXT_TEXT = /^(?: {4}|\t| {0,3}(?:[-*+>|]|\d{1,9}[.)])(?:[ \t]|$))/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

function splitSections(text: string): Section[] {
  const headings = findHeadings(text);
  const sections: Section[] = [];
  const firstHeading = headings[0];
  if (!firstHeading || firstHeading.start > 0) sections.push({ start: 0, end: firstHeading?.start ?? text.length, headingPath: [] });
  const open: Heading[] = [];
  headings.forEach((heading, i) => {
    while ((open.at(-1)?.level ?? 0) >= heading.level) open.pop();
    open.push(heading);
    sections.push({
      start: heading.start,
      end: headings[i + 1]?.start ?? text.length,
      heading,
      headingPath: open.map((h) => h.title),
    });
  });
  return sections;
}

/** ATX headings, and setext headings whose text is a single line; none inside fenced code. */
function findHeadings(text: string): Heading[] {
  const headings: Heading[] = [];
  let fence: { marker: string; length: number } | undefined;
  // A setext heading's text must start a block: the document start, a blank line or a heading.
  let atBlockStart = true;
  for (let lineStart = 0; lineStart <= text.length; ) {
    const lineEnd = lineEndAt(text, lineStart);
    const line = lineText(text, lineStart, lineEnd);
    const nextLineStart = lineEnd + 1;
    const fenceMarker = FENCE.exec(line)?.[1];
    if (fence) {
      if (fenceMarker?.startsWith(fence.marker) && fenceMarker.length >= fence.length && line.trim() === fenceMarker) fence = undefined;
      atBlockStart = fence === undefined;
    } else if (fenceMarker && !(fenceMarker.startsWith('`') && line.trimStart().slice(fenceMarker.length).includes('`'))) {
      // (A backtick fence's info string has no backtick: ```code``` on one line is inline code.)
      fence = { marker: fenceMarker.charAt(0), length: fenceMarker.length };
    } else {
      const atx = ATX_HEADING.exec(line);
      if (atx) {
        headings.push({ start: lineStart, end: lineEnd, level: atx[1]?.length ?? 1, title: (atx[2] ?? '').trim() });
        atBlockStart = true;
      } else if (line.trim() === '') {
        atBlockStart = true;
      } else {
        if (atBlockStart && nextLineStart <= text.length && !NOT_SETEXT_TEXT.test(line)) {
          const underlineEnd = lineEndAt(text, nextLineStart);
          const underline = SETEXT_UNDERLINE.exec(lineText(text, nextLineStart, underlineEnd));
          if (underline) {
            headings.push({ start: lineStart, end: underlineEnd, level: underline[1]?.startsWith('=') ? 1 : 2, title: line.trim() });
            lineStart = underlineEnd + 1;
            continue; // atBlockStart stays true after a heading
          }
        }
        atBlockStart = false;
      }
    }
    lineStart = nextLineStart;
  }
  return headings;
}

function lineEndAt(text: string, lineStart: number): number {
  const newline = text.indexOf('\n', lineStart);
  return newline === -1 ? text.length : newline;
}

/** The line without its line break (a CR of a CRLF included). */
function lineText(text: string, lineStart: number, lineEnd: number): string {
  return text.slice(lineStart, text[lineEnd - 1] === '\r' ? lineEnd - 1 : lineEnd);
}

// --- paragraphs, sentences, lines, hard cuts ---------------------------------------------------

const BLANK_LINES = /\n[ \t\r]*\n/g;

function paragraphRanges(text: string, from: number, to: number): Range[] {
  return splitRanges(text, from, to, BLANK_LINES);
}

function lineRanges(text: string, from: number, to: number): Range[] {
  return splitRanges(text, from, to, /\n/g);
}

/** The trimmed, non-empty pieces of `text[from, to)` between matches of `separator` (a /g regex). */
function splitRanges(text: string, from: number, to: number, separator: RegExp): Range[] {
  const ranges: Range[] = [];
  let start = from;
  separator.lastIndex = from;
  for (;;) {
    const match = separator.exec(text);
    const pieceEnd = match && match.index < to ? match.index : to;
    const piece = trimRange(text, start, pieceEnd);
    if (piece.start < piece.end) ranges.push(piece);
    if (pieceEnd === to || !match) break;
    start = Math.min(to, match.index + match[0].length);
    separator.lastIndex = start;
  }
  return ranges;
}

/** Sentence ends: terminal punctuation (and closing quotes or brackets) before whitespace; CJK full stops anywhere. */
const SENTENCE_END = /[.!?]+["'”’)\]]*(?=\s)|[。！？]+["'”’」』）]*/gu;
/** Words whose trailing period rarely ends a sentence (single letters — initials, e.g., i.e. — are handled separately). */
const ABBREVIATIONS = new Set(['mr', 'mrs', 'ms', 'dr', 'prof', 'sr', 'jr', 'st', 'vs', 'cf', 'fig', 'no', 'inc', 'ltd', 'approx']);

function sentenceRanges(text: string, from: number, to: number): Range[] {
  const ranges: Range[] = [];
  let start = from;
  SENTENCE_END.lastIndex = from;
  for (let match = SENTENCE_END.exec(text); match && match.index < to; match = SENTENCE_END.exec(text)) {
    const end = Math.min(to, match.index + match[0].length);
    if (match[0] === '.' && isAbbreviationOrListMarker(text, start, match.index)) continue;
    const sentence = trimRange(text, start, end);
    if (sentence.start < sentence.end) ranges.push(sentence);
    start = end;
  }
  const last = trimRange(text, start, to);
  if (last.start < last.end) ranges.push(last);
  return ranges;
}

/** Whether the period at `dot` follows an initial, a known abbreviation, or a list number at a line start. */
function isAbbreviationOrListMarker(text: string, sentenceStart: number, dot: number): boolean {
  const lineStart = Math.max(sentenceStart, text.lastIndexOf('\n', dot - 1) + 1);
  const before = text.slice(Math.max(lineStart, dot - 12), dot);
  if (/^[ \t]*\d{1,3}$/.test(text.slice(lineStart, dot))) return true;
  const word = /\p{L}+$/u.exec(before)?.[0];
  if (word === undefined) return false;
  return word.length === 1 || ABBREVIATIONS.has(word.toLowerCase());
}

/** Cuts `text[from, to)` into pieces of at most `budget` tokens, each ending at a token boundary. */
function hardCut(context: Context, from: number, to: number, budget: number): Span[] {
  const { text, encoder } = context;
  const pieces: Span[] = [];
  let position = skipWhitespace(text, from, to);
  // Characters per token of the last piece (from about 0.5 for emoji to 4+ for English): sizes
  // the window encoded for the next cut, so a huge run is not re-encoded from each cut to its end.
  let charsPerToken = 4;
  while (position < to) {
    let windowEnd = position;
    let tokens: number[] = [];
    for (let width = Math.ceil(budget * charsPerToken * 1.25) + 16; windowEnd < to && tokens.length <= budget; width *= 2) {
      windowEnd = codePointBoundaryAfter(text, Math.min(to, position + width));
      tokens = encodeWith(encoder, text.slice(position, windowEnd));
    }
    if (tokens.length <= budget) {
      const rest = trimRange(text, position, to);
      pieces.push({ ...rest, tokens: tokensIn(context, rest.start, rest.end) });
      break;
    }
    const cut = cutAfterTokens(context, position, tokens, budget);
    const piece = trimRange(text, position, cut.end);
    const pieceTokens = piece.end === cut.end ? cut.tokens : tokensIn(context, piece.start, piece.end);
    pieces.push({ ...piece, tokens: pieceTokens });
    charsPerToken = (cut.end - position) / Math.max(1, pieceTokens);
    position = skipWhitespace(text, cut.end, to);
  }
  return pieces;
}

/**
 * The end of the longest prefix of `tokens` (the encoding of text from `position`) that decodes
 * to whole characters, is not inside a grapheme cluster when avoidable, and re-encodes to at most
 * `budget` tokens (a prefix cut mid-word can encode differently on its own).
 */
function cutAfterTokens(context: Context, position: number, tokens: number[], budget: number): Span {
  const { text, encoder } = context;
  for (let count = budget; count > 0; count--) {
    const decoded = encoder.tiktoken.decode(tokens.slice(0, count));
    // A prefix ending inside a multi-byte character decodes with U+FFFD and fails this test.
    if (decoded.length === 0 || !text.startsWith(decoded, position)) continue;
    const end = graphemeBoundaryAtOrBefore(text, position, position + decoded.length);
    const pieceTokens = tokensIn(context, position, end);
    if (pieceTokens <= budget) return { start: position, end, tokens: pieceTokens };
  }
  // Unreachable with budget >= MIN_TOKENS_PER_PIECE; still, always make progress by one character.
  const end = codePointBoundaryAfter(text, position + 1);
  return { start: position, end, tokens: tokensIn(context, position, end) };
}

let graphemeSegmenter: Intl.Segmenter | undefined;

/** The start of the grapheme cluster containing `cut` if that is after `floor`, else `cut` (a code point boundary). */
function graphemeBoundaryAtOrBefore(text: string, floor: number, cut: number): number {
  graphemeSegmenter ??= new Intl.Segmenter('en', { granularity: 'grapheme' });
  const from = codePointBoundaryAfter(text, Math.max(floor, cut - 32));
  let boundary = cut;
  for (const { index } of graphemeSegmenter.segment(text.slice(from, Math.min(text.length, cut + 32)))) {
    const position = from + index;
    if (position > cut) break;
    // The window's own start (at or after floor) is no evidence of a boundary.
    if (position > from) boundary = position;
  }
  return boundary;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** `index`, or `index + 1` when `index` falls between the two halves of a surrogate pair. */
function codePointBoundaryAfter(text: string, index: number): number {
  return index > 0 && index < text.length && isLowSurrogate(text.charCodeAt(index)) && isHighSurrogate(text.charCodeAt(index - 1))
    ? index + 1
    : index;
}

function isWhitespace(text: string, index: number): boolean {
  const char = text[index];
  return char !== undefined && /\s/.test(char);
}

function skipWhitespace(text: string, from: number, to: number): number {
  let index = from;
  while (index < to && isWhitespace(text, index)) index++;
  return index;
}

function trimRange(text: string, from: number, to: number): Range {
  const start = skipWhitespace(text, from, to);
  let end = to;
  while (end > start && isWhitespace(text, end - 1)) end--;
  return { start, end };
}

// --- units and packing -----------------------------------------------------------------------

/** Paragraphs that fit as they are; larger ones as sentences, lines, then hard-cut pieces. */
function sectionUnits(context: Context, paragraphs: Range[]): Unit[] {
  const units: Unit[] = [];
  for (const paragraph of paragraphs) {
    const tokens = tokensIn(context, paragraph.start, paragraph.end);
    if (tokens <= context.targetTokens) {
      units.push({ ...paragraph, tokens, opensSplitParagraph: false });
      continue;
    }
    splitOversized(context, { ...paragraph, tokens }).forEach((piece, i) => units.push({ ...piece, opensSplitParagraph: i === 0 }));
  }
  return units;
}

function splitOversized(context: Context, paragraph: Span): Span[] {
  const { text, targetTokens } = context;
  const pieces: Span[] = [];
  const sentences = sentenceRanges(text, paragraph.start, paragraph.end);
  for (const sentence of sentences) {
    // A range equal to its parent (one sentence, one line) reuses the parent's count.
    const sentenceTokens = sentences.length === 1 ? paragraph.tokens : tokensIn(context, sentence.start, sentence.end);
    if (sentenceTokens <= targetTokens) {
      pieces.push({ ...sentence, tokens: sentenceTokens });
      continue;
    }
    const lines = lineRanges(text, sentence.start, sentence.end);
    for (const line of lines) {
      const lineTokens = lines.length === 1 ? sentenceTokens : tokensIn(context, line.start, line.end);
      if (lineTokens <= targetTokens) pieces.push({ ...line, tokens: lineTokens });
      else for (const piece of hardCut(context, line.start, line.end, context.hardCutTokens)) pieces.push(piece);
    }
  }
  return pieces;
}

/**
 * Greedy packing of a section's units into chunks. The units' counts are summed with the counts
 * of the whitespace between them, which estimates the count of the joined text from above in
 * practice (a forced pre-token boundary rarely saves a token); each chunk is then counted exactly
 * and, in the rare case it is over the target, loses its overlap and then trailing units.
 */
function packSection(context: Context, units: Unit[], bodyStart: number): Span[] {
  const { targetTokens } = context;
  const chunks: Span[] = [];
  let next = 0;
  while (next < units.length) {
    const first = units[next]!;
    const previous = chunks.at(-1);
    let start = first.start;
    let estimate = first.tokens;
    if (previous && context.overlapTokens > 0) {
      const gapTokens = tokensIn(context, previous.end, first.start);
      const room = Math.min(context.overlapTokens, targetTokens - first.tokens - gapTokens);
      const overlap = room > 0 ? findOverlap(context, previous, Math.max(previous.start + 1, bodyStart), room) : undefined;
      if (overlap) {
        start = overlap.start;
        estimate += overlap.tokens + gapTokens;
      }
    }
    let last = next;
    while (last + 1 < units.length) {
      const candidate = units[last + 1]!;
      if (candidate.opensSplitParagraph) break;
      const cost = tokensIn(context, units[last]!.end, candidate.start) + candidate.tokens;
      if (estimate + cost > targetTokens) break;
      estimate += cost;
      last++;
    }
    let end = units[last]!.end;
    let tokens = start === first.start && last === next ? first.tokens : tokensIn(context, start, end);
    while (tokens > targetTokens) {
      if (start !== first.start) start = first.start;
      else if (last > next) end = units[--last]!.end;
      else break; // a single unit's count is exact and within the target
      tokens = tokensIn(context, start, end);
    }
    chunks.push({ start, end, tokens });
    next = last + 1;
  }
  return chunks;
}

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u;
const SENTENCE_TAIL = /(?:[.!?]+["'”’)\]]*|[。！？]["'”’」』）]*)$/u;

/**
 * Where the next chunk starts inside `previous`: the earliest sentence start (a line start, or
 * after terminal punctuation) whose text up to `previous.end` has at most `maxTokens` tokens,
 * when that covers at least half of `maxTokens`; otherwise the earliest such word start (after
 * whitespace, or between CJK characters, which are not separated by spaces). Never before `floor`.
 */
function findOverlap(context: Context, previous: Span, floor: number, maxTokens: number): Overlap | undefined {
  const { text } = context;
  // Look back 1.5 times as far as the previous chunk's characters per token suggest.
  const charsPerToken = (previous.end - previous.start) / Math.max(1, previous.tokens);
  const lookBack = Math.ceil(maxTokens * charsPerToken * 1.5) + 16;
  const windowStart = codePointBoundaryAfter(text, Math.max(floor, previous.end - lookBack));
  const sentenceStarts: number[] = [];
  const wordStarts: number[] = [];
  for (let i = windowStart; i < previous.end; i++) {
    if (isWhitespace(text, i) || isLowSurrogate(text.charCodeAt(i))) continue;
    const afterWhitespace = isWhitespace(text, i - 1);
    const nextToCjk = CJK.test(text.slice(Math.max(0, i - 2), i)) || CJK.test(String.fromCodePoint(text.codePointAt(i) ?? 0));
    const sentenceStart = isSentenceStart(text, i);
    if (sentenceStart && (afterWhitespace || nextToCjk)) sentenceStarts.push(i);
    if (afterWhitespace || nextToCjk) wordStarts.push(i);
  }
  const tokensFrom = (start: number) => tokensIn(context, start, previous.end);
  const sentence = earliestFitting(sentenceStarts, tokensFrom, maxTokens);
  if (sentence && sentence.tokens * 2 >= maxTokens) return sentence;
  return earliestFitting(wordStarts, tokensFrom, maxTokens) ?? sentence;
}

/** Whether `index` follows a line break or terminal punctuation (across any whitespace). */
function isSentenceStart(text: string, index: number): boolean {
  let before = index - 1;
  for (; before >= 0 && isWhitespace(text, before); before--) if (text[before] === '\n') return true;
  return before < 0 || SENTENCE_TAIL.test(text.slice(Math.max(0, before - 7), before + 1));
}

/** Where an overlap starts, and its tokens (up to the end of the previous chunk). */
interface Overlap {
  start: number;
  tokens: number;
}

/** The earliest of the ascending `starts` whose suffix fits `maxTokens`, by binary search (counts shrink as starts grow). */
function earliestFitting(starts: number[], tokensFrom: (start: number) => number, maxTokens: number): Overlap | undefined {
  let low = 0;
  let high = starts.length;
  let best: Overlap | undefined;
  while (low < high) {
    const middle = (low + high) >> 1;
    const start = starts[middle]!;
    const tokens = tokensFrom(start);
    if (tokens <= maxTokens) {
      best = { start, tokens };
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return best;
}
