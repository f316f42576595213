/**
 * Rule engine for repository scans (issue 6, criterion 4): pure, synchronous, no I/O.
 *
 *   analyzeSource({ path, language, text }, { allowInlineSuppression, disabledRules }) → Finding[]
 *   issueFingerprint(finding) → sha256 hex of rule + path + normalised match + occurrence
 */
import { analyzeWithRules } from './engine';
import { goRules } from './rules/go';
import { javaRules } from './rules/java';
import { javascriptRules } from './rules/javascript';
import { phpRules } from './rules/php';
import { pythonRules } from './rules/python';
import { rubyRules } from './rules/ruby';
import { secretRules } from './rules/secrets';
import type { AnalyzeOptions, Finding, Rule, SourceFile } from './types';

export type { AnalyzeOptions, Finding, Language, Rule, RuleMatch, Severity, SourceFile } from './types';
export { severities } from './types';
export { issueFingerprint, maskSecret, MATCHED_TEXT_MAX, NORMALIZED_MATCH_MAX } from './engine';

/** Every rule, code rules first, then secret rules (the generic secret rule last). */
export const rules: readonly Rule[] = Object.freeze([
  ...javascriptRules,
  ...pythonRules,
  ...javaRules,
  ...goRules,
  ...phpRules,
  ...rubyRules,
  ...secretRules,
]);

/** Rules by id. */
export const rulesById: ReadonlyMap<string, Rule> = new Map(rules.map((rule) => [rule.id, rule]));

export function analyzeSource(file: SourceFile, options: AnalyzeOptions = {}): Finding[] {
  return analyzeWithRules(rules, file, options);
}
