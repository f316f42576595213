/**
 * The rule engine: runs the rules that apply to a file, turns matches into findings with
 * lines, columns, masked secrets, fingerprint inputs and occurrence numbers, and records inline
 * suppressions (never dropping the finding).
 */
import { isComment, lineBounds, lineNumberAt, regionMask } from './source';
import type { AnalyzeOptions, Finding, Rule, RuleMatch, SourceFile } from './types';
import { collapseWhitespace, sha256Hex } from './util';

/** matchedText is capped at this many characters (then '…'). */
export const MATCHED_TEXT_MAX = 500;
/** normalizedMatch longer than this keeps a prefix and the sha256 of the whole. */
export const NORMALIZED_MATCH_MAX = 1000;

const ELLIPSIS = '…';

function cap(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = max;
  const last = text.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--; // do not split a surrogate pair
  return text.slice(0, cut) + ELLIPSIS;
}

function normalize(text: string, secret: boolean): string {
  const collapsed = collapseWhitespace(text);
  if (secret) return sha256Hex(collapsed);
  if (collapsed.length <= NORMALIZED_MATCH_MAX) return collapsed;
  const hash = sha256Hex(collapsed);
  return `${collapsed.slice(0, NORMALIZED_MATCH_MAX - hash.length - 1)}${ELLIPSIS}${hash}`;
}

/** Secrets are shown as their first 4 characters and '…'. */
export function maskSecret(secret: string): string {
  return secret.slice(0, 4) + ELLIPSIS;
}

// --- inline suppression -----------------------------------------------------------------------

/**
 * `auditflow-ignore` alone suppresses every rule; `auditflow-ignore: a, b` only the listed ids.
 * Text after the ids (`-- reason`) is allowed.
 */
const DIRECTIVE = /auditflow-ignore(?![\w-])(?:[ \t]*:[ \t]*(?<ids>[a-z0-9][a-z0-9-]*(?:[ \t]*,[ \t]*[a-z0-9][a-z0-9-]*)*))?/gi;
/** A comment marker, then only whitespace, right before the directive. */
const MARKER_BEFORE = /(?:\/\/|\/\*|#|<!--|--|;|%|\*)[ \t]*$/;
/** The line holds nothing but the comment. */
const COMMENT_ONLY = /^[ \t]*(?:\/\/|\/\*|#|<!--|--|;|%|\*)[ \t]*$/;

interface Directive {
  /** null: every rule. */
  ids: Set<string> | null;
  /** The comment is the whole line, so it also applies to the next line. */
  ownLine: boolean;
}

function parseSuppressions(file: SourceFile): Map<number, Directive[]> {
  const byLine = new Map<number, Directive[]>();
  const text = file.text;
  if (!/auditflow-ignore/i.test(text)) return byLine;
  const lexed = regionMask(file) !== null;
  for (const m of text.matchAll(DIRECTIVE)) {
    const index = m.index;
    if (lexed && !isComment(file, index)) continue; // e.g. inside a string literal
    const line = lineNumberAt(file, index);
    const before = text.slice(Math.max(lineBounds(file, line).start, index - 200), index);
    if (!MARKER_BEFORE.test(before)) continue;
    const idsText = m.groups?.ids;
    const ids = idsText === undefined ? null : new Set(idsText.split(',').map((id) => id.trim().toLowerCase()));
    const lineStart = lineBounds(file, line).start;
    const ownLine = index - lineStart <= 200 && COMMENT_ONLY.test(text.slice(lineStart, index));
    const list = byLine.get(line) ?? [];
    list.push({ ids, ownLine });
    byLine.set(line, list);
  }
  return byLine;
}

function isSuppressed(suppressions: Map<number, Directive[]>, ruleId: string, line: number): boolean {
  const applies = (d: Directive): boolean => d.ids === null || d.ids.has(ruleId);
  if ((suppressions.get(line) ?? []).some(applies)) return true;
  return (suppressions.get(line - 1) ?? []).some((d) => d.ownLine && applies(d));
}

// --- analysis ---------------------------------------------------------------------------------

interface RawMatch extends RuleMatch {
  rule: Rule;
  order: number;
}

function applies(rule: Rule, file: SourceFile): boolean {
  return rule.languages === 'any' || rule.languages.includes(file.language);
}

/**
 * Runs `rules` over one file. Findings are ordered by position, then rule order. Secret rules
 * matching the same range as an earlier secret rule (a key that is also a high-entropy
 * assignment) are reported once, by the earlier (more specific) rule.
 */
export function analyzeWithRules(rules: readonly Rule[], file: SourceFile, options: AnalyzeOptions = {}): Finding[] {
  const disabled = new Set(options.disabledRules ?? []);
  const length = file.text.length;
  const raw: RawMatch[] = [];
  const secretRanges = new Set<string>();
  rules.forEach((rule, order) => {
    if (disabled.has(rule.id) || !applies(rule, file)) return;
    const seen = new Set<string>();
    for (const { start, end } of rule.find(file)) {
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end > start && end <= length)) continue;
      const key = `${start}:${end}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (rule.secret === true) {
        if (secretRanges.has(key)) continue;
        secretRanges.add(key);
      }
      raw.push({ rule, order, start, end });
    }
  });
  raw.sort((a, b) => a.start - b.start || a.end - b.end || a.order - b.order);

  const suppressions = options.allowInlineSuppression === false ? new Map<number, Directive[]>() : parseSuppressions(file);
  const occurrences = new Map<string, number>();
  return raw.map(({ rule, start, end }): Finding => {
    const text = file.text.slice(start, end);
    const secret = rule.secret === true;
    const normalizedMatch = normalize(text, secret);
    const occurrenceKey = `${rule.id}\u0000${normalizedMatch}`;
    const occurrence = occurrences.get(occurrenceKey) ?? 0;
    occurrences.set(occurrenceKey, occurrence + 1);
    const startLine = lineNumberAt(file, start);
    return {
      ruleId: rule.id,
      title: rule.title,
      severity: rule.severity,
      cwe: rule.cwe,
      message: rule.message,
      path: file.path,
      startLine,
      endLine: lineNumberAt(file, end - 1),
      startColumn: start - lineBounds(file, startLine).start + 1,
      matchedText: secret ? maskSecret(text) : cap(text, MATCHED_TEXT_MAX),
      normalizedMatch,
      occurrence,
      suppressed: isSuppressed(suppressions, rule.id, startLine),
    };
  });
}

/**
 * Fingerprint of an issue across scans: sha256 hex over rule, path, normalised matched text and
 * occurrence, never the line number, so findings survive line shifts.
 */
export function issueFingerprint(f: Pick<Finding, 'ruleId' | 'path' | 'normalizedMatch' | 'occurrence'>): string {
  return sha256Hex(JSON.stringify(['auditflow-issue/1', f.ruleId, f.path, f.normalizedMatch, f.occurrence]));
}
