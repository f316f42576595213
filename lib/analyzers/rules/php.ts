/** PHP rules. */
import { isDynamicSql, isDynamicString } from '../expr';
import { callRule, regexRule } from '../rule-builder';
import { expressionAt } from '../source';
import { anyArgNotLiteral, firstArgNotLiteral, PASSWORD_CONTEXT } from './shared';

const PHP = ['php'] as const;

const SUPERGLOBAL = /\$_(?:GET|POST|REQUEST|COOKIE|SERVER|FILES|ENV)\b/;
const ESCAPED_FOR_SHELL = /\bescapeshell(?:arg|cmd)\s*\(/;
const ESCAPED_FOR_HTML = /\b(?:htmlspecialchars|htmlentities|strip_tags|intval|floatval|json_encode|e)\s*\(|\(\s*int\s*\)/;

/** A function call, not a method (`->exec`), static call (`::exec`), or namespaced name. */
const FN = String.raw`(?<![\w$>:\\])`;

export const phpRules = [
  callRule({
    id: 'php-eval',
    title: 'eval of a non-literal value',
    severity: 'critical',
    cwe: 'CWE-95',
    message: 'eval() runs its argument as PHP code, so attacker-influenced input becomes code execution. Replace generated code with ordinary functions or a lookup table.',
    languages: PHP,
    callee: new RegExp(`${FN}(?:eval|create_function)\\s*\\(`, 'i'),
    check: (args, call) => (/^eval/i.test(call.match[0]) ? firstArgNotLiteral(args, call) : anyArgNotLiteral(args, call)),
  }),
  callRule({
    id: 'php-command-injection',
    title: 'Shell command built from input',
    severity: 'critical',
    cwe: 'CWE-78',
    message: 'system/exec/shell_exec/passthru run the string through a shell, so request data or interpolated variables can inject commands. Escape each argument with escapeshellarg() or avoid the shell.',
    languages: PHP,
    callee: new RegExp(`${FN}(?:system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec)\\s*\\(`, 'i'),
    check: (args) => {
      const command = args[0];
      if (command === undefined || ESCAPED_FOR_SHELL.test(command)) return false;
      return SUPERGLOBAL.test(command) || isDynamicString(command, 'php');
    },
  }),
  callRule({
    id: 'php-unserialize',
    title: 'unserialize without allowed_classes',
    severity: 'high',
    cwe: 'CWE-502',
    message: 'unserialize() can instantiate any class named in the data, so untrusted input enables object injection. Use json_decode, or pass [\'allowed_classes\' => false].',
    languages: PHP,
    callee: new RegExp(`${FN}unserialize\\s*\\(`, 'i'),
    check: (args, call) => firstArgNotLiteral(args, call) && !/allowed_classes/.test(args[1] ?? ''),
  }),
  callRule({
    id: 'php-sql-injection',
    title: 'SQL built with interpolated variables',
    severity: 'critical',
    cwe: 'CWE-89',
    message: 'Variables interpolated or concatenated into the query can change the SQL. Use prepared statements with bound parameters (PDO::prepare, mysqli_stmt_bind_param).',
    languages: PHP,
    callee: new RegExp(
      `${FN}(?:mysqli_query|mysql_query|mysqli_multi_query|mysqli_real_query|pg_query|sqlite_query|mysqli_prepare|pg_prepare)\\s*\\(|->\\s*(?:query|exec|multi_query|real_query|prepare)\\s*\\(|\\bDB\\s*::\\s*(?:raw|select|statement|unprepared|insert|update|delete)\\s*\\(`,
      'i',
    ),
    check: (args) => args.some((a) => isDynamicSql(a, 'php') || (SUPERGLOBAL.test(a) && /\b(?:select|insert|update|delete)\b/i.test(a))),
  }),
  regexRule({
    id: 'php-file-inclusion',
    title: 'include/require of a request-controlled path',
    severity: 'critical',
    cwe: 'CWE-98',
    message: 'Including a path taken from the request lets attackers load arbitrary local (or remote) files as code. Map the input to a fixed list of files instead.',
    languages: PHP,
    pattern: /\b(?:include|include_once|require|require_once)\b[\s(]{1,5}[^;\n]{0,200}?\$_(?:GET|POST|REQUEST|COOKIE)\b/i,
    refine: (_m, file, range) => ({ start: range.start, end: expressionAt(file, range.start, true, 400).end }),
  }),
  regexRule({
    id: 'php-curl-ssl-verify-disabled',
    title: 'cURL TLS verification disabled',
    severity: 'high',
    cwe: 'CWE-295',
    message: 'Turning off CURLOPT_SSL_VERIFYPEER/VERIFYHOST lets anyone on the network impersonate the server. Keep verification on and set CURLOPT_CAINFO for private CAs.',
    languages: PHP,
    pattern: /\bCURLOPT_SSL_VERIFY(?:PEER|HOST)\s*(?:,|=>)\s*(?:false|0)\b/i,
  }),
  regexRule({
    id: 'php-weak-password-hash',
    title: 'md5/sha1 used to hash a password',
    severity: 'high',
    cwe: 'CWE-916',
    message: 'Fast hashes like md5() and sha1() let stolen password hashes be cracked quickly. Use password_hash() and password_verify().',
    languages: PHP,
    pattern: new RegExp(`${FN}(?:md5|sha1)\\s*\\(|\\bhash\\s*\\(\\s*['"](?:md5|sha1)['"]`, 'i'),
    context: { pattern: PASSWORD_CONTEXT },
  }),
  regexRule({
    id: 'php-xss-echo',
    title: 'Request data echoed without escaping',
    severity: 'high',
    cwe: 'CWE-79',
    message: 'Echoing request parameters into HTML allows cross-site scripting. Escape output with htmlspecialchars($value, ENT_QUOTES, \'UTF-8\').',
    languages: PHP,
    pattern: /(?:\b(?:echo|print)\b|<\?=)[^;\n]{0,300}?\$_(?:GET|POST|REQUEST|COOKIE|SERVER)\b/i,
    refine: (_m, file, range) => {
      const end = expressionAt(file, range.start, true, 400).end;
      const statement = file.text.slice(range.start, end);
      return ESCAPED_FOR_HTML.test(statement) ? false : { start: range.start, end };
    },
  }),
];
