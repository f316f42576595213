import { startTestApp, type TestApp } from '../harness';

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { operationId: string }>>;
}

describe('OpenAPI document and API docs', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('is OpenAPI 3.1 and served at /api/v1/openapi.json', async () => {
    const res = await t.get('/api/v1/openapi.json');
    expect(res.status).toBe(200);
    expect((res.body as Doc).openapi).toBe('3.1.0');
  });

  it('documents every route the app registers', async () => {
    const doc = (await t.get('/api/v1/openapi.json')).body as Doc;
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)),
    );
    // Walk the live Koa routers rather than our own spec list, so a route added any other way is caught.
    const registered = t.app.routers.flatMap((r) =>
      r.router.stack.flatMap((layer) =>
        layer.methods.filter((m) => m !== 'HEAD').map((m) => `${m} /api/v1${String(layer.path).replace(/:(\w+)/g, '{$1}')}`),
      ),
    );
    expect(registered.length).toBeGreaterThan(0);
    expect(registered.filter((r) => !documented.has(r))).toEqual([]);
    const operationIds = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
    expect(new Set(operationIds).size).toBe(operationIds.length);
  });

  it('serves Swagger UI from the installed package, with no third-party origin', async () => {
    const page = await t.get('/docs');
    expect(page.status).toBe(200);
    expect(page.text).toContain('swagger-ui');
    expect(page.text).not.toMatch(/https?:\/\//);
    const bundle = await t.raw().get('/docs/swagger-ui-bundle.js');
    expect(bundle.status).toBe(200);
    expect(bundle.headers['content-type']).toMatch(/javascript/);
    expect((await t.raw().get('/docs/init.js')).text).toContain('/api/v1/openapi.json');
  });
});
