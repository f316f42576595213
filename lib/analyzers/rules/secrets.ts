/**
 * Language-agnostic credential rules. Each reports the range of the secret itself (named group
 * `target`), so the engine can mask it and fingerprint a hash of it. Formats are validated as
 * far as the token format allows (GitHub's CRC32 checksum, a JWT header that decodes to JSON
 * with "alg"), and placeholders (EXAMPLE keys, xxxx, ${VAR}, changeme) are not reported.
 */
import { regexRule, type RuleMeta } from '../rule-builder';
import type { Language, RuleMatch } from '../types';
import { base62, crc32, isPlaceholder, shannonEntropy } from '../util';

const SECRET: Pick<RuleMeta, 'cwe' | 'languages' | 'secret'> = { cwe: 'CWE-798', languages: 'any', secret: true };

const GCP_SERVICE_ACCOUNT = /"type"\s*:\s*"service_account"/;

/** Whether a classic GitHub token (`ghp_` + 30 random + 6 checksum) carries a valid CRC32. */
export function isValidGithubClassicToken(token: string): boolean {
  if (!/^gh[pousr]_[A-Za-z0-9]{36}$/.test(token)) return false;
  const random = token.slice(4, 34);
  return base62(crc32(random), 6) === token.slice(34);
}

/** Whether the first part of a JWT decodes to a JSON object with a string "alg". */
export function hasJwtHeader(jwt: string): boolean {
  const header = jwt.slice(0, jwt.indexOf('.'));
  try {
    const parsed: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    return typeof parsed === 'object' && parsed !== null && 'alg' in parsed && typeof parsed.alg === 'string';
  } catch {
    return false;
  }
}

/** Prefixes of formats the dedicated rules own; the generic rule leaves them alone. */
const KNOWN_FORMAT = /^(?:AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|gl[a-z]{2,5}-|xox[baprs]-|[sr]k_(?:live|test)_|eyJ|-----BEGIN|https?:\/\/hooks\.slack\.com)/;

/** Last words of names that hold something about a secret, not the secret (`token_url`, `passwordField`). */
const NOT_A_SECRET_LAST_WORD: ReadonlySet<string> = new Set(
  (
    'url uri path file dir name type field label hint header param prefix suffix endpoint length len min max regex ' +
    'pattern policy format mode id kind env var count limit expiry expires ttl timeout version ref arn annotation'
  ).split(' '),
);

/** The last word of an identifier tail: `_field` → field, `FileName` → name. */
function lastWord(identifierTail: string): string {
  const words = identifierTail.split(/[_.-]|(?<=[a-z0-9])(?=[A-Z])/).filter((w) => w !== '');
  return (words[words.length - 1] ?? '').toLowerCase();
}

/** Identifier prefixes naming values that are not credentials (`NextContinuationToken`, `csrf_token`). */
const NOT_A_SECRET_PREFIX = /(?:next|continuation|page|paging|pagination|cursor|marker|sync|csrf|xsrf|idempotency|cancellation)[_.-]?$/i;

/** Languages where `NAME=value` without quotes is an assignment of a literal (.env, YAML, shell). */
const BARE_VALUE_LANGUAGES: ReadonlySet<Language> = new Set(['yaml', 'shell', 'dockerfile', 'text', 'other', 'terraform']);

/** Minimum Shannon entropy (bits per character) of a generic secret value. */
export const GENERIC_SECRET_MIN_ENTROPY = 3.5;

/**
 * Share of the value's letters and digits that sit in readable words (3+ letters with a vowel:
 * `serviceAccountTokenCreator`, `AUTH_CLIENT_SECRET_value`). Random tokens stay well below
 * READABLE_MAX; names, type names, resource paths and documentation values are above it.
 */
export function readableShare(value: string): number {
  let covered = 0;
  for (const m of value.matchAll(/[A-Z]?[a-z]{2,}|[A-Z]{3,}(?![a-z])/g)) {
    if (m[0].length >= 3 && /[aeiouy]/i.test(m[0])) covered += m[0].length;
  }
  const total = value.replace(/[^A-Za-z0-9]/g, '').length;
  return total === 0 ? 1 : covered / total;
}

const READABLE_MAX = 0.85;

