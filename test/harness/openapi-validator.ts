import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { ValidateFunction } from 'ajv';

interface Operation {
  responses: Record<string, { content?: Record<string, { schema: unknown }> }>;
}
type Doc = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown> } };

/** Checks real responses against the served OpenAPI document: status declared, body matching its schema. */
export function responseValidator(doc: Record<string, unknown>) {
  const { paths, components } = doc as unknown as Doc;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema({ $id: 'openapi', components }, 'openapi');
  const routes = Object.entries(paths).map(([template, ops]) => ({
    pattern: new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`),
    ops,
  }));
  const compiled = new Map<unknown, ValidateFunction>();
  const compile = (schema: unknown) => {
    let fn = compiled.get(schema);
    if (!fn) {
      fn = ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')) as object);
      compiled.set(schema, fn);
    }
    return fn;
  };

  return function validate(method: string, url: string, status: number, contentType: string, body: unknown): void {
    const path = url.split('?')[0] ?? url;
    const route = routes.find((r) => r.pattern.test(path) && r.ops[method.toLowerCase()]);
    if (!route) return; // routes outside the API (docs, unknown paths) have no schema
    const op = route.ops[method.toLowerCase()] as Operation;
    const declared = op.responses[String(status)];
    if (status < 400 && !declared) throw new Error(`${method} ${path} answered ${status}, which the OpenAPI document does not declare`);
    const response = declared ?? op.responses.default;
    const media = contentType.split(';')[0]?.trim() ?? '';
    // A declared body that is not JSON (an event stream) reaches us unparsed: its media type is what we can check.
    if (response?.content?.[media] && !/^application\/(.+\+)?json$/.test(media)) return;
    const schema = response?.content?.[media]?.schema ?? response?.content?.['application/json']?.schema;
    if (!schema) {
      if (response?.content && status !== 204) throw new Error(`${method} ${path} ${status}: unexpected content type ${media}`);
      return;
    }
    const fn = compile(schema);
    if (!fn(body)) {
      throw new Error(`${method} ${path} ${status}: response does not match the OpenAPI document: ${ajv.errorsText(fn.errors)}\n${JSON.stringify(body, null, 2)}`);
    }
  };
}
