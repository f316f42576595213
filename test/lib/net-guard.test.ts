import { mkdir, mkdtemp, realpath, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkRemoteUrl, isPublicAddress, UnsafeSourceError, type UnsafeSourceCode } from '../../lib/net-guard';
import { startCanary, type Canary } from '../harness/git-server';

let canary: Canary;
let dir: string;
let fileRoot: string;

beforeAll(async () => {
  canary = await startCanary();
  dir = await mkdtemp(path.join(tmpdir(), 'net-guard-'));
  fileRoot = path.join(dir, 'repos');
  await mkdir(path.join(fileRoot, 'app.git'), { recursive: true });
  await mkdir(path.join(dir, 'outside.git'));
  await symlink(path.join(dir, 'outside.git'), path.join(fileRoot, 'escape.git'));
});

afterAll(async () => {
  await canary.close();
  await rm(dir, { recursive: true, force: true });
});

const policy = () => ({ allowedHosts: ['git.example.test'], fileRoots: [fileRoot] });

async function refusal(raw: string, allowedHosts = policy().allowedHosts): Promise<UnsafeSourceCode> {
  try {
    await checkRemoteUrl(raw, { ...policy(), allowedHosts });
  } catch (err) {
    if (err instanceof UnsafeSourceError) return err.code;
    throw err;
  }
  throw new Error(`${raw} was accepted`);
}

describe('checkRemoteUrl refuses hostile URLs before any connection', () => {
  // The canary's port goes into every URL that could reach it; it must count zero connections.
  const table = (): [string, UnsafeSourceCode, string[]?][] => {
    const port = canary.port;
    return [
      ['ext::sh -c touch% /tmp/pwned', 'scheme-not-allowed'],
      ['ext::sh%20-c%20id', 'scheme-not-allowed'],
      ['fd::17', 'scheme-not-allowed'],
      ['--upload-pack=touch /tmp/x', 'option-injection'],
      ['-oProxyCommand=x', 'option-injection'],
      ['-u', 'option-injection'],
      ['ssh://git.example.test/owner/repo.git', 'scheme-not-allowed'],
      ['git://git.example.test/owner/repo.git', 'scheme-not-allowed'],
      ['ftp://git.example.test/repo.git', 'scheme-not-allowed'],
      ['git.example.test:owner/repo.git', 'scheme-not-allowed'],
      ['git@git.example.test:owner/repo.git', 'scheme-not-allowed'],
      ['/etc', 'scheme-not-allowed'],
      ['file:///etc', 'path-outside-roots'],
      [`file://${path.join(fileRoot, '..', 'outside.git')}`, 'path-outside-roots'],
      ['file://otherhost/srv/repo.git', 'host-not-allowed'],
      ['https://user:tok@git.example.test/x.git', 'credentials-in-url'],
      ['https://:tok@git.example.test/x.git', 'credentials-in-url'],
      ['https://x-access-token@git.example.test/x.git', 'credentials-in-url'],
      [`http://git.example.test@127.0.0.1:${port}/x.git`, 'credentials-in-url'],
      ['https://git.example.test/x.git\n--upload-pack=x', 'malformed'],
      ['http://169.254.169.254/latest/meta-data', 'non-public-address'],
      [`http://2130706433:${port}/x.git`, 'non-public-address'],
      [`http://0177.0.0.1:${port}/x.git`, 'non-public-address'],
      [`http://0x7f.1:${port}/x.git`, 'non-public-address'],
      [`http://127.1:${port}/x.git`, 'non-public-address'],
      [`http://[::ffff:127.0.0.1]:${port}/x.git`, 'non-public-address'],
      [`http://[::1]:${port}/x.git`, 'non-public-address'],
      [`http://0.0.0.0:${port}/x.git`, 'non-public-address'],
      ['http://[fd00::1]/x.git', 'non-public-address'],
      ['http://[fe80::1]/x.git', 'non-public-address'],
      ['http://10.0.0.1/x.git', 'non-public-address'],
      ['http://172.16.5.4/x.git', 'non-public-address'],
      ['http://192.168.1.1/x.git', 'non-public-address'],
      ['http://100.64.0.1/x.git', 'non-public-address'],
      ['http://[64:ff9b::7f00:1]/x.git', 'non-public-address'],
      ['https://93.184.215.14/x.git', 'host-not-allowed'],
      [`http://localhost:${port}/x.git`, 'host-not-allowed'],
      [`http://LOCALHOST.:${port}/x.git`, 'host-not-allowed'],
      ['https://git.example.test.evil.test/x.git', 'host-not-allowed'],
      // Allowlisted names are still resolved and judged: localhost is loopback.
      [`http://localhost:${port}/x.git`, 'non-public-address', ['localhost']],
      [`http://LocalHost:${port}/x.git`, 'non-public-address', ['localhost', '127.0.0.2']],
    ];
  };

  test('each is refused with its code, and the canary sees no connection', async () => {
    const results: [string, UnsafeSourceCode][] = [];
    for (const [raw, , hosts] of table()) results.push([raw, await refusal(raw, hosts)]);
    expect(results).toEqual(table().map(([raw, code]) => [raw, code]));
    expect(canary.hits()).toBe(0);
  });
});

