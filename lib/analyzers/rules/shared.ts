/** Checks and context patterns shared by the language rule files. */
import type { CallInfo } from '../rule-builder';
import { isDynamicSql, isDynamicString, isStringLiteral } from '../expr';
import { expressionAt } from '../source';
import type { RuleMatch, SourceFile } from '../types';

/** Words near a hash call that say it hashes a password. */
export const PASSWORD_CONTEXT = /passw|pwd|passphrase|credential/i;

/** Words near a random call that say the value must be unguessable. */
export const SECRET_CONTEXT = /token|secret|passw|nonce|salt|\botp\b|api_?key|session_?id|csrf|one_?time|verification_?code/i;

type Check = (args: string[], call: CallInfo) => boolean;

/** The first argument exists and is not a plain string literal. */
export const firstArgNotLiteral: Check = (args, { file }) => {
  const first = args[0];
  return first !== undefined && first !== '' && !isStringLiteral(first, file.language);
};

/** Some argument exists and is not a plain string literal. */
export const anyArgNotLiteral: Check = (args, { file }) => args.some((a) => a !== '' && !isStringLiteral(a, file.language));

/** The first argument is a string built at run time. */
export const firstArgDynamic: Check = (args, { file }) => args[0] !== undefined && isDynamicString(args[0], file.language);

/** The first argument is SQL built at run time. */
export const firstArgDynamicSql: Check = (args, { file }) => args[0] !== undefined && isDynamicSql(args[0], file.language);

/** Some argument matches `pattern`. */
export function anyArgMatches(pattern: RegExp): Check {
  return (args) => args.some((a) => pattern.test(a));
}

/** The value assigned after the match (up to the end of the statement) is not a literal. */
export function assignedValueNotLiteral(safe: RegExp | null) {
  return (_match: RegExpExecArray, file: SourceFile, range: RuleMatch): RuleMatch | false => {
    const value = expressionAt(file, range.end, true);
    const text = file.text.slice(value.start, value.end);
    if (text === '' || isStringLiteral(text, file.language)) return false;
    if (safe?.test(text)) return false;
    return { start: range.start, end: value.end };
  };
}
