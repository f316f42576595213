/** Python rules. */
import { callRule, regexRule } from '../rule-builder';
import { statementStart } from '../source';
import { anyArgMatches, firstArgDynamicSql, firstArgNotLiteral, PASSWORD_CONTEXT, SECRET_CONTEXT } from './shared';

const PY = ['python'] as const;

export const pythonRules = [
  callRule({
    id: 'py-eval',
    title: 'eval/exec of a non-literal value',
    severity: 'high',
    cwe: 'CWE-95',
    message: 'eval() and exec() run their argument as Python code, so attacker-influenced input becomes code execution. Use ast.literal_eval for literals or json.loads for data.',
    languages: PY,
    callee: /(?<![\w.])(?:eval|exec)\s*\(/,
    check: firstArgNotLiteral,
  }),
  callRule({
    id: 'py-subprocess-shell',
    title: 'subprocess with shell=True and a non-literal command',
    severity: 'critical',
    cwe: 'CWE-78',
    message: 'With shell=True the command string is parsed by a shell, so interpolated input can inject commands. Pass an argument list and leave shell off.',
    languages: PY,
    callee: /\bsubprocess\s*\.\s*(?:run|call|check_call|check_output|Popen|getoutput|getstatusoutput)\s*\(/,
    check: (args, call) => {
      if (!firstArgNotLiteral(args, call)) return false;
      if (/get(?:status)?output\s*\($/.test(call.match[0])) return true;
      return args.some((a) => /^shell\s*=\s*True$/.test(a));
    },
  }),
  callRule({
    id: 'py-os-system',
    title: 'os.system/os.popen with a non-literal command',
    severity: 'high',
    cwe: 'CWE-78',
    message: 'os.system() and os.popen() run the string through a shell, so input in it can inject commands. Use subprocess.run() with an argument list.',
    languages: PY,
    callee: /\bos\s*\.\s*(?:system|popen)\s*\(/,
    check: firstArgNotLiteral,
  }),
  callRule({
    id: 'py-sql-string-format',
    title: 'SQL built with string formatting',
    severity: 'critical',
    cwe: 'CWE-89',
    message: 'The query is built with %, .format(), an f-string or +, so input can change the SQL. Pass values as parameters: cursor.execute("… WHERE id = %s", (id,)).',
    languages: PY,
    callee: /\.\s*(?:execute|executemany|executescript|raw)\s*\(/,
    check: firstArgDynamicSql,
  }),
  regexRule({
    id: 'py-pickle-load',
    title: 'Unpickling data',
    severity: 'high',
    cwe: 'CWE-502',
    message: 'Unpickling runs code chosen by whoever wrote the bytes, so pickle must never read untrusted data. Use JSON or another data-only format.',
    languages: PY,
    pattern: /\b(?:pickle|cPickle|_pickle|dill|cloudpickle)\s*\.\s*(?:loads?|Unpickler)\s*\(|\bjsonpickle\s*\.\s*decode\s*\(/,
  }),
  callRule({
    id: 'py-yaml-load',
    title: 'yaml.load without a safe loader',
    severity: 'high',
    cwe: 'CWE-502',
    message: 'yaml.load with the default or full loader can construct arbitrary Python objects from the document. Use yaml.safe_load or Loader=yaml.SafeLoader.',
    languages: PY,
    callee: /\byaml\s*\.\s*(?:load|load_all|unsafe_load|unsafe_load_all|full_load|full_load_all)\s*\(/,
    check: (args, call) => /unsafe_|full_/.test(call.match[0]) || !args.some((a) => /\b(?:C?SafeLoader|BaseLoader)\b/.test(a)),
  }),
  regexRule({
    id: 'py-tls-verify-disabled',
    title: 'TLS certificate verification disabled',
    severity: 'high',
    cwe: 'CWE-295',
    message: 'Disabling certificate or hostname verification lets anyone on the network impersonate the server. Keep verify on and point it at a CA bundle if needed.',
    languages: PY,
    pattern:
      /\bverify\s*=\s*False\b|\bssl\s*\.\s*_create_unverified_context\s*\(|\bcheck_hostname\s*=\s*False\b|\bcert_reqs\s*=\s*(?:ssl\s*\.\s*)?CERT_NONE\b/,
  }),
  regexRule({
    id: 'py-weak-password-hash',
    title: 'MD5/SHA-1 used to hash a password',
    severity: 'high',
    cwe: 'CWE-916',
    message: 'Fast hashes like MD5 and SHA-1 let stolen password hashes be cracked quickly. Use bcrypt, scrypt, argon2 or hashlib.pbkdf2_hmac with many iterations.',
    languages: PY,
    pattern: /\bhashlib\s*\.\s*(?:md5|sha1)\s*\(|\bhashlib\s*\.\s*new\s*\(\s*['"](?:md5|sha1)['"]/i,
    context: { pattern: PASSWORD_CONTEXT, linesAfter: 1 },
  }),
  regexRule({
    id: 'py-insecure-random',
    title: 'random module used for a secret value',
    severity: 'medium',
    cwe: 'CWE-338',
    message: 'The random module is predictable and must not produce tokens, passwords or nonces. Use the secrets module (secrets.token_urlsafe, secrets.choice).',
    languages: PY,
    pattern: /(?<![\w.])random\s*\.\s*(?:random|randint|randrange|choice|choices|sample|getrandbits|shuffle)\s*\(/,
    context: { pattern: SECRET_CONTEXT },
    refine: (_m, file, range) => ({ start: statementStart(file, range.start), end: range.end }),
  }),
  callRule({
    id: 'py-flask-debug',
    title: 'Flask app run with debug=True',
    severity: 'medium',
    cwe: 'CWE-489',
    message: 'The Werkzeug debugger allows arbitrary code execution from the browser. Never enable debug=True outside local development; read it from configuration.',
    languages: PY,
    callee: /\b(?:app|application)\s*\.\s*run\s*\(/,
    check: anyArgMatches(/^debug\s*=\s*True$/),
  }),
  callRule({
    id: 'py-tempfile-mktemp',
    title: 'tempfile.mktemp race',
    severity: 'medium',
    cwe: 'CWE-377',
    message: 'tempfile.mktemp() returns a name another process can create first. Use tempfile.mkstemp() or NamedTemporaryFile, which create the file atomically.',
    languages: PY,
    callee: /\btempfile\s*\.\s*mktemp\s*\(/,
    check: () => true,
  }),
];
