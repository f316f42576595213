import { randomUUID } from 'node:crypto';
import { ingestInProcess } from '../../bench/harness/ingest-loop';
import { Document, DocumentChunk } from '../../db';
import { auditRows } from '../api/auth-helpers';
import { registerTenant, startTestApp, type Member, type TestApp } from '../harness';
import { addMember, type TenantMember } from '../harness/members';

/*
 * The documents API (issue 7, criterion 9): listing a project's documents with filters and
 * cursor pages, reading one with its chunks, deleting one with its chunks and vectors (audited).
 * Documents are stored by the ingestion pipeline's own steps (bench/harness/ingest-loop).
 */

let t: TestApp;
let admin: Member;
let viewer: TenantMember;
let member: TenantMember;
let outsider: Member;
let projectId: string;

const longGuide = `# Install guide

${Array.from({ length: 12 }, (_, i) => `## Step ${i + 1}\n\nRun the installer for component ${i + 1} and wait until it reports success before going on.`).join('\n\n')}
`;

const files: Record<string, string> = {
  'guides/install.md': longGuide,
  'guides/upgrade.md': '# Upgrade guide\n\nStop the workers, run the migrations, start the workers again.\n',
  'faq.txt': 'Frequently asked questions about the billing export.\n',
};

async function newProject(as: Member, label: string): Promise<string> {
  return (await t.post('/api/v1/projects', { name: `${label} ${randomUUID()}` }, { token: as.accessToken })).body.id;
}

const documentOf = async (sourceKey: string) => Document.findOne({ where: { projectId, sourceKey }, rejectOnEmpty: true });

beforeAll(async () => {
  t = await startTestApp();
  admin = await registerTenant(t, 'documents');
  viewer = await addMember(t, admin.tenantId, 'viewer');
  member = await addMember(t, admin.tenantId, 'member');
  outsider = await registerTenant(t, 'documents-outsider');
  projectId = await newProject(admin, 'documents');
  const stored = await ingestInProcess(
    t,
    { tenantId: admin.tenantId, projectId },
    Object.entries(files).map(([name, text]) => ({ name, bytes: Buffer.from(text) })),
    1, // one document per batch: they are created (and listed) in this order
  );
  expect(stored).toMatchObject({ documents: 3, failed: 0 });
}, 60_000);
afterAll(() => t.close());

const list = (query = '', as: { accessToken: string } = admin) => t.get(`/api/v1/projects/${projectId}/documents${query}`, { token: as.accessToken });
const sourceKeys = (body: { items: Array<{ sourceKey: string }> }) => body.items.map((d) => d.sourceKey);

describe('listing', () => {
  it('lists a project’s documents oldest first, a cursor page at a time', async () => {
    const first = await list('?limit=2');
    expect(first.status).toBe(200);
    expect(sourceKeys(first.body)).toEqual(['guides/install.md', 'guides/upgrade.md']);
    expect(first.body.items[0]).toMatchObject({
      projectId,
      title: 'Install guide',
      sourceType: 'file',
      format: 'markdown',
      status: 'stored',
      error: null,
      embedding: { model: 'hashing-384', dimensions: 384 },
    });
    expect(first.body.items[0].chunkCount).toBeGreaterThan(1);
    const second = await list(`?limit=2&cursor=${first.body.nextCursor}`);
    expect(sourceKeys(second.body)).toEqual(['faq.txt']);
    expect(second.body.nextCursor).toBeNull();
  });

  it.each([
    ['?format=text', ['faq.txt']],
    ['?status=stored&sourceType=file', ['guides/install.md', 'guides/upgrade.md', 'faq.txt']],
    ['?status=failed', []],
    ['?sourceKeyPrefix=guides/', ['guides/install.md', 'guides/upgrade.md']],
    ['?sourceKeyPrefix=guides%25', []],
    ['?q=UPGRADE', ['guides/upgrade.md']],
    ['?q=faq', ['faq.txt']],
  ])('filters %s', async (query, expected) => {
    const res = await list(query);
    expect(res.status).toBe(200);
    expect(sourceKeys(res.body)).toEqual(expected);
  });

  it('lets a viewer read, and answers 404 for another tenant’s project', async () => {
    expect((await list('', viewer)).status).toBe(200);
    expect((await list('', outsider)).status).toBe(404);
  });
});

describe('reading one', () => {
  it('shows the document with its chunks in order, a page at a time', async () => {
    const install = await documentOf('guides/install.md');
    const res = await t.get(`/api/v1/documents/${install.id}`, { token: viewer.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: install.id, sourceKey: 'guides/install.md', contentSha256: install.contentSha256, chunkCount: install.chunkCount });
    expect(res.body.chunks.map((c: { index: number }) => c.index)).toEqual(Array.from({ length: install.chunkCount }, (_, i) => i));
    for (const c of res.body.chunks) {
      expect(longGuide.slice(c.start, c.end)).toBe(c.text);
      expect(c.tokens).toBeGreaterThan(0);
      expect(c.headingPath[0]).toBe('Install guide');
    }
    const page = await t.get(`/api/v1/documents/${install.id}?chunkOffset=1&chunkLimit=2`, { token: admin.accessToken });
    expect(page.body.chunks).toEqual(res.body.chunks.slice(1, 3));
  });

  it('answers 404 to another tenant', async () => {
    const faq = await documentOf('faq.txt');
    expect((await t.get(`/api/v1/documents/${faq.id}`, { token: outsider.accessToken })).status).toBe(404);
    expect((await t.get(`/api/v1/documents/${randomUUID()}`, { token: admin.accessToken })).status).toBe(404);
  });
});

describe('deleting', () => {
  it('removes the document, its chunks and its vectors, audited; viewers and other tenants cannot', async () => {
    const upgrade = await documentOf('guides/upgrade.md');
    const collection = { model: upgrade.embeddingModel ?? '', dimensions: upgrade.embeddingDimensions ?? 0 };
    const vectorsOf = () => t.vectors.count(collection, { tenantId: admin.tenantId, documentIds: [upgrade.id] });
    expect(await vectorsOf()).toBeGreaterThan(0);

    const denied = await t.delete(`/api/v1/documents/${upgrade.id}`, { token: viewer.accessToken });
    expect(denied.status).toBe(403);
    expect((await t.delete(`/api/v1/documents/${upgrade.id}`, { token: outsider.accessToken })).status).toBe(404);
    expect(await Document.findByPk(upgrade.id)).not.toBeNull();

    const res = await t.delete(`/api/v1/documents/${upgrade.id}`, { token: member.accessToken });
    expect(res.status).toBe(204);
    expect(await Document.findByPk(upgrade.id)).toBeNull();
    expect(await DocumentChunk.count({ where: { documentId: upgrade.id } })).toBe(0);
    expect(await vectorsOf()).toBe(0);
    const [audit] = await auditRows('document.delete', { resourceId: upgrade.id });
    expect(audit).toMatchObject({ tenantId: admin.tenantId, actorId: member.userId, outcome: 'success', details: { projectId, sourceKey: 'guides/upgrade.md' } });

    expect((await t.get(`/api/v1/documents/${upgrade.id}`, { token: admin.accessToken })).status).toBe(404);
    expect((await t.delete(`/api/v1/documents/${upgrade.id}`, { token: admin.accessToken })).status).toBe(404);
    const search = await t.post('/api/v1/search', { query: 'stop the workers and run the migrations', projectId, topK: 50 }, { token: admin.accessToken });
    expect(search.body.results.filter((r: { document: { id: string } }) => r.document.id === upgrade.id)).toEqual([]);
    // The others are untouched.
    expect(sourceKeys((await list()).body)).toEqual(['guides/install.md', 'faq.txt']);
  });
});