function looksLikeSecretValue(value: string): boolean {
  if (value.length < 16 || isPlaceholder(value)) return false;
  if (KNOWN_FORMAT.test(value)) return false;
  if (/^(?:[a-z][a-z0-9]*:\/\/|\/|\.{1,2}\/|~\/)/i.test(value)) return false; // URLs and paths
  if (/^[a-z_.-]+$/.test(value) || /^[A-Z_.-]+$/.test(value)) return false; // identifiers, constants
  if (/^[a-z0-9]+(?:[-_.][a-z0-9]+){2,}$/.test(value) && value.split(/[-_.]/).some((w) => /^[a-z]{3,}$/.test(w) && /[g-z]/.test(w))) {
    return false; // kebab/snake names: x-aws-ec2-metadata-token (but not UUIDs or hex groups)
  }
  if (/^[a-z]+(?:[A-Z][a-z]+)+$/.test(value)) return false; // camelCase words
  if (/^\w+(?:\.\w+)+$/.test(value) && !/\d/.test(value)) return false; // dotted names: config.db.password
  if (/[()$[\]{}<>]/.test(value) || /^[&*]/.test(value)) return false; // calls, references, templates, YAML anchors
  if (readableShare(value) >= READABLE_MAX) return false; // words, not randomness
  const segments = value.split('/');
  if (segments.length >= 3 && segments.some((segment) => /^[a-z]{4,}$/.test(segment))) return false; // resource paths
  return shannonEntropy(value) >= GENERIC_SECRET_MIN_ENTROPY;
}

function groupRange(m: RegExpExecArray, group: string): RuleMatch | null {
  const indices = m.indices?.groups?.[group];
  return indices ? { start: indices[0], end: indices[1] } : null;
}

