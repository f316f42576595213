/**
 * The engine around the rules: positions, occurrence numbering, fingerprints that survive line
 * shifts, inline suppression, disabled rules, secret masking, and bounded work on hostile input.
 */
import { analyzeSource, issueFingerprint, rules, type Finding, type Language, type SourceFile } from '../../../lib/analyzers';
import { crc32, base62, sha256Hex } from '../../../lib/analyzers/util';
import { hasJwtHeader, isValidGithubClassicToken } from '../../../lib/analyzers/rules/secrets';
import { BASE64, fakeAwsAccessKeyId, fakeGithubToken, fakeJwt, fakePem, fakeRandom, withBrokenChecksum } from './fixtures';

const js = (text: string, path = 'src/app.js'): SourceFile => ({ path, language: 'javascript', text });
const py = (text: string, path = 'app/main.py'): SourceFile => ({ path, language: 'python', text });
const only = (findings: Finding[], ruleId: string) => findings.filter((f) => f.ruleId === ruleId);
const fingerprints = (findings: Finding[]) => findings.map(issueFingerprint);

describe('positions', () => {
  it('reports 1-based lines and columns of the match', () => {
    const [finding] = analyzeSource(js('// header\nfunction run(input) {\n  return eval(input);\n}\n'));
    expect(finding).toMatchObject({ ruleId: 'js-eval', startLine: 3, endLine: 3, startColumn: 10, matchedText: 'eval(input)' });
  });

  it('spans lines for a multi-line match and counts CRLF line ends once', () => {
    const [finding] = analyzeSource(js("const a = 1;\r\nexec(\r\n  'ls ' +\r\n    dir,\r\n  cb);\r\n"));
    expect(finding).toMatchObject({ ruleId: 'js-child-process-exec', startLine: 2, endLine: 5, startColumn: 1 });
    expect(finding?.normalizedMatch).toBe("exec( 'ls ' + dir, cb)");
  });

  it('orders findings by position', () => {
    const findings = analyzeSource(py('os.system("a" + x)\nresult = eval(y)\nyaml.load(s)\n'));
    expect(findings.map((f) => [f.ruleId, f.startLine])).toEqual([
      ['py-os-system', 1],
      ['py-eval', 2],
      ['py-yaml-load', 3],
    ]);
  });

  it('applies rules only to their languages', () => {
    const text = 'result = eval(user_input)\n';
    expect(analyzeSource(py(text)).map((f) => f.ruleId)).toEqual(['py-eval']);
    expect(analyzeSource({ path: 'a.rb', language: 'ruby', text }).map((f) => f.ruleId)).toEqual([]);
    expect(analyzeSource({ path: 'a.txt', language: 'text', text })).toEqual([]);
  });
});

describe('comments and strings', () => {
  it('skips code rules in comments and string literals', () => {
    const text = [
      '// eval(userInput)',
      '/* exec("ls " + dir) */',
      'const doc = "see eval(userInput) in the docs";',
      'const tpl = `run exec("ls " + dir) later`;',
      'const url = "http://example.test"; eval(code);',
    ].join('\n');
    const findings = analyzeSource(js(text));
    expect(findings.map((f) => [f.ruleId, f.startLine])).toEqual([['js-eval', 5]]);
  });

  it('knows Python comments, docstrings and strings containing #', () => {
    const text = ['"""', 'Example: eval(expr)', '"""', 'label = "#1"; result = eval(expr)  # eval(again)', "# os.system('x' + y)"].join('\n');
    expect(analyzeSource(py(text)).map((f) => [f.ruleId, f.startLine])).toEqual([['py-eval', 4]]);
  });

  it('still reports secrets inside comments and strings', () => {
    const key = fakeAwsAccessKeyId(4);
    const findings = analyzeSource(js(`// old key: ${key}\nconst k = "${key}";\n`));
    expect(findings.map((f) => [f.ruleId, f.startLine])).toEqual([
      ['secret-aws-access-key', 1],
      ['secret-aws-access-key', 2],
    ]);
  });
});

