/**
 * Every rule: a true positive and a near-miss true negative, table-driven. A rule without a
 * case fails the "every rule has a case" test, so adding a rule means adding its test.
 */
import { analyzeSource, rules, severities, type Language } from '../../../lib/analyzers';
import {
  ALNUM,
  BASE64,
  DIGITS,
  fakeAwsAccessKeyId,
  fakeAwsSecretKey,
  fakeGithubToken,
  fakeJwt,
  fakePem,
  fakeRandom,
  join,
  UPPER,
  withBrokenChecksum,
} from './fixtures';

interface Case {
  ruleId: string;
  language: Language;
  positive: string;
  negative: string;
}

const pem = fakePem('RSA PRIVATE KEY', 7);
const gcpKey = (privateKey: string): string =>
  JSON.stringify(
    {
      type: 'service_account',
      project_id: 'demo-project',
      private_key_id: fakeRandom(3, 40, '0123456789abcdef'),
      private_key: privateKey,
      client_email: 'scanner@demo-project.iam.gserviceaccount.com',
    },
    null,
    2,
  );
const pkcs8 = fakePem('PRIVATE KEY', 11) + '\n';
const githubToken = fakeGithubToken(21);
const slackBotToken = join('xo', 'xb-', fakeRandom(5, 12, DIGITS), '-', fakeRandom(6, 13, DIGITS), '-', fakeRandom(7, 24));
const slackWebhook = join('https://hooks.', 'slack.com/services/T', fakeRandom(8, 8, UPPER + DIGITS), '/B', fakeRandom(9, 10, UPPER + DIGITS), '/', fakeRandom(10, 24));

