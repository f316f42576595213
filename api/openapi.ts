import { z, type ZodType } from 'zod';
import type { AnyRouteSpec, UploadSpec } from './route';
import { problemTypes } from './problems';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' });
  return rest;
}

const problemSchema: JsonSchema = {
  type: 'object',
  required: ['type', 'title', 'status', 'detail'],
  properties: {
    type: { type: 'string', enum: Object.keys(problemTypes).map((slug) => `/problems/${slug}`) },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string' },
    requestId: { type: 'string' },
    code: { type: 'string', description: 'A finer reason, for the problem types that document one' },
    errors: { type: 'array', items: { type: 'object', required: ['path', 'message'], properties: { path: { type: 'string' }, message: { type: 'string' } } } },
  },
};

const idempotencyKeyHeader: JsonSchema = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description: 'Repeating the request with the same key within 24 hours returns the job it started; the same key with a different request answers 422.',
  schema: { type: 'string', minLength: 1, maxLength: 255 },
};

/** Query and path schemas become one parameter per property. */
function parameters(schema: ZodType | undefined, where: 'query' | 'path'): JsonSchema[] {
  if (!schema) return [];
  const json = schemaOf(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || (json.required ?? []).includes(name),
    schema: s,
  }));
}

/** An upload form: the file (`format: binary`) and the text fields, with the media types the file may have. */
function uploadForm(upload: UploadSpec): JsonSchema {
  const fields = schemaOf(upload.fields, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
  return {
    schema: {
      type: 'object',
      required: [upload.field, ...(fields.required ?? [])],
      properties: {
        [upload.field]:
          (upload.maxFiles ?? 1) > 1
            ? { type: 'array', maxItems: upload.maxFiles, items: { type: 'string', format: 'binary' }, description: `${upload.description} At most ${upload.maxBytes} bytes together.` }
            : { type: 'string', format: 'binary', description: `${upload.description} At most ${upload.maxBytes} bytes.` },
        ...fields.properties,
      },
    },
    encoding: { [upload.field]: { contentType: upload.mediaTypes?.join(', ') ?? '*/*' } },
  };
}

/** The request body: JSON, a multipart upload, or either. */
function requestBody(spec: AnyRouteSpec): JsonSchema | undefined {
  const content: Record<string, JsonSchema> = {};
  if (spec.body) content['application/json'] = { schema: schemaOf(spec.body, 'input') };
  if (spec.upload) content['multipart/form-data'] = uploadForm(spec.upload);
  return Object.keys(content).length > 0 ? { required: true, content } : undefined;
}

/** The OpenAPI 3.1 document, generated from the same zod schemas that validate requests. */
export function buildOpenApi(specs: readonly AnyRouteSpec[], info: { version: string; serverUrl: string }): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const spec of specs) {
    const path = spec.path.replace(/:(\w+)/g, '{$1}');
    const responses: Record<string, JsonSchema> = {};
    for (const [status, r] of Object.entries(spec.responses)) {
      const content = Object.fromEntries(
        [...(r.schema ? [[r.mediaType ?? 'application/json', r.schema] as const] : []), ...Object.entries(r.alternatives ?? {})].map(([mediaType, schema]) => [
          mediaType,
          { schema: schemaOf(schema, 'output') },
        ]),
      );
      responses[status] = { description: r.description, ...(Object.keys(content).length > 0 ? { content } : {}) };
    }
    const body = requestBody(spec);
    responses.default = { description: 'An error', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
    (paths[path] ??= {})[spec.method] = {
      operationId: spec.operationId,
      summary: spec.summary,
      tags: [spec.tag],
      ...(spec.access === 'public' ? { security: [] } : { 'x-required-permission': spec.access }),
      parameters: [...parameters(spec.params, 'path'), ...parameters(spec.query, 'query'), ...(spec.idempotent ? [idempotencyKeyHeader] : [])],
      ...(body ? { requestBody: body } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'AuditFlow API',
      version: info.version,
      description:
        'Errors are `application/problem+json`; each `type` is documented below and served at `/problems/<slug>`.\n\n' +
        Object.entries(problemTypes)
          .map(([slug, p]) => `- \`/problems/${slug}\` — **${p.title}**: ${p.description}`)
          .join('\n'),
    },
    servers: [{ url: info.serverUrl }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An access JWT or an API token (`af_…`).' } },
      schemas: { Problem: problemSchema },
    },
    paths,
  };
}