describe('occurrences and fingerprints', () => {
  const source = ['function a(userInput) {', '  eval(userInput);', '  eval(userInput);', '  eval(other);', '  eval(userInput);', '}', ''].join('\n');

  it('numbers identical matches of a rule in order, per normalized text', () => {
    const findings = only(analyzeSource(js(source)), 'js-eval');
    expect(findings.map((f) => [f.startLine, f.normalizedMatch, f.occurrence])).toEqual([
      [2, 'eval(userInput)', 0],
      [3, 'eval(userInput)', 1],
      [4, 'eval(other)', 0],
      [5, 'eval(userInput)', 2],
    ]);
  });

  it('gives different occurrences different fingerprints', () => {
    const prints = fingerprints(analyzeSource(js(source)));
    expect(new Set(prints).size).toBe(prints.length);
    for (const p of prints) expect(p).toMatch(/^[0-9a-f]{64}$/);
  });

  it('keeps fingerprints when lines shift above the findings', () => {
    const before = analyzeSource(js(source));
    const shifted = analyzeSource(js(`import fs from 'node:fs';\n\n// a comment\nconst x = 1;\n${source}`));
    expect(shifted.map((f) => f.startLine)).toEqual(before.map((f) => f.startLine + 4));
    expect(fingerprints(shifted)).toEqual(fingerprints(before));
  });

  it('keeps fingerprints when the code is re-indented (whitespace runs collapse)', () => {
    const a = analyzeSource(js("exec(\n  'ls ' + dir,\n  cb);"));
    const b = analyzeSource(js("    exec(\n        'ls ' +   dir,\n\t\tcb);"));
    expect(a).toHaveLength(1);
    expect(fingerprints(b)).toEqual(fingerprints(a));
  });

  it('changes the fingerprint with the rule, path, text or occurrence', () => {
    const base = { ruleId: 'js-eval', path: 'a.js', normalizedMatch: 'eval(x)', occurrence: 0 };
    const print = issueFingerprint(base);
    expect(issueFingerprint({ ...base })).toBe(print);
    expect(issueFingerprint({ ...base, ruleId: 'js-new-function' })).not.toBe(print);
    expect(issueFingerprint({ ...base, path: 'b.js' })).not.toBe(print);
    expect(issueFingerprint({ ...base, normalizedMatch: 'eval(y)' })).not.toBe(print);
    expect(issueFingerprint({ ...base, occurrence: 1 })).not.toBe(print);
    // Fields are framed, so shifting characters between them cannot collide.
    expect(issueFingerprint({ ...base, path: 'a.jse', normalizedMatch: 'val(x)' })).not.toBe(print);
  });

  it('is deterministic across runs', () => {
    expect(analyzeSource(js(source))).toEqual(analyzeSource(js(source)));
  });
});

describe('inline suppression', () => {
  it('records a same-line `// auditflow-ignore` as suppressed, never dropping the finding', () => {
    const findings = analyzeSource(js('eval(a); // auditflow-ignore\neval(b);\n'));
    expect(findings.map((f) => [f.startLine, f.suppressed])).toEqual([
      [1, true],
      [2, false],
    ]);
  });

  it('honours a comment line directly above, naming the rule', () => {
    const text = 'def f(expr):\n    # auditflow-ignore: py-eval\n    return eval(expr)\n';
    expect(analyzeSource(py(text)).map((f) => [f.ruleId, f.suppressed])).toEqual([['py-eval', true]]);
  });

  it('does not suppress when the comment names another rule', () => {
    const text = '# auditflow-ignore: py-os-system\nresult = eval(expr)\n';
    expect(analyzeSource(py(text)).map((f) => [f.ruleId, f.suppressed])).toEqual([['py-eval', false]]);
  });

  it('accepts a list of ids and a trailing reason', () => {
    const text = 'result = eval(expr)  # auditflow-ignore: py-os-system, py-eval -- sandboxed input\n';
    expect(analyzeSource(py(text)).map((f) => f.suppressed)).toEqual([true]);
  });

  it('applies a bare directive to every rule on the line', () => {
    const text = 'os.system("x" + eval(y))  # auditflow-ignore\n';
    const findings = analyzeSource(py(text));
    expect(findings.map((f) => f.ruleId).sort()).toEqual(['py-eval', 'py-os-system']);
    expect(findings.every((f) => f.suppressed)).toBe(true);
  });

  it('does not carry a trailing comment on a code line over to the next line', () => {
    const findings = analyzeSource(js('const a = 1; // auditflow-ignore\neval(b);\n'));
    expect(findings.map((f) => f.suppressed)).toEqual([false]);
  });

  it('does not reach two lines down', () => {
    const findings = analyzeSource(js('// auditflow-ignore\n\neval(b);\n'));
    expect(findings.map((f) => f.suppressed)).toEqual([false]);
  });

  it('ignores the directive inside a string literal or outside a comment', () => {
    const findings = analyzeSource(js('const note = "// auditflow-ignore"; eval(b);\nconst auditflow = 1; eval(c); auditflow-ignore;\n'));
    expect(findings.map((f) => f.suppressed)).toEqual([false, false]);
  });

  it('works in block comments and for secret rules', () => {
    const key = fakeAwsAccessKeyId(9);
    const text = `/* auditflow-ignore: js-eval */ eval(x);\n// auditflow-ignore: secret-aws-access-key -- revoked test key\nconst k = "${key}";\n`;
    const findings = analyzeSource(js(text));
    expect(findings.map((f) => [f.ruleId, f.suppressed])).toEqual([
      ['js-eval', true],
      ['secret-aws-access-key', true],
    ]);
  });

  it('ignores every directive when the project disables inline suppression', () => {
    const text = 'eval(a); // auditflow-ignore\n// auditflow-ignore: js-eval\neval(b);\n';
    expect(analyzeSource(js(text)).map((f) => f.suppressed)).toEqual([true, true]);
    expect(analyzeSource(js(text), { allowInlineSuppression: false }).map((f) => f.suppressed)).toEqual([false, false]);
  });

  it('suppression does not change fingerprints', () => {
    const plain = analyzeSource(js('eval(a);\n'));
    const ignored = analyzeSource(js('eval(a); // auditflow-ignore\n'));
    expect(fingerprints(ignored)).toEqual(fingerprints(plain));
  });
});