export const secretRules = [
  regexRule({
    ...SECRET,
    id: 'secret-aws-access-key',
    title: 'AWS access key id',
    severity: 'critical',
    message: 'An AWS access key id is committed to the repository. Deactivate the key in IAM, remove it from the history, and load credentials from the environment or a role.',
    pattern: /(?<![A-Za-z0-9])(?<target>(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?![A-Za-z0-9])/,
    refine: (m) => !isPlaceholder(m.groups?.target ?? ''),
  }),
  regexRule({
    ...SECRET,
    id: 'secret-aws-secret-key',
    title: 'AWS secret access key',
    severity: 'critical',
    message: 'An AWS secret access key is assigned in the code. Rotate it in IAM and load credentials from the environment, a secrets manager or an instance role.',
    pattern:
      /(?:aws[\w.-]{0,20}secret|secret[_-]?access[_-]?key)[\w.-]{0,20}['"]?[ \t]{0,5}(?::=|=>|=|:)[ \t]{0,5}['"]?(?<target>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/i,
    refine: (m) => {
      const value = m.groups?.target ?? '';
      return !isPlaceholder(value) && shannonEntropy(value) >= 4;
    },
  }),
  regexRule({
    ...SECRET,
    id: 'secret-gcp-service-account-key',
    title: 'GCP service-account private key',
    severity: 'critical',
    message: 'A Google Cloud service-account key file with its private key is committed. Delete the key in IAM, remove the file from the history, and use workload identity or a secrets manager.',
    requires: GCP_SERVICE_ACCOUNT,
    pattern: /"private_key"\s*:\s*"(?<target>-----BEGIN PRIVATE KEY-----(?:\\n|[A-Za-z0-9+/=]){64,8000}?-----END PRIVATE KEY-----(?:\\n)?)"/,
    refine: (m) => /[A-Za-z0-9+/]{40}/.test(m.groups?.target ?? ''),
  }),
  regexRule({
    ...SECRET,
    id: 'secret-private-key',
    title: 'Private key',
    severity: 'critical',
    message: 'A private key is committed to the repository. Treat it as compromised: revoke and replace it, and keep keys in a secrets manager or mounted at deploy time.',
    unless: GCP_SERVICE_ACCOUNT,
    pattern:
      /(?<target>-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----(?:\\[nr]|[A-Za-z0-9+/=\s:,.'"+]|-(?!----)){40,16000}?-----END (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----)/,
    refine: (m) => /[A-Za-z0-9+/]{40}/.test(m.groups?.target ?? ''),
  }),
  regexRule({
    ...SECRET,
    id: 'secret-github-token',
    title: 'GitHub token',
    severity: 'critical',
    message: 'A GitHub token (with a valid checksum) is committed. Revoke it in GitHub settings and read tokens from the environment or a vault.',
    pattern: /(?<![A-Za-z0-9_])(?<target>gh[pousr]_[A-Za-z0-9]{36})(?![A-Za-z0-9_])/,
    refine: (m) => isValidGithubClassicToken(m.groups?.target ?? ''),
  }),
  regexRule({
    ...SECRET,
    id: 'secret-github-fine-grained-token',
    title: 'GitHub fine-grained personal access token',
    severity: 'critical',
    message: 'A GitHub fine-grained personal access token is committed. Revoke it in GitHub settings and read tokens from the environment or a vault.',
    pattern: /(?<![A-Za-z0-9_])(?<target>github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])/,
    refine: (m) => {
      const token = m.groups?.target ?? '';
      return !isPlaceholder(token.slice(11)) && shannonEntropy(token.slice(11)) >= 3.5;
    },
  }),
  regexRule({
    ...SECRET,
    id: 'secret-gitlab-token',
    title: 'GitLab token',
    severity: 'critical',
    message: 'A GitLab access token is committed. Revoke it in GitLab and read tokens from the environment or a vault.',
    pattern: /(?<![A-Za-z0-9_-])(?<target>gl(?:pat|dt|rt|ptt|ft|soat|cbt|imt)-[A-Za-z0-9_-]{20,64})(?![A-Za-z0-9_-])/,
    refine: (m) => {
      const random = (m.groups?.target ?? '').replace(/^gl[a-z]+-/, '');
      return !isPlaceholder(random) && shannonEntropy(random) >= 3;
    },
  }),
  regexRule({
    ...SECRET,
    id: 'secret-slack-token',
    title: 'Slack token',
    severity: 'high',
    message: 'A Slack API token is committed. Revoke it in the Slack app settings and read it from the environment or a vault.',
    pattern: /(?<![A-Za-z0-9-])(?<target>xox[baprs]-(?:[0-9]{6,15}-){1,3}[A-Za-z0-9]{16,64})(?![A-Za-z0-9-])/,
    refine: (m) => {
      const random = (m.groups?.target ?? '').replace(/^.*-/, '');
      return !isPlaceholder(random) && shannonEntropy(random) >= 3;
    },
  }),
  regexRule({
    ...SECRET,
    id: 'secret-slack-webhook',
    title: 'Slack incoming webhook URL',
    severity: 'medium',
    message: 'A Slack incoming-webhook URL lets anyone post to the channel. Regenerate the webhook and keep the URL in configuration, not in code.',
    pattern:
      /(?<target>https:\/\/hooks\.slack\.com\/services\/(?<team>T[A-Z0-9]{6,12})\/(?<bot>B[A-Z0-9]{6,12})\/(?<key>[A-Za-z0-9]{20,40}))(?![A-Za-z0-9])/,
    refine: (m) => {
      const g = m.groups ?? {};
      return ![g.team, g.bot, g.key].some((part) => isPlaceholder((part ?? '').slice(1)));
    },
  }),
  regexRule({
    ...SECRET,
    id: 'secret-stripe-key',
    title: 'Stripe live secret key',
    severity: 'critical',
    message: 'A live Stripe secret (or restricted) key is committed. Roll the key in the Stripe dashboard and read it from the environment or a vault.',
    pattern: /(?<![A-Za-z0-9_])(?<target>(?:sk|rk)_live_[0-9A-Za-z]{20,247})(?![A-Za-z0-9_])/,
    refine: (m) => {
      const random = (m.groups?.target ?? '').slice(8);
      return !isPlaceholder(random) && shannonEntropy(random) >= 3;
    },
  }),
  regexRule({
    ...SECRET,
    id: 'secret-jwt',
    title: 'JSON Web Token',
    severity: 'medium',
    message: 'A signed JWT is committed; until it expires it grants whatever it claims. Revoke or rotate the signing key if it is live, and generate tokens at run time in tests.',
    pattern: /(?<![A-Za-z0-9_-])(?<target>eyJ[A-Za-z0-9_-]{5,1000}\.[A-Za-z0-9_-]{2,8000}\.[A-Za-z0-9_-]{16,2000})(?![A-Za-z0-9_-])/,
    refine: (m) => hasJwtHeader(m.groups?.target ?? ''),
  }),
  regexRule({
    ...SECRET,
    id: 'secret-generic-assignment',
    title: 'Hard-coded secret',
    severity: 'high',
    message: 'A high-entropy string literal is assigned to a password/secret/token/key. Move it to the environment or a secrets manager and rotate it.',
    pattern:
      /(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|auth[_-]?key|private[_-]?key|credentials?)(?<suffix>[A-Za-z0-9_.-]{0,30})['"]?[ \t]{0,5}(?::=|=>|=|:)[ \t]{0,5}(?:(?<quote>['"`])(?<target>[^'"`\s\\]{16,200})\k<quote>|(?<bare>[A-Za-z0-9+/=_.~!@#%^&*-]{16,120})(?=[ \t]*(?:$|#|;|,)))/im,
    refine: (m, file) => {
      if (NOT_A_SECRET_LAST_WORD.has(lastWord(m.groups?.suffix ?? ''))) return false;
      const prefix = /[A-Za-z0-9_.-]{0,40}$/.exec(file.text.slice(Math.max(0, m.index - 40), m.index))?.[0] ?? '';
      if (NOT_A_SECRET_PREFIX.test(prefix)) return false;
      const range = groupRange(m, 'target') ?? (BARE_VALUE_LANGUAGES.has(file.language) ? groupRange(m, 'bare') : null);
      if (range === null) return false;
      return looksLikeSecretValue(file.text.slice(range.start, range.end)) ? range : false;
    },
  }),
];
