import { lookup } from 'node:dns/promises';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ipaddr from 'ipaddr.js';

/**
 * Checks a repository URL before anything connects to it (issue 6, criterion 2 "Safe fetch"),
 * and, with the same rules, a document URL (issue 7; `SourcePolicy.names` words its refusals).
 *
 * Only `https`, `http` and `file` are accepted. A remote host must be named by the allowlist
 * and is resolved exactly once here: the caller pins the returned address for the connection
 * (git's `http.curloptResolve`), so a second lookup cannot answer differently (DNS rebinding).
 * Every resolved address must be public, unless the allowlist names that very IP literal (tests
 * allowlist 127.0.0.1). A `file:` URL must resolve, symlinks followed, inside one of the roots.
 */

export type UnsafeSourceCode =
  | 'malformed'
  | 'credentials-in-url'
  | 'scheme-not-allowed'
  | 'host-not-allowed'
  | 'non-public-address'
  | 'unresolvable'
  | 'option-injection'
  | 'path-outside-roots';

export class UnsafeSourceError extends Error {
  constructor(
    readonly code: UnsafeSourceCode,
    message: string,
  ) {
    super(message);
    this.name = 'UnsafeSourceError';
  }
}

export type CheckedSource =
  | {
      kind: 'remote';
      /** The normalised URL (WHATWG), without fragment; the only form handed to git. */
      url: URL;
      /** The host as in `url.hostname`, without IPv6 brackets. */
      host: string;
      port: number;
      /** The one resolved address to connect to (pinned). */
      address: string;
    }
  | {
      kind: 'file';
      /** The repository's real path (symlinks resolved), inside one of the roots. */
      path: string;
    };

export interface SourcePolicy {
  /** Host names or IP literals (`SCAN_ALLOWED_HOSTS`); names compare case-insensitively. */
  allowedHosts: string[];
  /** Directories under which `file:` repositories may live (`SCAN_FILE_ROOTS`). */
  fileRoots: string[];
  /** How refusals name what was checked; a repository's by default. */
  names?: SourceNames;
}

/** What refusals call the URL and the allowlist, so each caller's users read their own setting's name. */
export interface SourceNames {
  /** What the URL locates, e.g. "repository URL". */
  url: string;
  /** The setting `allowedHosts` comes from, e.g. "SCAN_ALLOWED_HOSTS". */
  allowlist: string;
  /** Where credentials belong instead of the URL. */
  credentials: string;
}

const repositoryNames: SourceNames = {
  url: 'repository URL',
  allowlist: 'SCAN_ALLOWED_HOSTS',
  credentials: 'store the token in the vault and reference it from the project instead',
};

const ALLOWED_SCHEMES = new Set(['https:', 'http:', 'file:']);