describe('disabled rules', () => {
  it('does not run disabled rules at all', () => {
    const text = 'os.system("x" + y)\nresult = eval(z)\n';
    expect(analyzeSource(py(text), { disabledRules: ['py-eval'] }).map((f) => f.ruleId)).toEqual(['py-os-system']);
    expect(analyzeSource(py(text), { disabledRules: ['py-eval', 'py-os-system', 'no-such-rule'] })).toEqual([]);
  });
});

describe('secrets', () => {
  const token = fakeGithubToken(31);
  const awsKey = fakeAwsAccessKeyId(32);
  const password = fakeRandom(33, 28, BASE64);
  const jwt = fakeJwt({ alg: 'RS256', typ: 'JWT' }, 34);
  const pem = fakePem('OPENSSH PRIVATE KEY', 35);
  const text = [
    `GITHUB_TOKEN = "${token}"`,
    `AWS_ACCESS_KEY_ID = "${awsKey}"`,
    `db_password = "${password}"`,
    `AUTH = "Bearer ${jwt}"`,
    `KEY = """${pem}"""`,
  ].join('\n');
  const findings = analyzeSource(py(text, 'settings.py'));

  it('finds each secret once, by its specific rule', () => {
    expect(findings.map((f) => f.ruleId)).toEqual([
      'secret-github-token',
      'secret-aws-access-key',
      'secret-generic-assignment',
      'secret-jwt',
      'secret-private-key',
    ]);
  });

  it('masks the secret in matchedText and hashes it in normalizedMatch', () => {
    const secrets = [token, awsKey, password, jwt, pem];
    findings.forEach((finding, i) => {
      const secret = secrets[i] ?? '';
      expect(finding.matchedText).toBe(`${secret.slice(0, 4)}…`);
      expect(finding.normalizedMatch).toBe(sha256Hex(secret.replace(/\s+/g, ' ').trim()));
      const serialized = JSON.stringify(finding);
      // No 8-character window of the secret beyond its first 4 characters leaves the engine.
      for (let at = 1; at + 8 <= secret.length; at++) expect(serialized).not.toContain(secret.slice(at, at + 8));
    });
  });

  it('validates GitHub classic token checksums with CRC32', () => {
    expect(crc32('')).toBe(0);
    expect(crc32('123456789')).toBe(0xcbf43926); // the CRC-32/ISO-HDLC check value
    expect(crc32('The quick brown fox jumps over the lazy dog')).toBe(0x414fa339);
    expect(base62(0, 6)).toBe('000000');
    expect(base62(61)).toBe('z');
    expect(base62(62)).toBe('10');
    expect(base62(0xffffffff)).toBe('4gfFC3');
    expect(isValidGithubClassicToken(token)).toBe(true);
    expect(isValidGithubClassicToken(withBrokenChecksum(token))).toBe(false);
    for (const kind of ['o', 'u', 's', 'r'] as const) expect(isValidGithubClassicToken(fakeGithubToken(40, kind))).toBe(true);
    const broken = analyzeSource(py(`GITHUB_TOKEN = "${withBrokenChecksum(token)}"`));
    expect(broken).toEqual([]); // not by the GitHub rule, and not by the generic one either
  });

  it('checks that a JWT header decodes to JSON with "alg"', () => {
    expect(hasJwtHeader(jwt)).toBe(true);
    expect(hasJwtHeader(fakeJwt({ typ: 'JWT' }, 1))).toBe(false);
    expect(hasJwtHeader('eyJub3QganNvbg.eyJ.abc')).toBe(false);
  });

  it('does not treat placeholders and environment lookups as secrets', () => {
    const text = [
      'password = "changeme-changeme-123"',
      'password = "${DB_PASSWORD}"',
      'password = "xxxxxxxxxxxxxxxxxxxx"',
      "password = os.environ['DB_PASSWORD']",
      'password = os.getenv("DB_PASSWORD", "")',
      'api_key = "your-api-key-goes-here"',
      'secret_name = "prod/payments/stripe-api"',
      'token_url = "https://auth.example.test/oauth/token"',
      'password_field = "user_password_confirmation"',
      `short_token = "${fakeRandom(50, 12, BASE64)}"`,
      "ROLE_TOKEN_CREATOR = 'roles/iam.serviceAccountTokenCreator'",
      "SECRETS_ANNOTATION = 'run.googleapis.com/secrets'",
      "precommit_token: 'MultiplexedSessionPrecommitToken' = proto.Field()",
      "types = {'secret_ref': 'V1LocalObjectReference', 'image_pull_secrets': 'list[V1LocalObjectReference]'}",
      "METADATA_TOKEN_HEADER = 'x-aws-ec2-metadata-token'",
      "kafka_password = 'projects/123/secrets/my-secret/versions/1'",
      `response = {"NextContinuationToken": "${fakeRandom(52, 40, BASE64)}"}`,
    ].join('\n');
    expect(analyzeSource(py(text))).toEqual([]);
    const yaml: SourceFile = { path: 'flags.yaml', language: 'yaml', text: 'oidc_client_secret_value: &oidc_client_secret_value\n' };
    expect(analyzeSource(yaml)).toEqual([]);
  });

  it('finds unquoted assignments in env-style files but not in code', () => {
    const value = fakeRandom(51, 32, BASE64);
    const env: SourceFile = { path: '.env', language: 'other', text: `API_TOKEN=${value}\n` };
    expect(analyzeSource(env).map((f) => f.ruleId)).toEqual(['secret-generic-assignment']);
    expect(analyzeSource(js(`const apiToken = ${value.replace(/[+/]/g, 'x')};`))).toEqual([]);
  });
});

