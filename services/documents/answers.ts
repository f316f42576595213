import { chatCompletion, streamChatCompletion, type ChatInput, type LlmAnswer, type LlmCall } from '../llm';
import { searchDocuments, type SearchDeps, type SearchResult } from './search';

/**
 * Answers from the knowledge base (issue 8): the chunks a hybrid search finds best for the
 * question become numbered sources, and the tenant's chat model answers from them alone, citing
 * them as `[n]`. The built-in provider quotes the best-matching sentences of the sources, each
 * with the marker of the source it came from.
 */

export type AnswerDeps = SearchDeps;

export interface AskRequest {
  tenantId: string;
  question: string;
  projectId?: string;
  /** Who asks (`user:<id>`, `api_token:<id>`), for the vault's access log. */
  actor?: string;
  signal?: AbortSignal;
}

/** A numbered source of the answer: `[n]` in its text refers to this chunk. */
export interface Citation {
  n: number;
  chunkId: string;
  documentId: string;
  title: string;
  sourceKey: string;
  headingPath: string[];
  /** The chunk's text, which the answer was drawn from. */
  text: string;
  /** The chunk's offsets in its document's text. */
  start: number;
  end: number;
}

export interface Answer {
  answer: string;
  /** Every source the model was given, numbered as the answer cites them. */
  citations: Citation[];
  /** The chat provider and model that answered; null when nothing relevant was found and no model was asked. */
  provider: string | null;
  model: string | null;
}

export type AnswerEvent = { type: 'delta'; text: string } | { type: 'done'; answer: Answer };

/** An answer under way: its sources are known before the model says anything. */
export interface AnswerStream {
  citations: Citation[];
  /** Read with `for await`: the model's events as they come, or at once when nothing was found. */
  events: AsyncIterable<AnswerEvent> | Iterable<AnswerEvent>;
}

/** The answer when the search finds nothing: no model is asked to answer from no sources. */
export const NOTHING_FOUND_ANSWER = 'Nothing in the knowledge base matches this question, so there are no sources to answer it from.';

/** Chunks given to the model: enough to answer from, few enough to stay focused (and cheap). */
const SOURCES_PER_ANSWER = 5;
/** Room for a few cited paragraphs; the built-in provider ignores it. */
const MAX_ANSWER_TOKENS = 800;

const INSTRUCTIONS =
  'You answer questions about a team’s documents. Use only the numbered sources in the context. ' +
  'After each statement put the number of the source it comes from in square brackets. ' +
  'When the sources do not contain the answer, say so instead of guessing.';

const citationOf = (result: SearchResult, i: number): Citation => ({
  n: i + 1,
  chunkId: result.chunk.id,
  documentId: result.document.id,
  title: result.document.title,
  sourceKey: result.document.sourceKey,
  headingPath: result.chunk.headingPath,
  text: result.chunk.text,
  start: result.chunk.start,
  end: result.chunk.end,
});

/**
 * One source as context: each of its paragraphs opens with the source's marker on a line of its
 * own, then its heading path as a Markdown heading. The built-in provider carries a marker only
 * within its paragraph, and ranks sentences with the heading above them, so both are repeated.
 */
function sourceBlock(citation: Citation): string {
  const heading = citation.headingPath.length > 0 ? `# ${citation.headingPath.join(' / ')}\n` : '';
  return citation.text
    .split(/\n\s*\n/)
    .filter((paragraph) => paragraph.trim() !== '')
    .map((paragraph) => `[${citation.n}]\n${heading}${paragraph.trim()}`)
    .join('\n\n');
}

function promptOf(question: string, citations: Citation[]): ChatInput {
  const context = citations.map(sourceBlock).join('\n\n');
  return {
    messages: [
      { role: 'system', content: INSTRUCTIONS },
      { role: 'user', content: `Context:\n${context}\n\nQuestion: ${question}` },
    ],
    temperature: 0,
    maxTokens: MAX_ANSWER_TOKENS,
  };
}

async function sourcesFor(deps: AnswerDeps, request: AskRequest): Promise<Citation[]> {
  const results = await searchDocuments(deps, {
    tenantId: request.tenantId,
    query: request.question,
    projectId: request.projectId,
    topK: SOURCES_PER_ANSWER,
    mode: 'hybrid',
    actor: request.actor,
    signal: request.signal,
  });
  return results.map(citationOf);
}

const callOf = (request: AskRequest): LlmCall => ({
  tenantId: request.tenantId,
  projectId: request.projectId ?? null,
  mode: 'interactive',
  actor: request.actor,
  activity: 'ask',
  signal: request.signal,
});

const answerOf = (model: LlmAnswer, citations: Citation[]): Answer => ({ answer: model.text, citations, provider: model.provider, model: model.model });

const nothingFound: Answer = { answer: NOTHING_FOUND_ANSWER, citations: [], provider: null, model: null };

/** The answer to `question` from the tenant's documents (of one project, when given), with its sources. */
export async function answerQuestion(deps: AnswerDeps, request: AskRequest): Promise<Answer> {
  const citations = await sourcesFor(deps, request);
  if (citations.length === 0) return nothingFound;
  return answerOf(await chatCompletion(deps, callOf(request), promptOf(request.question, citations)), citations);
}

/**
 * The answer as it is written: the sources first, then the model's deltas, then the whole answer.
 * Resolves once the model has started to answer, so a search or provider failure is thrown here,
 * before anything is streamed, and the fallback provider can still take over.
 */
export async function streamAnswer(deps: AnswerDeps, request: AskRequest): Promise<AnswerStream> {
  const citations = await sourcesFor(deps, request);
  if (citations.length === 0) {
    return { citations, events: [{ type: 'delta', text: NOTHING_FOUND_ANSWER }, { type: 'done', answer: nothingFound }] };
  }
  const model = streamChatCompletion(deps, callOf(request), promptOf(request.question, citations));
  const first = await model.next();
  async function* events(): AsyncGenerator<AnswerEvent> {
    try {
      for (let step = first; !step.done; step = await model.next()) {
        const event = step.value;
        yield event.type === 'delta' ? event : { type: 'done', answer: answerOf(event.answer, citations) };
      }
    } finally {
      // A reader that stops early (the client went away) closes the provider's stream too.
      await model.return(undefined);
    }
  }
  return { citations, events: events() };
}