describe('checkRemoteUrl accepts what the policy allows', () => {
  test('an allowlisted IP literal passes and is pinned', async () => {
    const checked = await checkRemoteUrl(`http://127.0.0.1:${canary.port}/owner/app.git#frag`, { allowedHosts: ['127.0.0.1'], fileRoots: [] });
    expect(checked).toEqual({ kind: 'remote', url: new URL(`http://127.0.0.1:${canary.port}/owner/app.git`), host: '127.0.0.1', port: canary.port, address: '127.0.0.1' });
  });

  test('the other spellings of an allowlisted IP literal are the same address', async () => {
    const checked = await checkRemoteUrl(`http://2130706433:${canary.port}/app.git`, { allowedHosts: ['127.0.0.1'], fileRoots: [] });
    expect(checked).toMatchObject({ kind: 'remote', host: '127.0.0.1', address: '127.0.0.1' });
  });

  test('an allowlisted name passes only when every address it resolves to is allowed, and the first is pinned', async () => {
    // localhost resolves to 127.0.0.1 (and ::1 where /etc/hosts lists it); each address must be allowlisted.
    const checked = await checkRemoteUrl('https://LOCALHOST/app.git', { allowedHosts: ['localhost', '127.0.0.1', '[::1]'], fileRoots: [] });
    expect(checked).toMatchObject({ kind: 'remote', host: 'localhost', port: 443 });
    expect(['127.0.0.1', '::1']).toContain(checked.kind === 'remote' ? checked.address : '');
    expect(canary.hits()).toBe(0);
  });

  test('a file URL under an allowed root passes with its real path; a symlink escaping the root is refused', async () => {
    const real = await checkRemoteUrl(pathToFileURL(path.join(fileRoot, 'app.git')).href, policy());
    expect(real).toEqual({ kind: 'file', path: path.join(await realpath(fileRoot), 'app.git') });
    await expect(refusal(pathToFileURL(path.join(fileRoot, 'escape.git')).href)).resolves.toBe('path-outside-roots');
    await expect(refusal(pathToFileURL(path.join(fileRoot, 'missing.git')).href)).resolves.toBe('unresolvable');
    await expect(checkRemoteUrl(pathToFileURL(path.join(fileRoot, 'app.git')).href, { ...policy(), fileRoots: [] })).rejects.toMatchObject({ code: 'path-outside-roots' });
  });
});

describe('isPublicAddress', () => {
  test.each([
    ['8.8.8.8', true],
    ['140.82.112.3', true],
    ['2606:4700::1111', true],
    ['::ffff:8.8.8.8', true],
    ['127.0.0.1', false],
    ['10.1.2.3', false],
    ['172.31.255.255', false],
    ['192.168.0.1', false],
    ['169.254.169.254', false],
    ['100.64.0.1', false],
    ['0.0.0.0', false],
    ['255.255.255.255', false],
    ['224.0.0.1', false],
    ['198.18.0.1', false],
    ['::', false],
    ['::1', false],
    ['::ffff:127.0.0.1', false],
    ['::ffff:10.0.0.1', false],
    ['::127.0.0.1', false],
    ['fc00::1', false],
    ['fd12:3456::1', false],
    ['fe80::1', false],
    ['ff02::1', false],
    ['2001:db8::1', false],
    ['64:ff9b::a00:1', false],
    ['not-an-ip', false],
    ['', false],
  ])('%s → %s', (ip, expected) => {
    expect(isPublicAddress(ip)).toBe(expected);
  });
});
