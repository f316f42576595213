/**
 * Small expression checks for call rules: is an argument a plain string literal, or a string
 * built at run time (concatenation, interpolation, formatting)? Arguments are short (a call rule
 * never looks at more than MAX_CALL_CHARS), so a character loop is fine.
 */
import type { Language } from './types';

export interface ExprInfo {
  /** The expression with every string literal replaced by `""`. */
  code: string;
  /** The bodies of its string literals. */
  strings: string[];
  /** A literal interpolates values: JS template `${}`, Python f-string, PHP "$x", Ruby "#{}". */
  interpolated: boolean;
}

interface StringSyntax {
  quotes: string;
  /** Whether a string opened by `quote` with `prefix` (Python) interpolates `body`. */
  interpolates(quote: string, body: string, prefix: string): boolean;
  raw: string;
}

const never = (): boolean => false;

const stringSyntax: Partial<Record<Language, StringSyntax>> = {
  javascript: { quotes: `'"\``, interpolates: (q, body) => q === '`' && body.includes('${'), raw: '' },
  typescript: { quotes: `'"\``, interpolates: (q, body) => q === '`' && body.includes('${'), raw: '' },
  python: { quotes: `'"`, interpolates: (_q, body, prefix) => /f/i.test(prefix) && /\{[^{]/.test(body), raw: '' },
  php: { quotes: `'"\``, interpolates: (q, body) => q !== "'" && /\$[A-Za-z_{]|\{\$/.test(body), raw: '' },
  ruby: { quotes: `'"\``, interpolates: (q, body) => q !== "'" && body.includes('#{'), raw: '' },
  go: { quotes: `"\`'`, interpolates: never, raw: '`' },
  java: { quotes: `"'`, interpolates: never, raw: '' },
};

const fallbackSyntax: StringSyntax = { quotes: `'"`, interpolates: never, raw: '' };

export function exprInfo(expr: string, language: Language): ExprInfo {
  const syntax = stringSyntax[language] ?? fallbackSyntax;
  const quote = new RegExp(`[${syntax.quotes}]`, 'g');
  let code = '';
  const strings: string[] = [];
  let interpolated = false;
  let i = 0;
  while (i < expr.length) {
    quote.lastIndex = i;
    const m = quote.exec(expr);
    if (m === null) {
      code += expr.slice(i);
      break;
    }
    const ch = m[0];
    code += expr.slice(i, m.index);
    i = m.index;
    // Python string prefixes (r, b, u, f and pairs) are part of the literal.
    let prefix = '';
    if (language === 'python') {
      const p = /(?:^|[^\w])([rRbBuUfF]{1,2})$/.exec(code);
      if (p?.[1] !== undefined) {
        prefix = p[1];
        code = code.slice(0, code.length - prefix.length);
      }
    }
    const delimiter = language === 'python' && expr.startsWith(ch.repeat(3), i) ? ch.repeat(3) : ch;
    const escapes = !syntax.raw.includes(ch) && !/r/i.test(prefix);
    let j = i + delimiter.length;
    let closed = false;
    while (j < expr.length) {
      if (escapes && expr.charCodeAt(j) === 92) {
        j += 2;
        continue;
      }
      if (expr.startsWith(delimiter, j)) {
        closed = true;
        break;
      }
      j++;
    }
    const body = expr.slice(i + delimiter.length, Math.min(j, expr.length));
    strings.push(body);
    if (syntax.interpolates(ch, body, prefix)) interpolated = true;
    code += '""';
    i = closed ? j + delimiter.length : expr.length;
  }
  return { code, strings, interpolated };
}

/** Exactly one string literal that interpolates nothing: `'ls -la'`, `"SELECT 1"`. */
export function isStringLiteral(expr: string, language: Language): boolean {
  const info = exprInfo(expr.trim(), language);
  return info.strings.length === 1 && !info.interpolated && info.code.trim() === '""';
}

const concatenation: Partial<Record<Language, RegExp>> = {
  php: /(?:^|[^.\d])\.(?![.\d=])/,
};
const defaultConcatenation = /\+/;

const formatting: Partial<Record<Language, RegExp>> = {
  python: /""\s*%|\.format\s*\(/,
  ruby: /""\s*%|\bformat\s*\(/,
  java: /\bString\.format\s*\(|\.formatted\s*\(/,
  go: /\bfmt\.Sprintf\s*\(/,
  php: /\b(?:v?sprintf)\s*\(/,
  javascript: /\butil\.format\s*\(/,
  typescript: /\butil\.format\s*\(/,
};

/**
 * A string assembled at run time: a literal combined with something by concatenation,
 * interpolation or a format call. A bare variable is not (nothing shows it holds a string).
 */
export function isDynamicString(expr: string, language: Language): boolean {
  const info = exprInfo(expr, language);
  if (info.strings.length === 0) return false;
  if (info.interpolated) return true;
  const concat = concatenation[language] ?? defaultConcatenation;
  if (concat.test(info.code)) return true;
  return formatting[language]?.test(info.code) ?? false;
}

const sqlKeyword =
  /\b(?:select|insert|update|delete|replace|merge|from|where|values|into|drop|create|alter|truncate|union|order\s+by|group\s+by|join|limit)\b/i;

/** A dynamic string whose literal parts read as SQL. */
export function isDynamicSql(expr: string, language: Language): boolean {
  if (!isDynamicString(expr, language)) return false;
  return exprInfo(expr, language).strings.some((s) => sqlKeyword.test(s));
}
