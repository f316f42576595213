/**
 * The two helpers every rule is built with, so that the rule files read as data:
 *
 * - `regexRule`: a pattern over the text, optionally narrowed by file-level conditions, the
 *   surrounding lines, or a `refine` callback.
 * - `callRule`: a pattern for a callee ending in `(`, then a check over the call's arguments
 *   (balanced parentheses, strings and comments respected).
 *
 * Pattern discipline (adversarial input must stay linear): every quantifier is bounded or runs
 * over a class that cannot overlap what follows; no nested unbounded groups; patterns start
 * with a literal or a lookbehind so that few positions can start a match.
 */
import { callArgs, contextAround, isCode, isComment } from './source';
import type { Language, Rule, RuleMatch, SourceFile } from './types';

/** Which matches to drop by where they start. */
export type Skip = 'none' | 'comments' | 'comments-and-strings';

/** What a rule declares besides its matcher: the rule's own fields, and where it applies. */
export interface RuleMeta extends Omit<Rule, 'find'> {
  /** Default: code rules skip matches in comments and strings; secret rules skip nothing. */
  skip?: Skip;
  /** The rule runs only on files where this matches somewhere. */
  requires?: RegExp;
  /** The rule does not run on files where this matches somewhere. */
  unless?: RegExp;
}

export interface RegexRuleSpec extends RuleMeta {
  /**
   * Flags `g` (and `d` when needed) are added. A named group `target` narrows the reported
   * range to that group (secret rules report the secret itself).
   */
  pattern: RegExp;
  /** A match counts only when the lines holding it (plus `linesAfter` lines) match `pattern`. */
  context?: { pattern: RegExp; linesAfter?: number };
  /** Last word on a match: false/null drops it, a RuleMatch replaces its range. */
  refine?: (match: RegExpExecArray, file: SourceFile, range: RuleMatch) => RuleMatch | boolean | null;
}

export interface CallInfo {
  file: SourceFile;
  /** The callee match, ending with the `(`. */
  match: RegExpExecArray;
}

export interface CallRuleSpec extends RuleMeta {
  /** Matches a callee up to and including its `(`. */
  callee: RegExp;
  /** Whether the call, given its top-level arguments, is a finding. */
  check: (args: string[], call: CallInfo) => boolean;
}

function compile(pattern: RegExp): RegExp {
  const flags = new Set(pattern.flags.split(''));
  flags.add('g');
  if (pattern.source.includes('(?<target>')) flags.add('d');
  flags.delete('y');
  return new RegExp(pattern.source, [...flags].join(''));
}

function skipped(file: SourceFile, index: number, skip: Skip): boolean {
  if (skip === 'none') return false;
  if (skip === 'comments') return isComment(file, index);
  return !isCode(file, index);
}

function fileApplies(spec: RuleMeta, file: SourceFile): boolean {
  if (spec.requires !== undefined && !spec.requires.test(file.text)) return false;
  if (spec.unless !== undefined && spec.unless.test(file.text)) return false;
  return true;
}

/** Every non-empty match of `re` in `text`, in order. */
function* matches(re: RegExp, text: string): Generator<RegExpExecArray> {
  const regex = new RegExp(re); // own lastIndex: find() stays reentrant
  for (let m = regex.exec(text); m !== null; m = regex.exec(text)) {
    if (m[0].length === 0) {
      regex.lastIndex++;
      continue;
    }
    yield m;
  }
}

function meta(spec: RuleMeta): Omit<Rule, 'find'> {
  const { id, title, severity, cwe, message, languages, secret } = spec;
  return secret === true ? { id, title, severity, cwe, message, languages, secret } : { id, title, severity, cwe, message, languages };
}

function checkFileFlags(spec: RuleMeta): void {
  for (const re of [spec.requires, spec.unless]) {
    if (re !== undefined && (re.global || re.sticky)) throw new Error(`rule ${spec.id}: requires/unless must not be global or sticky`);
  }
}

export function regexRule(spec: RegexRuleSpec): Rule {
  checkFileFlags(spec);
  const pattern = compile(spec.pattern);
  const skip = spec.skip ?? (spec.secret === true ? 'none' : 'comments-and-strings');
  const context = spec.context;
  if (context !== undefined && (context.pattern.global || context.pattern.sticky)) {
    throw new Error(`rule ${spec.id}: context pattern must not be global or sticky`);
  }
  return {
    ...meta(spec),
    find(file: SourceFile): RuleMatch[] {
      if (!fileApplies(spec, file)) return [];
      const found: RuleMatch[] = [];
      for (const m of matches(pattern, file.text)) {
        if (skipped(file, m.index, skip)) continue;
        const target = m.indices?.groups?.target;
        let range: RuleMatch = target ? { start: target[0], end: target[1] } : { start: m.index, end: m.index + m[0].length };
        if (range.end <= range.start) continue;
        if (context !== undefined && !context.pattern.test(contextAround(file, range.start, range.end, context.linesAfter ?? 0))) {
          continue;
        }
        if (spec.refine !== undefined) {
          const refined = spec.refine(m, file, range);
          if (refined === false || refined === null) continue;
          if (refined !== true) range = refined;
        }
        found.push(range);
      }
      return found;
    },
  };
}

export function callRule(spec: CallRuleSpec): Rule {
  checkFileFlags(spec);
  const callee = compile(spec.callee);
  const skip = spec.skip ?? 'comments-and-strings';
  return {
    ...meta(spec),
    find(file: SourceFile): RuleMatch[] {
      if (!fileApplies(spec, file)) return [];
      const found: RuleMatch[] = [];
      for (const m of matches(callee, file.text)) {
        if (skipped(file, m.index, skip)) continue;
        const call = callArgs(file, m.index + m[0].length - 1);
        if (call === null) continue;
        if (spec.check(call.args, { file, match: m })) found.push({ start: m.index, end: call.end });
      }
      return found;
    },
  };
}

/** Language lists shared by the rule files. */
export const JS: readonly Language[] = ['javascript', 'typescript'];
