import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gitTree } from '../../lib/git-tree';
import type { SourceTree } from '../../lib/source-tree';
import { makeRepository } from '../harness/git-server';

/**
 * A commit's files read from the repository's object store: listed as `git ls-tree` lists them,
 * read through one `git cat-file --batch` however many reads are in flight.
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'auditflow-git-tree-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withTree<T>(files: Record<string, string>, use: (tree: SourceTree) => Promise<T>, options: Parameters<typeof makeRepository>[3] = {}): Promise<T> {
  const repo = await makeRepository(dir, `repo-${randomBytes(4).toString('hex')}.git`, files, options);
  const tree = gitTree(repo.bareDir, repo.commit);
  try {
    return await use(tree);
  } finally {
    await tree.close();
  }
}

describe('gitTree', () => {
  test('lists each directory’s files, directories and symlinks', async () => {
    await withTree(
      { 'README.md': '# r\n', 'src/a.js': 'a\n', 'src/lib/b.js': 'b\n', 'empty.txt': '' },
      async (tree) => {
        const byName = (entries: Array<{ name: string }>) => [...entries].sort((x, y) => (x.name < y.name ? -1 : 1));
        expect(byName(await tree.list(''))).toEqual([
          { name: 'README.md', type: 'file' },
          { name: 'empty.txt', type: 'file' },
          { name: 'link', type: 'symlink' },
          { name: 'src', type: 'directory' },
        ]);
        expect(byName(await tree.list('src/'))).toEqual([
          { name: 'a.js', type: 'file' },
          { name: 'lib', type: 'directory' },
        ]);
        await expect(tree.list('nowhere/')).rejects.toThrow('no such directory');
        expect(await tree.head('link', 10, 10)).toEqual({ type: 'symlink' });
      },
      { symlinks: { link: '/etc/passwd' } },
    );
  });

  test('reads whole files and heads, large and empty, many at once, each answer to its own request', async () => {
    const big = randomBytes(3 * 1024 * 1024).toString('base64'); // ~4 MiB: many pipe chunks
    const small = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`f/${i}.txt`, `file ${i}\n`.repeat(i)]));
    await withTree({ 'big.txt': big, 'empty.txt': '', ...small }, async (tree) => {
      const paths = ['big.txt', 'empty.txt', ...Object.keys(small), 'big.txt'];
      const contents = await Promise.all(paths.map((file) => tree.read({ path: file })));
      expect(contents.map((c) => c.toString('utf8'))).toEqual(paths.map((file) => (file === 'big.txt' ? big : file === 'empty.txt' ? '' : small[file])));

      const head = await tree.head('big.txt', 100, 10 * 1024 * 1024);
      expect(head).toMatchObject({ type: 'file', bytes: Buffer.byteLength(big), objectId: expect.stringMatching(/^[0-9a-f]{40}$/) });
      if (head.type !== 'file') throw new Error('unreachable');
      expect(head.head.toString('utf8')).toBe(big.slice(0, 100));
      // Read again by the blob id that the head gave: no lookup by path.
      expect((await tree.read({ path: 'ignored', objectId: head.objectId })).toString('utf8')).toBe(big);
      expect(await tree.head('big.txt', 100, 1024)).toEqual({ type: 'too-large', bytes: Buffer.byteLength(big) });
    });
  });

  test('a missing object fails alone; later reads still work', async () => {
    await withTree({ 'a.txt': 'a\n' }, async (tree) => {
      await expect(tree.read({ path: 'x', objectId: '0'.repeat(40) })).rejects.toThrow('missing');
      await expect(tree.read({ path: 'x', objectId: 'HEAD\nmaster' })).rejects.toThrow('not a git object id');
      await expect(tree.read({ path: 'b.txt' })).rejects.toThrow('no such file');
      expect((await tree.read({ path: 'a.txt' })).toString('utf8')).toBe('a\n');
    });
  });

  test('a name that is not UTF-8 is listed, but is unreadable under the name shown', async () => {
    await withTree(
      { 'caf\xe9.js': 'eval(x);\n', 'ok.js': 'ok\n' },
      async (tree) => {
        expect(await tree.list('')).toContainEqual({ name: 'caf\uFFFD.js', type: 'file' });
        expect(await tree.head('caf\uFFFD.js', 10, 10)).toEqual({ type: 'unreadable' });
        await expect(tree.read({ path: 'caf\uFFFD.js' })).rejects.toThrow('not UTF-8');
      },
      { byteNames: true },
    );
  });
});