describe('matched text limits', () => {
  it('caps matchedText at 500 characters and bounds normalizedMatch', () => {
    const arg = 'part + '.repeat(400) + 'end';
    const [finding] = analyzeSource(js(`exec('x' + ${arg});`));
    expect(finding?.ruleId).toBe('js-child-process-exec');
    expect(finding?.matchedText).toHaveLength(501);
    expect(finding?.matchedText.endsWith('…')).toBe(true);
    expect(finding?.normalizedMatch.length).toBeLessThanOrEqual(1000);
    expect(finding?.normalizedMatch).toMatch(/…[0-9a-f]{64}$/);
  });
});

describe('hostile input', () => {
  const MB = 1 << 20;
  const languages: Language[] = ['javascript', 'typescript', 'python', 'java', 'go', 'php', 'ruby', 'shell', 'yaml', 'json', 'text', 'other'];
  const fill = (unit: string) => unit.repeat(Math.ceil(MB / unit.length));
  const inputs: Record<string, string> = {
    'one long line': 'a'.repeat(MB),
    'many long lines': fill('x'.repeat(4000) + '\n'),
    'unclosed calls': fill('eval('),
    'unclosed strings': fill(`"'\``),
    'unclosed template expressions': fill('`${'),
    'unclosed comments': fill('/* # """ '),
    'assignment prefixes': fill('password = "'),
    'bare assignments': fill('token='),
    'JWT prefixes': fill('eyJ'),
    'private key headers': fill('-----BEGIN PRIVATE KEY-----'),
    'private key without end': '-----BEGIN RSA PRIVATE KEY-----\n' + fill('QUJD\n'),
    'service account without end': '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----' + fill('QUJD'),
    'key id prefixes': fill('AKIA'),
    'token prefixes': fill('ghp_xoxb-1234567-glpat-sk_live_'),
    'SQL format prefixes': fill('fmt.Sprintf("SELECT '),
    'shell interpolation prefixes': fill('system("#{'),
    'include prefixes': fill('include ( $_'),
    'deep parentheses': '('.repeat(MB / 2) + ')'.repeat(MB / 2),
    'suppression comments': fill('// auditflow-ignore: a, b, c\n'),
  };

  // No timing assertions: the test timeout is the guard. analyzeSource is synchronous, and a
  // timer cannot interrupt synchronous code, so the test yields to the event loop after each
  // language; a run that has overstayed its timeout then fails there.
  it.each(Object.keys(inputs))('analyses 1 MB of %s in every language', async (name) => {
    const text = inputs[name] ?? '';
    expect(text.length).toBeGreaterThanOrEqual(MB - 64);
    for (const language of languages) {
      const findings = analyzeSource({ path: 'hostile', language, text });
      expect(Array.isArray(findings)).toBe(true);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }, 15_000);

  it('keeps the rule catalogue immutable', () => {
    expect(Object.isFrozen(rules)).toBe(true);
  });
});
