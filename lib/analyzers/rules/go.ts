/** Go rules. */
import { isStringLiteral } from '../expr';
import { callRule, regexRule } from '../rule-builder';
import { statementStart } from '../source';
import { anyArgMatches, firstArgNotLiteral, PASSWORD_CONTEXT, SECRET_CONTEXT } from './shared';

const GO = ['go'] as const;

const SHELLS = /^"(?:\/(?:usr\/)?bin\/)?(?:sh|bash|zsh|dash|ash|ksh|cmd|cmd\.exe|powershell|powershell\.exe|pwsh)"$/;
const SHELL_FLAGS = /^"(?:-c|-lc|\/c|\/C|-Command)"$/;

export const goRules = [
  regexRule({
    id: 'go-sql-sprintf',
    title: 'SQL built with fmt.Sprintf or concatenation',
    severity: 'critical',
    cwe: 'CWE-89',
    message: 'The query text is formatted from values, so input can change the SQL. Pass values as query arguments ($1, ?) to Query/Exec instead.',
    languages: GO,
    pattern:
      /\bfmt\s*\.\s*Sprintf\s*\(\s*[`"]\s*(?:select|insert|update|delete|with|replace|merge)\b[^"`]{0,400}%[svq]|\.\s*(?:Query|QueryRow|Exec|Prepare)(?:Context)?\s*\(\s*(?:\w{1,30}\s*,\s*)?"\s*(?:select|insert|update|delete|with)\b[^"\n]{0,400}"\s*\+/i,
  }),
  callRule({
    id: 'go-exec-shell',
    title: 'exec.Command running a shell with a non-literal script',
    severity: 'critical',
    cwe: 'CWE-78',
    message: 'Passing a built string to sh -c lets input inject shell commands. Run the program directly with separate arguments: exec.Command("tar", "xf", path).',
    languages: GO,
    callee: /\bexec\s*\.\s*Command(?:Context)?\s*\(/,
    check: (args) => {
      const shell = args.findIndex((a) => SHELLS.test(a));
      if (shell === -1 || !SHELL_FLAGS.test(args[shell + 1] ?? '')) return false;
      const script = args[shell + 2];
      return script !== undefined && !isStringLiteral(script, 'go');
    },
  }),
  regexRule({
    id: 'go-tls-insecure-skip-verify',
    title: 'TLS verification disabled (InsecureSkipVerify)',
    severity: 'high',
    cwe: 'CWE-295',
    message: 'InsecureSkipVerify accepts any certificate, so anyone on the network can impersonate the server. Keep verification on and add private CAs to RootCAs.',
    languages: GO,
    pattern: /\bInsecureSkipVerify\s*:\s*true\b/,
  }),
  regexRule({
    id: 'go-math-rand-secret',
    title: 'math/rand used for a secret value',
    severity: 'medium',
    cwe: 'CWE-338',
    message: 'math/rand is predictable and must not produce tokens, passwords or keys. Use crypto/rand.',
    languages: GO,
    requires: /^[ \t]*(?:import[ \t]+)?"math\/rand(?:\/v2)?"/m,
    pattern: /(?<![\w.])rand\s*\.\s*(?:Int|Intn|IntN|Int31|Int31n|Int63|Int63n|Uint32|Uint64|Float32|Float64|Read|Perm|N)\s*\(/,
    context: { pattern: SECRET_CONTEXT },
    refine: (_m, file, range) => ({ start: statementStart(file, range.start), end: range.end }),
  }),
  regexRule({
    id: 'go-weak-password-hash',
    title: 'MD5/SHA-1 used to hash a password',
    severity: 'high',
    cwe: 'CWE-916',
    message: 'Fast hashes like MD5 and SHA-1 let stolen password hashes be cracked quickly. Use golang.org/x/crypto/bcrypt, scrypt or argon2.',
    languages: GO,
    pattern: /\b(?:md5|sha1)\s*\.\s*(?:New|Sum)\s*\(/,
    context: { pattern: PASSWORD_CONTEXT, linesAfter: 2 },
  }),
  regexRule({
    id: 'go-http-no-timeout',
    title: 'HTTP server without timeouts',
    severity: 'low',
    cwe: 'CWE-400',
    message: 'http.ListenAndServe uses a server with no read or write timeouts, so slow clients can exhaust connections. Use an http.Server with ReadHeaderTimeout and friends.',
    languages: GO,
    pattern: /\bhttp\s*\.\s*ListenAndServe(?:TLS)?\s*\(/,
  }),
  callRule({
    id: 'go-path-traversal',
    title: 'File path from request input',
    severity: 'high',
    cwe: 'CWE-22',
    message: 'A path built from request input can contain ../ and reach files outside the intended directory. Clean it with filepath.Base or check the joined path stays under the root (os.Root).',
    languages: GO,
    callee: /\b(?:os\s*\.\s*(?:Open|OpenFile|ReadFile|Create|Remove|RemoveAll|WriteFile)|ioutil\s*\.\s*ReadFile|http\s*\.\s*ServeFile)\s*\(/,
    check: (args, call) =>
      anyArgMatches(/\.\s*URL\s*\.\s*(?:Query\s*\(\s*\)|Path\b)|\.\s*(?:Post)?FormValue\s*\(|\bmux\s*\.\s*Vars\s*\(|\.\s*(?:Param|Query)\s*\(\s*"/)(args, call) &&
      !args.some((a) => /\bfilepath\s*\.\s*Base\s*\(/.test(a)),
  }),
  callRule({
    id: 'go-template-unescaped',
    title: 'html/template escaping bypassed with a non-literal',
    severity: 'high',
    cwe: 'CWE-79',
    message: 'template.HTML/JS/URL mark the value as safe, so data passed through them is not escaped and allows cross-site scripting. Pass plain strings and let html/template escape them.',
    languages: GO,
    callee: /\btemplate\s*\.\s*(?:HTML|HTMLAttr|JS|JSStr|URL|CSS|Srcset)\s*\(/,
    check: firstArgNotLiteral,
  }),
];