const cases: Case[] = [
  // --- JavaScript / TypeScript ---------------------------------------------------------------
  { ruleId: 'js-eval', language: 'javascript', positive: 'const result = eval(userInput);', negative: 'const out = model.eval(batch);' },
  {
    ruleId: 'js-new-function',
    language: 'javascript',
    positive: "const fn = new Function('a', body);",
    negative: "const add = new Function('a', 'b', 'return a + b');",
  },
  {
    ruleId: 'js-child-process-exec',
    language: 'javascript',
    positive: "exec('ls ' + dir, callback);",
    negative: "execFile('ls', [dir], callback);",
  },
  {
    ruleId: 'js-sql-injection',
    language: 'typescript',
    positive: 'await db.query(`SELECT * FROM users WHERE id = ${req.params.id}`);',
    negative: "await db.query('SELECT * FROM users WHERE id = $1', [req.params.id]);",
  },
  {
    ruleId: 'js-inner-html',
    language: 'javascript',
    positive: "el.innerHTML = '<p>' + comment.body + '</p>';",
    negative: "el.innerHTML = '<p>Loading</p>';",
  },
  {
    ruleId: 'js-document-write',
    language: 'javascript',
    positive: 'document.write(location.hash.slice(1));',
    negative: "document.write('<p>static</p>');",
  },
  {
    ruleId: 'js-dangerously-set-inner-html',
    language: 'typescript',
    positive: 'return <div dangerouslySetInnerHTML={{ __html: post.body }} />;',
    negative: 'return <div dangerouslySetInnerHTML={{ __html: DOMPurify.sanitize(post.body) }} />;',
  },
  {
    ruleId: 'js-insecure-random',
    language: 'javascript',
    positive: 'const resetToken = Math.random().toString(36).slice(2);',
    negative: 'const jitterMs = Math.random() * 100;',
  },
  {
    ruleId: 'js-tls-reject-unauthorized',
    language: 'typescript',
    positive: 'https.request({ host, rejectUnauthorized: false });',
    negative: 'https.request({ host, rejectUnauthorized: true, ca });',
  },
  {
    ruleId: 'js-weak-password-hash',
    language: 'javascript',
    positive: "const digest = crypto.createHash('md5').update(password).digest('hex');",
    negative: "const etag = crypto.createHash('md5').update(body).digest('hex');",
  },
  { ruleId: 'js-open-redirect', language: 'javascript', positive: 'res.redirect(req.query.next);', negative: "res.redirect('/login');" },

  // --- Python --------------------------------------------------------------------------------
  {
    ruleId: 'py-eval',
    language: 'python',
    positive: 'result = eval(request.args.get("expr"))',
    negative: 'result = ast.literal_eval(request.args.get("expr"))',
  },
  {
    ruleId: 'py-subprocess-shell',
    language: 'python',
    positive: 'subprocess.run(f"tar xf {archive}", shell=True)',
    negative: 'subprocess.run(["tar", "xf", archive])',
  },
  { ruleId: 'py-os-system', language: 'python', positive: 'os.system("rm -rf " + path)', negative: 'os.system("clear")' },
  {
    ruleId: 'py-sql-string-format',
    language: 'python',
    positive: `cursor.execute("SELECT * FROM users WHERE name = '%s'" % name)`,
    negative: 'cursor.execute("SELECT * FROM users WHERE name = %s", (name,))',
  },
  { ruleId: 'py-pickle-load', language: 'python', positive: 'obj = pickle.loads(request.data)', negative: 'payload = pickle.dumps(obj)' },
  {
    ruleId: 'py-yaml-load',
    language: 'python',
    positive: 'config = yaml.load(stream)',
    negative: 'config = yaml.load(stream, Loader=yaml.SafeLoader)',
  },
  {
    ruleId: 'py-tls-verify-disabled',
    language: 'python',
    positive: 'requests.get(url, verify=False)',
    negative: 'requests.get(url, verify=ca_bundle)',
  },
  {
    ruleId: 'py-weak-password-hash',
    language: 'python',
    positive: 'digest = hashlib.md5(password.encode()).hexdigest()',
    negative: 'digest = hashlib.md5(file_bytes).hexdigest()',
  },
  {
    ruleId: 'py-insecure-random',
    language: 'python',
    positive: 'token = "".join(random.choice(alphabet) for _ in range(32))',
    negative: 'token = "".join(secrets.choice(alphabet) for _ in range(32))',
  },
  {
    ruleId: 'py-flask-debug',
    language: 'python',
    positive: 'app.run(host="0.0.0.0", debug=True)',
    negative: 'app.run(debug=os.environ.get("FLASK_DEBUG") == "1")',
  },
  { ruleId: 'py-tempfile-mktemp', language: 'python', positive: 'path = tempfile.mktemp()', negative: 'fd, path = tempfile.mkstemp()' },

  // --- Java ----------------------------------------------------------------------------------
  {
    ruleId: 'java-runtime-exec',
    language: 'java',
    positive: 'Runtime.getRuntime().exec("ping -c 1 " + host);',
    negative: 'Runtime.getRuntime().exec(new String[] {"ping", "-c", "1", host});',
  },
  {
    ruleId: 'java-sql-concatenation',
    language: 'java',
    positive: 'ResultSet rs = stmt.executeQuery("SELECT * FROM users WHERE id = " + id);',
    negative: 'PreparedStatement ps = conn.prepareStatement("SELECT * FROM users WHERE id = ?");',
  },
  {
    ruleId: 'java-unsafe-deserialization',
    language: 'java',
    positive: 'ObjectInputStream in = new ObjectInputStream(socket.getInputStream());',
    negative: 'ObjectOutputStream out = new ObjectOutputStream(socket.getOutputStream());',
  },
  {
    ruleId: 'java-weak-password-hash',
    language: 'java',
    positive: 'MessageDigest md = MessageDigest.getInstance("MD5");\nbyte[] hash = md.digest(password.getBytes(UTF_8));',
    negative: 'MessageDigest md = MessageDigest.getInstance("MD5");\nbyte[] checksum = md.digest(fileBytes);',
  },
  {
    ruleId: 'java-tls-trust-all',
    language: 'java',
    positive: 'public void checkServerTrusted(X509Certificate[] chain, String authType) {}',
    negative:
      'public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException { delegate.checkServerTrusted(chain, authType); }',
  },
  {
    ruleId: 'java-xxe',
    language: 'java',
    positive: 'DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();\nDocument doc = dbf.newDocumentBuilder().parse(input);',
    negative:
      'DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();\ndbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);\nDocument doc = dbf.newDocumentBuilder().parse(input);',
  },
  {
    ruleId: 'java-insecure-random',
    language: 'java',
    positive: 'String token = Long.toHexString(new Random().nextLong());',
    negative: 'String token = Long.toHexString(new SecureRandom().nextLong());',
  },
  {
    ruleId: 'java-path-traversal',
    language: 'java',
    positive: 'File file = new File(uploadDir, request.getParameter("name"));',
    negative: 'File file = new File(uploadDir, UUID.randomUUID().toString());',
  },
  {
    ruleId: 'java-csrf-disabled',
    language: 'java',
    positive: 'http.csrf(csrf -> csrf.disable());',
    negative: 'http.csrf(csrf -> csrf.csrfTokenRepository(tokenRepository));',
  },

  // --- Go ------------------------------------------------------------------------------------
  {
    ruleId: 'go-sql-sprintf',
    language: 'go',
    positive: `rows, err := db.Query(fmt.Sprintf("SELECT * FROM users WHERE name = '%s'", name))`,
    negative: 'rows, err := db.Query("SELECT * FROM users WHERE name = $1", name)',
  },
  {
    ruleId: 'go-exec-shell',
    language: 'go',
    positive: 'cmd := exec.Command("sh", "-c", "tar xf "+archive)',
    negative: 'cmd := exec.Command("tar", "xf", archive)',
  },
  {
    ruleId: 'go-tls-insecure-skip-verify',
    language: 'go',
    positive: 'cfg := &tls.Config{InsecureSkipVerify: true}',
    negative: 'cfg := &tls.Config{InsecureSkipVerify: false, RootCAs: pool}',
  },
  {
    ruleId: 'go-math-rand-secret',
    language: 'go',
    positive: 'import "math/rand"\n\nfunc newToken() string { return fmt.Sprintf("%x", rand.Int63()) }',
    negative: 'import "crypto/rand"\n\nfunc newToken() []byte { b := make([]byte, 32); rand.Read(b); return b }',
  },
  {
    ruleId: 'go-weak-password-hash',
    language: 'go',
    positive: 'sum := md5.Sum([]byte(password))',
    negative: 'sum := md5.Sum(fileContents)',
  },
  {
    ruleId: 'go-http-no-timeout',
    language: 'go',
    positive: 'log.Fatal(http.ListenAndServe(":8080", mux))',
    negative: 'srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}\nlog.Fatal(srv.ListenAndServe())',
  },
  {
    ruleId: 'go-path-traversal',
    language: 'go',
    positive: 'data, err := os.ReadFile(filepath.Join(baseDir, r.URL.Query().Get("file")))',
    negative: 'data, err := os.ReadFile(filepath.Join(baseDir, filepath.Base(r.URL.Query().Get("file"))))',
  },
  {
    ruleId: 'go-template-unescaped',
    language: 'go',
    positive: 'bio := template.HTML(r.FormValue("bio"))',
    negative: 'br := template.HTML("<br>")',
  },

  // --- PHP -----------------------------------------------------------------------------------
  { ruleId: 'php-eval', language: 'php', positive: "<?php\neval($_POST['code']);", negative: '<?php\n$calculator->eval($expression);' },
  {
    ruleId: 'php-command-injection',
    language: 'php',
    positive: `<?php\nsystem("ping -c 1 " . $_GET['host']);`,
    negative: "<?php\nsystem('ping -c 1 ' . escapeshellarg($host));",
  },
  {
    ruleId: 'php-unserialize',
    language: 'php',
    positive: "<?php\n$cart = unserialize($_COOKIE['cart']);",
    negative: "<?php\n$cart = unserialize($data, ['allowed_classes' => false]);",
  },
  {
    ruleId: 'php-sql-injection',
    language: 'php',
    positive: '<?php\n$result = mysqli_query($conn, "SELECT * FROM users WHERE id = $id");',
    negative: '<?php\n$stmt = $pdo->prepare("SELECT * FROM users WHERE id = ?");',
  },
  {
    ruleId: 'php-file-inclusion',
    language: 'php',
    positive: "<?php\ninclude($_GET['page'] . '.php');",
    negative: "<?php\ninclude __DIR__ . '/pages/' . basename($page) . '.php';",
  },
  {
    ruleId: 'php-curl-ssl-verify-disabled',
    language: 'php',
    positive: '<?php\ncurl_setopt($ch, CURLOPT_SSL_VERIFYPEER, false);',
    negative: '<?php\ncurl_setopt($ch, CURLOPT_SSL_VERIFYPEER, true);',
  },
  { ruleId: 'php-weak-password-hash', language: 'php', positive: '<?php\n$hash = md5($password);', negative: '<?php\n$etag = md5($body);' },
  {
    ruleId: 'php-xss-echo',
    language: 'php',
    positive: `<?php\necho "Hello " . $_GET['name'];`,
    negative: `<?php\necho "Hello " . htmlspecialchars($_GET['name'], ENT_QUOTES, 'UTF-8');`,
  },

  // --- Ruby ----------------------------------------------------------------------------------
  { ruleId: 'rb-eval', language: 'ruby', positive: 'result = eval(params[:expr])', negative: 'result = calculator.evaluate(params[:expr])' },
  {
    ruleId: 'rb-dynamic-send',
    language: 'ruby',
    positive: '@user.send(params[:action])',
    negative: '@user.public_send(ALLOWED_ACTIONS.fetch(params[:action]))',
  },
  {
    ruleId: 'rb-command-injection',
    language: 'ruby',
    positive: 'system("tar xf #{params[:file]}")',
    negative: 'system("tar", "xf", params[:file])',
  },
  {
    ruleId: 'rb-yaml-load',
    language: 'ruby',
    positive: 'config = YAML.load(request.body.read)',
    negative: 'config = YAML.safe_load(request.body.read)',
  },
  {
    ruleId: 'rb-sql-interpolation',
    language: 'ruby',
    positive: `User.where("name = '#{params[:name]}'")`,
    negative: 'User.where("name = ?", params[:name])',
  },
  {
    ruleId: 'rb-marshal-load',
    language: 'ruby',
    positive: 'session_data = Marshal.load(Base64.decode64(cookies[:session]))',
    negative: 'blob = Marshal.dump(session_data)',
  },
  {
    ruleId: 'rb-kernel-open',
    language: 'ruby',
    positive: 'content = open(params[:url]).read',
    negative: 'content = open("config/settings.yml").read',
  },
  {
    ruleId: 'rb-tls-verify-none',
    language: 'ruby',
    positive: 'http.verify_mode = OpenSSL::SSL::VERIFY_NONE',
    negative: 'http.verify_mode = OpenSSL::SSL::VERIFY_PEER',
  },
  {
    ruleId: 'rb-mass-assignment',
    language: 'ruby',
    positive: '@user.update(params.permit!)',
    negative: '@user.update(params.require(:user).permit(:name, :email))',
  },

  // --- Secrets (any language) ----------------------------------------------------------------
  {
    ruleId: 'secret-aws-access-key',
    language: 'python',
    positive: `aws_access_key_id = "${fakeAwsAccessKeyId(1)}"`,
    // AWS's documented example key id is a placeholder, not a credential.
    negative: `aws_access_key_id = "${join('AKIA', 'IOSFODNN7', 'EXAMPLE')}"`,
  },
  {
    ruleId: 'secret-aws-secret-key',
    language: 'python',
    positive: `aws_secret_access_key = "${fakeAwsSecretKey(2)}"`,
    negative: 'aws_secret_access_key = os.environ["AWS_SECRET_ACCESS_KEY"]',
  },
  {
    ruleId: 'secret-gcp-service-account-key',
    language: 'json',
    positive: gcpKey(pkcs8),
    negative: gcpKey(join('-----BEGIN ', 'PRIVATE KEY-----\n<your private key>\n-----END ', 'PRIVATE KEY-----\n')),
  },
  {
    ruleId: 'secret-private-key',
    language: 'text',
    positive: pem,
    negative: fakePem('PUBLIC KEY', 7),
  },
  {
    ruleId: 'secret-github-token',
    language: 'yaml',
    positive: `github_token: ${githubToken}`,
    negative: `github_token: ${withBrokenChecksum(githubToken)}`,
  },
  {
    ruleId: 'secret-github-fine-grained-token',
    language: 'shell',
    positive: `export GH_TOKEN=${join('github', '_pat_', fakeRandom(12, 22), '_', fakeRandom(13, 59))}`,
    negative: `export GH_TOKEN=${join('github', '_pat_', 'x'.repeat(22), '_', 'x'.repeat(59))}`,
  },
  {
    ruleId: 'secret-gitlab-token',
    language: 'typescript',
    positive: `const gitlab = new Gitlab({ token: '${join('gl', 'pat-', fakeRandom(14, 20, ALNUM + '_-'))}' });`,
    negative: `const gitlab = new Gitlab({ token: '${join('gl', 'pat-', 'x'.repeat(20))}' });`,
  },
  {
    ruleId: 'secret-slack-token',
    language: 'javascript',
    positive: `const slack = new WebClient('${slackBotToken}');`,
    negative: "const slack = new WebClient('xoxb-your-bot-token-here');",
  },
  {
    ruleId: 'secret-slack-webhook',
    language: 'python',
    positive: `WEBHOOK = "${slackWebhook}"`,
    negative: `WEBHOOK = "${join('https://hooks.', 'slack.com/services/T', '0'.repeat(8), '/B', '0'.repeat(8), '/', 'X'.repeat(24))}"`,
  },
  {
    ruleId: 'secret-stripe-key',
    language: 'ruby',
    positive: `Stripe.api_key = "${join('sk', '_live_', fakeRandom(15, 24))}"`,
    negative: `Stripe.api_key = "${join('sk', '_test_', fakeRandom(15, 24))}"`,
  },
  {
    ruleId: 'secret-jwt',
    language: 'javascript',
    positive: `const auth = 'Bearer ${fakeJwt({ alg: 'HS256', typ: 'JWT' }, 16)}';`,
    negative: `const auth = 'Bearer ${fakeJwt({ typ: 'JWT', kid: 'key-1' }, 16)}';`,
  },
  {
    ruleId: 'secret-generic-assignment',
    language: 'python',
    positive: `password = "${fakeRandom(17, 24, BASE64)}"`,
    negative: "password = os.environ['DB_PASSWORD']",
  },
];

