/** Java rules. */
import { callRule, regexRule } from '../rule-builder';
import { statementStart } from '../source';
import { anyArgMatches, firstArgDynamic, firstArgDynamicSql, PASSWORD_CONTEXT, SECRET_CONTEXT } from './shared';

const JAVA = ['java'] as const;

export const javaRules = [
  callRule({
    id: 'java-runtime-exec',
    title: 'Runtime.exec with a concatenated command',
    severity: 'critical',
    cwe: 'CWE-78',
    message: 'A command string built from input is split and run by Runtime.exec, so input can add arguments or commands. Pass a fixed String[] or use ProcessBuilder with separate arguments.',
    languages: JAVA,
    callee: /(?:\bRuntime\s*\.\s*getRuntime\s*\(\s*\)|\b[rR]untime|\brt)\s*\.\s*exec\s*\(/,
    check: firstArgDynamic,
  }),
  callRule({
    id: 'java-sql-concatenation',
    title: 'SQL statement built by concatenation',
    severity: 'critical',
    cwe: 'CWE-89',
    message: 'The query text is concatenated or formatted from values, so input can change the SQL. Use a PreparedStatement with ? placeholders and setString/setInt.',
    languages: JAVA,
    callee:
      /\.\s*(?:executeQuery|executeUpdate|executeLargeUpdate|execute|addBatch|prepareStatement|prepareCall|createQuery|createNativeQuery|createSQLQuery|queryForObject|queryForList|queryForMap|query|update)\s*\(/,
    check: firstArgDynamicSql,
  }),
  regexRule({
    id: 'java-unsafe-deserialization',
    title: 'Java deserialization of a stream',
    severity: 'high',
    cwe: 'CWE-502',
    message: 'ObjectInputStream/XMLDecoder instantiate whatever classes the bytes name, so untrusted input leads to code execution. Use a data format such as JSON, or an ObjectInputFilter allowlist.',
    languages: JAVA,
    pattern: /\bnew\s+(?:ObjectInputStream|XMLDecoder)\s*\(|\.\s*enableDefaultTyping\s*\(/,
  }),
  regexRule({
    id: 'java-weak-password-hash',
    title: 'MD5/SHA-1 used to hash a password',
    severity: 'high',
    cwe: 'CWE-916',
    message: 'Fast hashes like MD5 and SHA-1 let stolen password hashes be cracked quickly. Use BCrypt, SCrypt, Argon2 or PBKDF2 for passwords.',
    languages: JAVA,
    pattern: /\bMessageDigest\s*\.\s*getInstance\s*\(\s*"(?:MD2|MD4|MD5|SHA|SHA-?1)"/i,
    context: { pattern: PASSWORD_CONTEXT, linesAfter: 3 },
  }),
  regexRule({
    id: 'java-tls-trust-all',
    title: 'Certificate or hostname verification disabled',
    severity: 'high',
    cwe: 'CWE-295',
    message: 'A TrustManager or HostnameVerifier that accepts everything lets anyone impersonate the server. Use the default verifiers and add private CAs to a trust store instead.',
    languages: JAVA,
    pattern:
      /\bcheckServerTrusted\s*\([^(){};]{0,200}\)\s*(?:throws\s+[\w.\s,]{1,120})?\{\s*(?:\/\/[^\n]{0,200}\n\s*|\/\*[^*]{0,200}\*\/\s*)?\}|\bsetHostnameVerifier\s*\(\s*\(\s*\w{1,40}\s*,\s*\w{1,40}\s*\)\s*->\s*true\b|\bNoopHostnameVerifier\b|\bALLOW_ALL_HOSTNAME_VERIFIER\b|\bboolean\s+verify\s*\(\s*String\s+\w{1,40}\s*,\s*SSLSession\s+\w{1,40}\s*\)\s*\{\s*return\s+true\s*;\s*\}/,
  }),
  regexRule({
    id: 'java-xxe',
    title: 'XML parser without external-entity protection',
    severity: 'high',
    cwe: 'CWE-611',
    message: 'This XML factory resolves external entities by default, allowing file disclosure and SSRF through crafted XML. Set disallow-doctype-decl (or disable external entities and DTDs) on the factory.',
    languages: JAVA,
    pattern: /\b(?:DocumentBuilderFactory|SAXParserFactory|XMLInputFactory|TransformerFactory|SchemaFactory)\s*\.\s*new(?:Default)?(?:Instance|Factory)\s*\([^()]{0,100}\)/,
    unless: /disallow-doctype-decl|external-general-entities|ACCESS_EXTERNAL_DTD|ACCESS_EXTERNAL_SCHEMA|SUPPORT_DTD|IS_SUPPORTING_EXTERNAL_ENTITIES|FEATURE_SECURE_PROCESSING/,
  }),
  regexRule({
    id: 'java-insecure-random',
    title: 'java.util.Random used for a secret value',
    severity: 'medium',
    cwe: 'CWE-338',
    message: 'java.util.Random and Math.random are predictable and must not produce tokens, passwords or nonces. Use java.security.SecureRandom.',
    languages: JAVA,
    pattern: /\bnew\s+(?:java\s*\.\s*util\s*\.\s*)?Random\s*\(|\bMath\s*\.\s*random\s*\(\s*\)|\bThreadLocalRandom\s*\.\s*current\s*\(\s*\)/,
    context: { pattern: SECRET_CONTEXT },
    refine: (_m, file, range) => ({ start: statementStart(file, range.start), end: range.end }),
  }),
  callRule({
    id: 'java-path-traversal',
    title: 'File path from request parameters',
    severity: 'high',
    cwe: 'CWE-22',
    message: 'A path built from a request parameter can contain ../ and reach files outside the intended directory. Normalise it and check it stays under the base directory, or map ids to files.',
    languages: JAVA,
    callee: /\b(?:new\s+(?:File|FileInputStream|FileOutputStream|FileReader|FileWriter|RandomAccessFile)|Paths\s*\.\s*get|Path\s*\.\s*of)\s*\(/,
    check: anyArgMatches(/\b(?:request|req)\s*\.\s*get(?:Parameter|Header|QueryString)\s*\(/),
  }),
  regexRule({
    id: 'java-csrf-disabled',
    title: 'Spring Security CSRF protection disabled',
    severity: 'medium',
    cwe: 'CWE-352',
    message: 'Disabling CSRF protection lets other sites submit state-changing requests with the user\'s cookies. Keep it on for cookie-authenticated endpoints.',
    languages: JAVA,
    pattern:
      /\bcsrf\s*\(\s*\)\s*\.\s*disable\s*\(\s*\)|\bcsrf\s*\(\s*(?:AbstractHttpConfigurer\s*::\s*disable|(\w{1,40})\s*->\s*\1\s*\.\s*disable\s*\(\s*\))\s*\)/,
  }),
];
