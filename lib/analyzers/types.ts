/**
 * Types of the rule engine (issue 6, criterion 4). Pure data: no I/O anywhere in lib/analyzers/.
 */

import type { Language } from '../file-selection';

/** Language of a source file, as decided by file selection (extension and shebang). */
export type { Language };

export type Severity = 'critical' | 'high' | 'medium' | 'low' | 'info';

export const severities: readonly Severity[] = ['critical', 'high', 'medium', 'low', 'info'];

export interface SourceFile {
  /** Repository-relative POSIX path (`src/app.ts`); part of the fingerprint, so keep it stable. */
  path: string;
  language: Language;
  text: string;
}

/** The offending code: a half-open index range `[start, end)` into `SourceFile.text`. */
export interface RuleMatch {
  start: number;
  end: number;
}

export interface Rule {
  /** Stable kebab-case id with a language prefix (`js-eval`, `secret-aws-access-key`). */
  id: string;
  title: string;
  severity: Severity;
  /** `CWE-89`; secret rules use CWE-798. */
  cwe: string | null;
  /** What is wrong and how to fix it, one or two sentences. */
  message: string;
  languages: readonly Language[] | 'any';
  /**
   * True for credential rules: the match range covers the secret itself, so the engine masks the
   * matched text and fingerprints a hash of it instead of the secret.
   */
  secret?: boolean;
  /** Pure and synchronous; matches in any order, the engine sorts and deduplicates them. */
  find(file: SourceFile): RuleMatch[];
}

export interface Finding {
  ruleId: string;
  title: string;
  severity: Severity;
  cwe: string | null;
  message: string;
  path: string;
  /** 1-based line of the first character of the match. */
  startLine: number;
  /** 1-based line of the last character of the match. */
  endLine: number;
  /** 1-based column (UTF-16 code units) of the first character of the match. */
  startColumn: number;
  /** The matched code, capped at 500 characters; for secrets the first 4 characters and '…' only. */
  matchedText: string;
  /**
   * Whitespace-collapsed matched text (secrets: the sha256 hex of it, never the secret); long
   * matches keep a prefix and a hash of the whole. The fingerprint input.
   */
  normalizedMatch: string;
  /** 0-based index among findings of the same rule with the same normalizedMatch in this file. */
  occurrence: number;
  /** An inline `auditflow-ignore[: rule-id, …]` comment on the same line or on a comment line above. */
  suppressed: boolean;
}

export interface AnalyzeOptions {
  /** Default true; false (a project setting) ignores `auditflow-ignore` comments. */
  allowInlineSuppression?: boolean;
  /** Rule ids not to run at all. */
  disabledRules?: readonly string[];
}