export async function checkRemoteUrl(raw: string, policy: SourcePolicy): Promise<CheckedSource> {
  const names = policy.names ?? repositoryNames;
  const url = parseSourceUrl(raw, names);
  if (url.protocol === 'file:') return { kind: 'file', path: await checkFilePath(url, policy.fileRoots) };

  if (url.username !== '' || url.password !== '') {
    throw new UnsafeSourceError('credentials-in-url', `The ${names.url} carries credentials: ${names.credentials}.`);
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  const allowed = normalisedAllowlist(policy.allowedHosts);
  url.hash = '';

  if (ipaddr.isValid(host)) {
    // An IP literal (the URL parser already turned decimal, octal and hex spellings into dotted quads).
    const address = canonicalIp(host);
    if (allowed.has(address)) return { kind: 'remote', url, host, port, address };
    if (!isPublicAddress(address)) throw nonPublic(host, address);
    throw notAllowed(host, names);
  }
  if (!allowed.has(host)) throw notAllowed(host, names);

  let resolved: { address: string }[];
  try {
    resolved = await lookup(host, { all: true, verbatim: true });
  } catch (err) {
    throw new UnsafeSourceError('unresolvable', `The host ${host} could not be resolved (${(err as NodeJS.ErrnoException).code ?? 'error'}).`);
  }
  if (resolved.length === 0) throw new UnsafeSourceError('unresolvable', `The host ${host} resolved to no address.`);
  // Every address must pass, not only the one we pin: a name mixing public and private answers is hostile.
  for (const { address } of resolved) {
    const canonical = canonicalIp(address);
    if (!allowed.has(canonical) && !isPublicAddress(canonical)) throw nonPublic(host, canonical);
  }
  return { kind: 'remote', url, host, port, address: canonicalIp(resolved[0]!.address) };
}

/**
 * True for a globally routable unicast address. Loopback, private (RFC 1918), link-local (incl.
 * 169.254.169.254), CGNAT (100.64/10), unspecified (0.0.0.0/8, ::), multicast, broadcast,
 * reserved and documentation ranges, IPv6 ULA (fc00::/7), link-local (fe80::/10), NAT64 and
 * 6to4/Teredo tunnels (they embed an IPv4 address we cannot vouch for) are not; an IPv4-mapped
 * IPv6 address is judged by its IPv4 address. Anything that is not an IP address is not public.
 */
export function isPublicAddress(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return false;
  const parsed = ipaddr.parse(ip);
  if (parsed.kind() === 'ipv4') {
    // ipaddr.js also accepts the short forms inet_aton knows (`127.1`); they parse to the same address.
    return parsed.range() === 'unicast';
  }
  const v6 = parsed as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().range() === 'unicast';
  // Only the global unicast block 2000::/3 is public; ipaddr.js calls other unlisted space "unicast" too.
  return v6.range() === 'unicast' && v6.match(ipaddr.IPv6.parse('2000::'), 3);
}

/** Refuses everything that is not a plain http(s) or file URL before the WHATWG parser sees it. */
function parseSourceUrl(raw: string, names: SourceNames): URL {
  if (raw.startsWith('-')) {
    throw new UnsafeSourceError('option-injection', `The ${names.url} starts with "-": it would be read as a git option.`);
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(raw)) {
    // git's "<transport>::<address>" remote-helper syntax (ext::, fd::, …) runs arbitrary commands.
    throw new UnsafeSourceError('scheme-not-allowed', 'Git remote-helper URLs ("transport::address") are not allowed: use an https URL.');
  }
  // eslint-disable-next-line no-control-regex -- the point is to find control characters
  if (/[\u0000-\u001f\u007f\s]/.test(raw)) {
    throw new UnsafeSourceError('malformed', `The ${names.url} contains whitespace or control characters.`);
  }
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(raw)) {
    // scp-like "host:path" (ssh) and bare local paths.
    throw new UnsafeSourceError('scheme-not-allowed', 'The repository must be an https:// (or http://, file://) URL; scp-like "host:path" and plain paths are not allowed.');
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeSourceError('malformed', `The ${names.url} is not a valid URL.`);
  }
  if (!ALLOWED_SCHEMES.has(url.protocol)) {
    throw new UnsafeSourceError('scheme-not-allowed', `The scheme ${url.protocol.slice(0, -1)} is not allowed: use https (or http, file).`);
  }
  return url;
}

async function checkFilePath(url: URL, fileRoots: string[]): Promise<string> {
  if (url.hostname !== '' && url.hostname !== 'localhost') {
    throw new UnsafeSourceError('host-not-allowed', 'file: URLs must not name a host.');
  }
  let requested: string;
  try {
    requested = fileURLToPath(url);
  } catch {
    throw new UnsafeSourceError('malformed', 'The file: URL does not name a local path.');
  }
  let real: string;
  try {
    real = await realpath(requested);
  } catch {
    throw new UnsafeSourceError('unresolvable', `The path ${requested} does not exist.`);
  }
  for (const root of fileRoots) {
    let realRoot: string;
    try {
      realRoot = await realpath(root);
    } catch {
      continue; // a configured root that does not exist admits nothing
    }
    const relative = path.relative(realRoot, real);
    if (relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative))) return real;
  }
  throw new UnsafeSourceError('path-outside-roots', `The path ${requested} is not inside an allowed file root (SCAN_FILE_ROOTS).`);
}

/** Allowlist entries in the form URL hostnames take: lower-case names, canonical IP literals. */
function normalisedAllowlist(entries: string[]): Set<string> {
  const result = new Set<string>();
  for (const entry of entries) {
    const bare = entry.trim().replace(/^\[(.*)\]$/, '$1');
    if (bare === '') continue;
    if (ipaddr.isValid(bare) && bare.includes(':')) {
      result.add(canonicalIp(bare));
      continue;
    }
    try {
      const hostname = new URL(`http://${bare}/`).hostname;
      result.add(ipaddr.isValid(hostname) ? canonicalIp(hostname) : hostname);
    } catch {
      // Not a host name: it can match nothing.
    }
  }
  return result;
}

/** One spelling per address, so an allowlisted `::1` matches a resolved `0:0:0:0:0:0:0:1`. */
function canonicalIp(ip: string): string {
  return ipaddr.parse(ip.replace(/^\[(.*)\]$/, '$1')).toString();
}

function notAllowed(host: string, names: SourceNames): UnsafeSourceError {
  return new UnsafeSourceError('host-not-allowed', `The host ${host} is not in the allowlist (${names.allowlist}).`);
}

function nonPublic(host: string, address: string): UnsafeSourceError {
  const via = host === address ? '' : ` (${host} resolves to it)`;
  return new UnsafeSourceError('non-public-address', `The address ${address}${via} is not public (loopback, private, link-local or reserved): refused.`);
}
