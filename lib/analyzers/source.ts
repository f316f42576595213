/**
 * Per-file structure the rules share: which characters are code, comment or string (a cheap,
 * linear lexer per language family), line starts, and matching parentheses. Each is computed
 * lazily once per SourceFile object and memoised in a WeakMap, so rules stay self-contained
 * (`rule.find(file)` works on its own) without each of them re-lexing a large file.
 *
 * Long scans use native regex/indexOf searches that jump from token to token instead of JS loops
 * over every character: linear, and immune to JIT deoptimisation storms on odd inputs.
 *
 * The lexer is deliberately approximate: it knows comments and quoted strings, not regex
 * literals, heredocs or nested template expressions. Single- and double-quoted strings end at a
 * newline, so a mis-lexed quote (an apostrophe in a regex literal or in HTML text) confuses at
 * most the rest of its line.
 */
import type { Language, RuleMatch, SourceFile } from './types';

export const CODE = 0;
export const COMMENT = 1;
export const STRING = 2;

interface Syntax {
  /** `//` line comments. */
  slashComments: boolean;
  /** `/* … *\/` block comments. */
  blockComments: boolean;
  /** `#` line comments; 'word' means only at the start of a word (shell: `$#`, `a#b` are not comments). */
  hashComments: false | 'anywhere' | 'word';
  /** PHP 8 attributes `#[…]` are code, not comments. */
  hashBracketIsCode: boolean;
  /** Ruby `=begin … =end` at line starts. */
  rubyBlockComments: boolean;
  /** Quote characters opening strings that end at a newline. */
  lineQuotes: string;
  /** Quote characters opening strings that may span lines (template literals, Go raw strings). */
  multilineQuotes: string;
  /** Python triple-quoted strings. */
  tripleQuotes: boolean;
  /** Quote characters whose strings have no backslash escapes (Go raw strings). */
  rawQuotes: string;
}

const base: Syntax = {
  slashComments: false,
  blockComments: false,
  hashComments: false,
  hashBracketIsCode: false,
  rubyBlockComments: false,
  lineQuotes: '',
  multilineQuotes: '',
  tripleQuotes: false,
  rawQuotes: '',
};

const cLike: Syntax = { ...base, slashComments: true, blockComments: true, lineQuotes: `'"` };

const syntaxes: Partial<Record<Language, Syntax>> = {
  javascript: { ...cLike, multilineQuotes: '`' },
  typescript: { ...cLike, multilineQuotes: '`' },
  go: { ...cLike, multilineQuotes: '`', rawQuotes: '`' },
  java: cLike,
  c: cLike,
  cpp: cLike,
  csharp: cLike,
  kotlin: cLike,
  rust: { ...cLike, lineQuotes: '"' },
  php: { ...cLike, hashComments: 'anywhere', hashBracketIsCode: true, lineQuotes: `'"\`` },
  python: { ...base, hashComments: 'anywhere', lineQuotes: `'"`, tripleQuotes: true },
  ruby: { ...base, hashComments: 'anywhere', rubyBlockComments: true, lineQuotes: `'"\`` },
  shell: { ...base, hashComments: 'word', lineQuotes: `'"` },
  yaml: { ...base, hashComments: 'word', lineQuotes: `'"` },
  dockerfile: { ...base, hashComments: 'word', lineQuotes: `'"` },
  terraform: { ...cLike, hashComments: 'anywhere', lineQuotes: '"' },
};

const OPEN_BRACKET = 91;

function isSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13 || code === 12 || code === 11;
}

function escapeForClass(chars: string): string {
  return chars.replace(/[\\\]^-]/g, '\\$&');
}

/** Everything that can open a comment or a string in `syntax`. */
function tokenPattern(syntax: Syntax): RegExp | null {
  const parts: string[] = [];
  if (syntax.slashComments) parts.push('//');
  if (syntax.blockComments) parts.push('/\\*');
  if (syntax.hashComments !== false) parts.push('#');
  if (syntax.rubyBlockComments) parts.push('^=begin(?!\\w)');
  if (syntax.tripleQuotes) parts.push(`'''|"""`);
  const quotes = syntax.lineQuotes + syntax.multilineQuotes;
  if (quotes !== '') parts.push(`[${escapeForClass(quotes)}]`);
  return parts.length === 0 ? null : new RegExp(parts.join('|'), 'gm');
}

const tokenPatterns = new Map<Syntax, RegExp | null>();
const stopPatterns = new Map<string, RegExp>();

