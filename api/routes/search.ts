import { z } from 'zod';
import { answerQuestion, streamAnswer, type AnswerEvent } from '../../services/documents/answers';
import { searchDocuments, searchModes } from '../../services/documents/search';
import type { AppDeps } from '../app';
import { requesterOf } from '../jobs-view';
import { ApiRouter, type Ctx } from '../route';
import { openEventStream, type ServerSentEvent } from '../sse';

const searchBody = z.object({
  query: z.string().trim().min(1).max(2000),
  projectId: z.uuid().optional().describe("Only this project's documents; by default every project of the tenant"),
  documentIds: z.array(z.uuid()).max(100).optional().describe('Only these documents (an empty list finds nothing)'),
  topK: z.number().int().min(1).max(50).default(10),
  mode: z
    .enum(searchModes)
    .default('hybrid')
    .describe("vector: by meaning (the tenant's embedding model); keyword: Postgres full-text search; hybrid: both, fused by reciprocal rank"),
});

const documentRef = z.object({ id: z.uuid(), title: z.string(), sourceKey: z.string(), projectId: z.uuid() });
const chunkView = z.object({
  id: z.uuid(),
  index: z.number().int(),
  text: z.string(),
  headingPath: z.array(z.string()).describe('The headings above the chunk, outermost first'),
  start: z.number().int().describe("Offset of the chunk's first character in the document's text"),
  end: z.number().int(),
});
const searchResults = z.object({
  mode: z.enum(searchModes),
  results: z.array(
    z.object({
      score: z.number().describe('vector: cosine similarity; keyword: full-text rank (in a large scope, chunks holding a rarer word of the query come first); hybrid: reciprocal-rank fusion score. Compare within one response only'),
      document: documentRef,
      chunk: chunkView,
    }),
  ),
});

const askBody = z.object({
  question: z.string().trim().min(1).max(2000),
  projectId: z.uuid().optional().describe("Only this project's documents; by default every project of the tenant"),
});
const citation = z.object({
  n: z.number().int().describe('The number the answer cites it by: [n]'),
  chunkId: z.uuid(),
  documentId: z.uuid(),
  title: z.string(),
  sourceKey: z.string(),
  headingPath: z.array(z.string()),
  text: z.string().describe('The chunk the answer drew on'),
  start: z.number().int(),
  end: z.number().int(),
});
const answerView = z.object({
  answer: z.string().describe('With numbered citations such as [1]'),
  citations: z.array(citation).describe('The sources given to the model, numbered as the answer cites them; empty when nothing relevant was found'),
  provider: z.string().nullable().describe('The chat provider that answered; null when no model was asked (nothing relevant found)'),
  model: z.string().nullable(),
});

const eventOf = (id: number, event: AnswerEvent): ServerSentEvent =>
  event.type === 'delta' ? { id, event: 'delta', data: { text: event.text } } : { id, event: 'done', data: event.answer };

/** Streams an answer already under way: `citations`, then `delta`s, then `done`; `error` if the model fails midway. */
function relayAnswer(ctx: Ctx, heartbeatMs: number, answer: Awaited<ReturnType<typeof streamAnswer>>): void {
  const stream = openEventStream(ctx, heartbeatMs);
  let id = 0;
  const relay = async () => {
    await stream.send({ id: id++, event: 'citations', data: { citations: answer.citations } });
    for await (const event of answer.events) {
      if (stream.signal.aborted) break;
      await stream.send(eventOf(id++, event));
    }
  };
  void relay()
    .catch(async (err: unknown) => {
      if (stream.signal.aborted) return;
      ctx.state.log.error({ err }, 'answer stream failed');
      await stream.send({ id: id++, event: 'error', data: { detail: 'The answer could not be completed.', requestId: ctx.state.requestId } });
    })
    .catch(() => undefined) // the client is gone: nothing more to tell it
    .finally(() => stream.end());
}

export function searchRouter(deps: AppDeps): ApiRouter {
  const tag = 'search';
  return new ApiRouter()
    .add(
      {
        method: 'post',
        path: '/search',
        operationId: 'searchDocuments',
        summary: "Search the tenant's documents by meaning, by keywords, or both (hybrid); results are chunks with their document, heading path and offsets",
        tag,
        access: 'projects:read',
        readOnly: true,
        body: searchBody,
        responses: { 200: { description: 'The best-matching chunks, best first', schema: searchResults } },
      },
      async (ctx, { body, auth }) => {
        const results = await searchDocuments(deps, { ...body, tenantId: auth.tenantId, actor: requesterOf(ctx) });
        ctx.body = { mode: body.mode, results };
      },
    )
    .add(
      {
        method: 'post',
        path: '/ask',
        operationId: 'askQuestion',
        summary: "Answer a question from the tenant's documents, citing the chunks it draws on as [n]; with `Accept: text/event-stream` the answer streams as Server-Sent Events",
        tag,
        access: 'projects:read',
        readOnly: true,
        body: askBody,
        responses: {
          200: {
            description: 'The answer and its numbered sources',
            schema: answerView,
            alternatives: {
              'text/event-stream': z
                .string()
                .describe(
                  'Server-Sent Events, each `data` a JSON object: `citations` ({citations}, as in the JSON answer) first, then `delta` ({text}) events as the model writes, ' +
                    'then `done` (the whole answer, as in the JSON response); or `error` ({detail, requestId}) if the model fails midway. `: keep-alive` comments while idle.',
                ),
            },
          },
        },
      },
      async (ctx, { body, auth }) => {
        const request = { ...body, tenantId: auth.tenantId, actor: requesterOf(ctx) };
        if (ctx.accepts('application/json', 'text/event-stream') === 'text/event-stream') {
          relayAnswer(ctx, deps.config.SSE_HEARTBEAT_SECONDS * 1000, await streamAnswer(deps, request));
          return;
        }
        ctx.body = await answerQuestion(deps, request);
      },
    );
}