const findingsOf = (c: Case, text: string) =>
  analyzeSource({ path: `fixture/${c.ruleId}`, language: c.language, text }).filter((f) => f.ruleId === c.ruleId);

describe('rule cases', () => {
  it.each(cases)('$ruleId reports the true positive', (c) => {
    const findings = findingsOf(c, c.positive);
    expect(findings).toHaveLength(1);
    expect(findings[0]?.suppressed).toBe(false);
  });

  it.each(cases)('$ruleId leaves the near-miss alone', (c) => {
    expect(findingsOf(c, c.negative)).toEqual([]);
  });

  it.each(cases.filter((c) => c.ruleId.startsWith('secret-')))('$ruleId masks the secret and hashes it for the fingerprint', (c) => {
    const [finding] = findingsOf(c, c.positive);
    expect(finding).toBeDefined();
    if (finding === undefined) return;
    expect(finding.matchedText).toMatch(/^[^\n]{4}…$/);
    expect(finding.normalizedMatch).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('rule catalogue', () => {
  const languagePrefix: Record<string, readonly Language[] | 'any'> = {
    js: ['javascript', 'typescript'],
    py: ['python'],
    java: ['java'],
    go: ['go'],
    php: ['php'],
    rb: ['ruby'],
    secret: 'any',
  };

  it('has a test case for every rule, and no case for an unknown rule', () => {
    const ids = new Set(rules.map((r) => r.id));
    const tested = new Set(cases.map((c) => c.ruleId));
    expect([...ids].filter((id) => !tested.has(id))).toEqual([]);
    expect([...tested].filter((id) => !ids.has(id))).toEqual([]);
  });

  it('has unique ids', () => {
    const ids = rules.map((r) => r.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it.each(rules.map((r) => [r.id, r] as const))('%s has complete metadata', (_id, rule) => {
    expect(rule.id).toMatch(/^(js|py|java|go|php|rb|secret)-[a-z0-9]+(?:-[a-z0-9]+)*$/);
    const prefix = rule.id.split('-')[0] ?? '';
    expect(rule.languages).toEqual(languagePrefix[prefix]);
    expect(rule.title.trim()).not.toBe('');
    expect(severities).toContain(rule.severity);
    expect(rule.cwe).toMatch(/^CWE-\d+$/);
    expect(rule.message).toMatch(/^\S[^\n]{20,}\.$/);
    expect(rule.message.split(/\.\s+(?=[A-Z])/).length).toBeLessThanOrEqual(3);
    if (prefix === 'secret') {
      expect(rule.secret).toBe(true);
      expect(rule.cwe).toBe('CWE-798');
    } else {
      expect(rule.secret).toBeUndefined();
    }
  });

  it('has at least 40 code rules, at least 4 per language, plus secret rules', () => {
    const counts = new Map<string, number>();
    for (const rule of rules) {
      const prefix = rule.id.split('-')[0] ?? '';
      counts.set(prefix, (counts.get(prefix) ?? 0) + 1);
    }
    for (const prefix of ['js', 'py', 'java', 'go', 'php', 'rb']) expect(counts.get(prefix) ?? 0).toBeGreaterThanOrEqual(4);
    expect(rules.filter((r) => r.secret !== true).length).toBeGreaterThanOrEqual(40);
    expect(counts.get('secret') ?? 0).toBeGreaterThanOrEqual(10);
  });
});