/** Index just past the closing `quote` of a string whose content starts at `from`. */
function stringEnd(text: string, from: number, quote: string, multiline: boolean, escapes: boolean): number {
  const key = `${quote}${multiline ? 'm' : ''}${escapes ? 'e' : ''}`;
  let stop = stopPatterns.get(key);
  if (stop === undefined) {
    stop = new RegExp(`[${escapeForClass(quote + (escapes ? '\\' : '') + (multiline ? '' : '\n'))}]`, 'g');
    stopPatterns.set(key, stop);
  }
  stop.lastIndex = from;
  for (;;) {
    const m = stop.exec(text);
    if (m === null) return text.length;
    if (m[0] === '\\') {
      stop.lastIndex = m.index + 2;
      continue;
    }
    return m[0] === '\n' ? m.index : m.index + 1;
  }
}

/** Index just past the closing triple quote of a Python string whose content starts at `from`. */
function tripleStringEnd(text: string, from: number, delimiter: string): number {
  let search = from;
  for (;;) {
    const close = text.indexOf(delimiter, search);
    if (close === -1) return text.length;
    let backslashes = 0;
    while (close - backslashes - 1 >= from && text.charCodeAt(close - backslashes - 1) === 92) backslashes++;
    if (backslashes % 2 === 0) return close + delimiter.length;
    search = close + 1;
  }
}

function lineEnd(text: string, from: number): number {
  const i = text.indexOf('\n', from);
  return i === -1 ? text.length : i;
}

/**
 * One byte per UTF-16 unit: CODE, COMMENT or STRING. An opening quote is CODE, the string's
 * content and closing quote are STRING, so a match starting at an opening backtick (a Ruby
 * command) still counts as code.
 */
function lex(text: string, syntax: Syntax): Uint8Array {
  const mask = new Uint8Array(text.length);
  if (!tokenPatterns.has(syntax)) tokenPatterns.set(syntax, tokenPattern(syntax));
  const pattern = tokenPatterns.get(syntax);
  if (pattern === undefined || pattern === null) return mask;
  const token = new RegExp(pattern);
  for (let m = token.exec(text); m !== null; m = token.exec(text)) {
    const i = m.index;
    const tok = m[0];
    let end: number;
    if (tok === '//' || tok === '#') {
      if (tok === '#') {
        if (syntax.hashBracketIsCode && text.charCodeAt(i + 1) === OPEN_BRACKET) continue;
        if (syntax.hashComments === 'word' && i > 0 && !isSpace(text.charCodeAt(i - 1))) continue;
      }
      end = lineEnd(text, i);
      mask.fill(COMMENT, i, end);
    } else if (tok === '/*') {
      const close = text.indexOf('*/', i + 2);
      end = close === -1 ? text.length : close + 2;
      mask.fill(COMMENT, i, end);
    } else if (tok.startsWith('=begin')) {
      const close = text.indexOf('\n=end', i);
      end = close === -1 ? text.length : lineEnd(text, close + 1);
      mask.fill(COMMENT, i, end);
    } else if (tok.length === 3) {
      end = tripleStringEnd(text, i + 3, tok);
      mask.fill(STRING, i + 3, end);
    } else {
      end = stringEnd(text, i + 1, tok, syntax.multilineQuotes.includes(tok), !syntax.rawQuotes.includes(tok));
      mask.fill(STRING, i + 1, end);
    }
    token.lastIndex = Math.max(end, i + 1);
  }
  return mask;
}

interface FileInfo {
  text: string;
  mask?: Uint8Array | null;
  lineStarts?: number[];
  closeParen?: Int32Array;
}

const cache = new WeakMap<SourceFile, FileInfo>();

function info(file: SourceFile): FileInfo {
  let entry = cache.get(file);
  if (entry === undefined || entry.text !== file.text) {
    entry = { text: file.text };
    cache.set(file, entry);
  }
  return entry;
}

/** CODE/COMMENT/STRING per character, or null for languages without a lexer (json, text, other). */
export function regionMask(file: SourceFile): Uint8Array | null {
  const entry = info(file);
  if (entry.mask === undefined) {
    const syntax = syntaxes[file.language];
    entry.mask = syntax === undefined ? null : lex(file.text, syntax);
  }
  return entry.mask;
}

/** Whether `index` is in ordinary code (not a comment or string); true without a lexer. */
export function isCode(file: SourceFile, index: number): boolean {
  const mask = regionMask(file);
  return mask === null || mask[index] === CODE;
}

/** Whether `index` is inside a comment; for languages without a lexer, always false. */
export function isComment(file: SourceFile, index: number): boolean {
  const mask = regionMask(file);
  return mask !== null && mask[index] === COMMENT;
}

/** Start index of every line (line 1 starts at 0). */
export function lineStarts(file: SourceFile): number[] {
  const entry = info(file);
  if (entry.lineStarts === undefined) {
    const starts = [0];
    const text = file.text;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
    entry.lineStarts = starts;
  }
  return entry.lineStarts;
}

