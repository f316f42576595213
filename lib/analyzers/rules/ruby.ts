/** Ruby rules. */
import { regexRule } from '../rule-builder';

const RUBY = ['ruby'] as const;

/** A method call that is not a method of some other receiver (`x.system`), symbol or ivar. */
const BARE = String.raw`(?<![\w.:@$])`;
const USER_INPUT = String.raw`(?:\bparams\b|\brequest\s*\.|\bcookies\b)`;

export const rubyRules = [
  regexRule({
    id: 'rb-eval',
    title: 'eval of request data or interpolation',
    severity: 'critical',
    cwe: 'CWE-95',
    message: 'eval/instance_eval/class_eval run strings as Ruby code, so request data or interpolated values become code execution. Dispatch through an explicit allowlist instead.',
    languages: RUBY,
    pattern: new RegExp(
      `(?:${BARE}eval|\\.\\s*(?:instance_eval|class_eval|module_eval|eval))\\b(?![ \\t]*(?:\\{|do\\b|\\(\\s*&))[ \\t]*\\(?[^\\n]{0,200}?(?:${USER_INPUT}|#\\{)`,
    ),
  }),
  regexRule({
    id: 'rb-dynamic-send',
    title: 'send/constantize with request data',
    severity: 'high',
    cwe: 'CWE-470',
    message: 'Calling a method or class named by request data lets attackers invoke methods you never meant to expose. Map the input to an allowlist of method or class names.',
    languages: RUBY,
    pattern: /\.\s*(?:send|public_send|__send__|try)[ \t]*\(?[ \t]*params\b|\bparams\s*\[[^\]\n]{1,60}\]\s*\.\s*(?:safe_)?constantize\b/,
  }),
  regexRule({
    id: 'rb-command-injection',
    title: 'Shell command with interpolation',
    severity: 'critical',
    cwe: 'CWE-78',
    message: 'system/exec/backticks with an interpolated string run it through a shell, so input can inject commands. Pass the program and its arguments separately: system("tar", "xf", path).',
    languages: RUBY,
    pattern: new RegExp(
      `(?:${BARE}(?:system|exec|spawn)|\\bIO\\s*\\.\\s*popen|\\bOpen3\\s*\\.\\s*(?:capture2e?|capture3|popen2e?|popen3|pipeline\\w{0,10}))[ \\t]*\\(?[ \\t]*"[^"\\n]{0,300}#\\{|\`[^\`\\n]{0,300}#\\{|%x[({\\[|][^\\n]{0,300}#\\{`,
    ),
  }),
  regexRule({
    id: 'rb-yaml-load',
    title: 'YAML.load of untrusted data',
    severity: 'high',
    cwe: 'CWE-502',
    message: 'Before Psych 4, YAML.load (and unsafe_load always) can instantiate arbitrary Ruby objects from the document. Use YAML.safe_load with explicit permitted_classes.',
    languages: RUBY,
    pattern: /\b(?:YAML|Psych)\s*\.\s*(?:unsafe_)?load\b(?!_)/,
  }),
  regexRule({
    id: 'rb-sql-interpolation',
    title: 'SQL fragment built with interpolation',
    severity: 'critical',
    cwe: 'CWE-89',
    message: 'Interpolating values into an ActiveRecord SQL fragment lets input change the query. Use placeholders: where("name = ?", name) or hash conditions.',
    languages: RUBY,
    pattern:
      /\.\s*(?:where|not|find_by_sql|count_by_sql|order|reorder|group|having|joins|select|pluck|from|lock|delete_all|destroy_all|update_all|execute|exec_query|select_all|select_value|select_values|select_rows|find_by|exists\?)[ \t]*\(?[ \t]*"[^"\n]{0,400}#\{/,
  }),
  regexRule({
    id: 'rb-marshal-load',
    title: 'Marshal.load of data',
    severity: 'high',
    cwe: 'CWE-502',
    message: 'Marshal.load instantiates arbitrary objects and can run code when the data is attacker-controlled. Use JSON for data from outside the process.',
    languages: RUBY,
    pattern: /\bMarshal\s*\.\s*(?:load|restore)\b/,
  }),
  regexRule({
    id: 'rb-kernel-open',
    title: 'Kernel#open with request data',
    severity: 'high',
    cwe: 'CWE-78',
    message: 'Kernel#open (and URI.open) run a command when the argument starts with |, and fetch URLs otherwise. Use File.open for files or an HTTP client with a fixed host.',
    languages: RUBY,
    pattern: new RegExp(`(?:${BARE}|\\bKernel\\s*\\.\\s*|\\bURI\\s*\\.\\s*)open[ \\t]*\\(?[ \\t]*${USER_INPUT}`),
  }),
  regexRule({
    id: 'rb-tls-verify-none',
    title: 'TLS verification disabled (VERIFY_NONE)',
    severity: 'high',
    cwe: 'CWE-295',
    message: 'VERIFY_NONE accepts any certificate, so anyone on the network can impersonate the server. Use VERIFY_PEER and add private CAs to the certificate store.',
    languages: RUBY,
    pattern: /\bOpenSSL\s*::\s*SSL\s*::\s*VERIFY_NONE\b|\bssl_verify_mode\s*(?::|=>)\s*:none\b|\bverify_ssl\s*(?::|=>)\s*false\b/,
  }),
  regexRule({
    id: 'rb-mass-assignment',
    title: 'params.permit! allows every attribute',
    severity: 'medium',
    cwe: 'CWE-915',
    message: 'permit! marks all request parameters as assignable, so users can set attributes like admin or role. List the permitted attributes: params.require(:user).permit(:name, :email).',
    languages: RUBY,
    pattern: /\bparams\s*(?:\.\s*require\s*\([^()\n]{0,80}\)\s*)?\.\s*permit!/,
  }),
];