/** 1-based line number of `index`. */
export function lineNumberAt(file: SourceFile, index: number): number {
  const starts = lineStarts(file);
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((starts[mid] ?? 0) <= index) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

/** `[start, end)` of 1-based line `line`, without its newline. */
export function lineBounds(file: SourceFile, line: number): { start: number; end: number } {
  const starts = lineStarts(file);
  const start = starts[line - 1] ?? file.text.length;
  const nextStart = starts[line];
  let end = nextStart === undefined ? file.text.length : nextStart - 1;
  if (end > start && file.text.charCodeAt(end - 1) === 13) end--;
  return { start, end };
}

/**
 * The text of the lines around `[start, end)`: from the start of the first line to the end of
 * the line `linesAfter` lines below the last, each side capped at `maxChars` so that a huge
 * single-line file keeps this O(1) per match.
 */
export function contextAround(file: SourceFile, start: number, end: number, linesAfter = 0, maxChars = 300): string {
  const first = lineNumberAt(file, start);
  const last = Math.min(lineNumberAt(file, Math.max(start, end - 1)) + linesAfter, lineStarts(file).length);
  const from = Math.max(lineBounds(file, first).start, start - maxChars);
  const to = Math.min(lineBounds(file, last).end, end + maxChars * (linesAfter + 1));
  return file.text.slice(from, Math.max(to, end));
}

/** Index of the first non-blank character of the line holding `index` (capped `maxChars` back). */
export function statementStart(file: SourceFile, index: number, maxChars = 200): number {
  const { start } = lineBounds(file, lineNumberAt(file, index));
  let i = Math.max(start, index - maxChars);
  while (i < index && isSpace(file.text.charCodeAt(i))) i++;
  return i;
}

/**
 * For every `(` in code, the index of its matching `)` (or -1): one linear pass with a stack,
 * skipping comments and strings by the region mask.
 */
function closeParens(file: SourceFile): Int32Array {
  const entry = info(file);
  if (entry.closeParen === undefined) {
    const text = file.text;
    const mask = regionMask(file);
    const close = new Int32Array(text.length).fill(-1);
    const stack: number[] = [];
    for (const m of text.matchAll(/[()]/g)) {
      const i = m.index;
      if (mask !== null && mask[i] !== CODE) continue;
      if (m[0] === '(') stack.push(i);
      else {
        const open = stack.pop();
        if (open !== undefined) close[open] = i;
      }
    }
    entry.closeParen = close;
  }
  return entry.closeParen;
}

export interface CallArgs {
  /** Top-level arguments, trimmed. */
  args: string[];
  /** Index just past the closing parenthesis. */
  end: number;
}

/** Longest argument list a call rule looks at; longer calls are not analysed. */
export const MAX_CALL_CHARS = 4000;

/**
 * The arguments of the call whose `(` is at `open`: split at top-level commas, strings and
 * comments respected. Null when the parenthesis is unmatched or the list is longer than
 * MAX_CALL_CHARS (which bounds the work per match, whatever the input).
 */
export function callArgs(file: SourceFile, open: number): CallArgs | null {
  if (file.text.charCodeAt(open) !== 40) return null;
  const close = closeParens(file)[open] ?? -1;
  if (close === -1 || close - open > MAX_CALL_CHARS) return null;
  const mask = regionMask(file);
  const inner = file.text.slice(open + 1, close);
  const args: string[] = [];
  let depth = 0;
  let argStart = 0;
  for (const m of inner.matchAll(/[()[\]{},]/g)) {
    const i = m.index;
    if (mask !== null && mask[open + 1 + i] !== CODE) continue;
    const c = m[0];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c !== ',') depth--;
    else if (depth === 0) {
      args.push(inner.slice(argStart, i).trim());
      argStart = i + 1;
    }
  }
  const last = inner.slice(argStart).trim();
  if (last !== '' || args.length > 0) args.push(last);
  return { args, end: close + 1 };
}

/**
 * `[from, end)` of the expression starting at `from`: up to the first `;` or `,` at nesting
 * depth 0, an unbalanced closing bracket, or (with `stopAtNewline`) a newline at depth 0; strings
 * and comments are skipped by the region mask. Bounded by `maxChars`.
 */
export function expressionAt(file: SourceFile, from: number, stopAtNewline: boolean, maxChars = 1000): RuleMatch {
  const text = file.text;
  const mask = regionMask(file);
  const window = text.slice(from, Math.min(text.length, from + maxChars));
  let depth = 0;
  let stop = window.length;
  for (const m of window.matchAll(/[()[\]{};,\n]/g)) {
    const i = m.index;
    if (mask !== null && mask[from + i] !== CODE) continue;
    const c = m[0];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      if (depth === 0) {
        stop = i;
        break;
      }
      depth--;
    } else if (depth === 0 && (c !== '\n' || stopAtNewline)) {
      stop = i;
      break;
    }
  }
  let end = from + stop;
  while (end > from && isSpace(text.charCodeAt(end - 1))) end--;
  return { start: from, end };
}
