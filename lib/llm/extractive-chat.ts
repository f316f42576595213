import { contentStems, cosineSimilarity, embedText } from './hashing-embedder';
import type { ChatMessage } from './types';

/**
 * The built-in provider's "chat": it quotes the sentences of the given context that best match the
 * question, in their original order, and writes nothing of its own. The answer is only as good as
 * the word overlap between question and context; it never paraphrases, reasons or invents.
 */

/** The whole answer when the context is empty or nothing in it matches the question. */
export const NOTHING_RELEVANT_ANSWER = 'The built-in provider found nothing relevant to the question in the given context.';

/** At most this many sentences are quoted: enough to answer, short enough to read. */
const maxQuotedSentences = 3;
/** A sentence scoring below this is not relevant, however few others there are. */
const relevanceFloor = 0.15;
/** A sentence scoring below this share of the best one is padding, not part of the answer. */
const shareOfBestScore = 0.5;
/** Added per unit of the question's content stems that also occur in the sentence (0..1). */
const termOverlapBonus = 0.1;

export interface ContextSentence {
  /** The sentence as written (a citation marker such as `[2]` appended when it belongs to a source). */
  text: string;
  /** What the sentence is ranked by: its text plus the heading of its section, if any. */
  rankingText: string;
}

/** Markers that open a labelled part of a user message: `Context:`, `Question:` (any case). */
const sectionLabel = /^\s*(context|question|sources|documents)\s*:\s*/i;
const citationMarker = /^\[(\d+)\]\s*/;
const markdownHeading = /^#{1,6}\s+(.*)$/;
const listItem = /^\s*(?:[-*•]|\d+[.)])\s+/;
/** Words before a full stop that do not end a sentence. */
const abbreviations: ReadonlySet<string> = new Set(['e.g', 'i.e', 'etc', 'vs', 'cf', 'mr', 'mrs', 'ms', 'dr', 'st', 'no', 'fig', 'approx', 'incl']);

/**
 * Splits the question from the context in the last user message: text after a `Context:` line is
 * context; text after a `Question:` line, or before any label, is the question.
 */
export function splitQuestionAndContext(message: string): { question: string; context: string } {
  const question: string[] = [];
  const context: string[] = [];
  let current = question;
  for (const line of message.split(/\r?\n/)) {
    const label = sectionLabel.exec(line);
    if (label) {
      current = label[1]?.toLowerCase() === 'question' ? question : context;
      const rest = line.slice(label[0].length);
      if (rest.trim() !== '') current.push(rest);
    } else {
      current.push(line);
    }
  }
  return { question: question.join('\n').trim(), context: context.join('\n').trim() };
}

/**
 * Sentence ends: `.`, `!` or `?`, optional closing quotes or brackets and citation markers, then
 * space. The lookbehind starts a match only at the first mark of a run (`...`), so a long run of
 * dots costs linear time, not quadratic.
 */
const sentenceEnd = /(?<![.!?])[.!?]+["'”’)\]]*(?:\s*\[\d+\])*(?=\s+|$)/g;

function splitParagraphIntoSentences(paragraph: string): string[] {
  const sentences: string[] = [];
  let start = 0;
  for (const match of paragraph.matchAll(sentenceEnd)) {
    const end = match.index + match[0].length;
    // Only the tail is read: abbreviations are short, and a bounded window keeps this linear.
    const tail = paragraph.slice(Math.max(start, match.index - 12), match.index);
    const lastWord = /([\p{L}.]+)$/u.exec(tail)?.[1]?.toLowerCase() ?? '';
    if (match[0].startsWith('.') && (abbreviations.has(lastWord) || /^\p{L}$/u.test(lastWord))) continue; // "e.g.", "J. Smith"
    const sentence = paragraph.slice(start, end).trim();
    if (sentence !== '') sentences.push(sentence);
    start = end;
  }
  const rest = paragraph.slice(start).trim();
  if (rest !== '') sentences.push(rest);
  return sentences;
}

/** `Title ##` → `Title` (Markdown's optional closing sequence); `Using C#` keeps its `#`. */
function withoutClosingHashes(heading: string): string {
  const trimmed = heading.trimEnd();
  if (/^#+$/.test(trimmed)) return '';
  const closing = /\s#+$/.exec(trimmed);
  return closing ? trimmed.slice(0, closing.index).trimEnd() : trimmed;
}

/**
 * The sentences of `context`. Paragraphs are separated by blank lines; wrapped lines are joined; a
 * list item is a sentence of its own; a Markdown heading is not a sentence but is ranked with each
 * sentence of its section; a paragraph opening with a citation marker (`[2] …`) passes the marker
 * on to each of its sentences, so a quoted sentence still names its source.
 */
export function splitContextIntoSentences(context: string): ContextSentence[] {
  const sentences: ContextSentence[] = [];
  let heading = '';
  for (const rawParagraph of context.split(/\r?\n\s*\r?\n/)) {
    let citation: string | undefined;
    /** Runs of text (wrapped lines joined), each with the heading in force where it starts. */
    const blocks: { text: string; heading: string }[] = [];
    let continuesBlock = false;
    for (const rawLine of rawParagraph.split(/\r?\n/)) {
      let line = rawLine.trim();
      if (line === '') continue;
      const headingMatch = markdownHeading.exec(line);
      if (headingMatch) {
        heading = withoutClosingHashes(headingMatch[1] ?? '');
        continuesBlock = false;
        continue;
      }
      const marker = citationMarker.exec(line);
      if (marker && blocks.length === 0 && citation === undefined) {
        citation = `[${marker[1]}]`;
        heading = ''; // a new source: the previous source's section heading no longer applies
        line = line.slice(marker[0].length);
        if (line === '') continue;
      }
      const item = listItem.exec(line);
      const lastBlock = blocks[blocks.length - 1];
      if (!item && continuesBlock && lastBlock) lastBlock.text += ` ${line}`;
      else blocks.push({ text: item ? line.slice(item[0].length) : line, heading });
      continuesBlock = true;
    }
    for (const block of blocks) {
      for (const sentence of splitParagraphIntoSentences(block.text)) {
        const text = citation !== undefined && !/\[\d+\]/.test(sentence) ? `${sentence} ${citation}` : sentence;
        sentences.push({ text, rankingText: block.heading === '' ? sentence : `${block.heading} ${sentence}` });
      }
    }
  }
  return sentences;
}

/** The question and the context the caller gave: everything but the question counts as context. */
export function questionAndContext(messages: readonly ChatMessage[]): { question: string; context: string } {
  let lastUser = -1;
  messages.forEach((message, index) => {
    if (message.role === 'user') lastUser = index;
  });
  const fromLastUser = lastUser >= 0 ? splitQuestionAndContext(messages[lastUser]?.content ?? '') : { question: '', context: '' };
  const context = messages
    .filter((_, index) => index !== lastUser)
    .map((message) => message.content)
    .concat(fromLastUser.context)
    .filter((text) => text.trim() !== '')
    .join('\n\n');
  return { question: fromLastUser.question, context };
}

/**
 * The sentences of `context` most similar to `question` (cosine of their embeddings, plus a small
 * bonus for the share of the question's terms they contain), in the order they appear in the
 * context. Empty when nothing clears the relevance floor.
 */
export function selectRelevantSentences(question: string, context: string): string[] {
  const questionStems = new Set(contentStems(question));
  if (questionStems.size === 0) return [];
  const questionVector = embedText(question);
  const seen = new Set<string>();
  const scored: { text: string; position: number; score: number }[] = [];
  for (const sentence of splitContextIntoSentences(context)) {
    if (seen.has(sentence.text)) continue; // the same sentence repeated in several messages
    seen.add(sentence.text);
    const sentenceStems = new Set(contentStems(sentence.rankingText));
    let sharedStems = 0;
    for (const questionStem of questionStems) if (sentenceStems.has(questionStem)) sharedStems++;
    const score = cosineSimilarity(questionVector, embedText(sentence.rankingText)) + (termOverlapBonus * sharedStems) / questionStems.size;
    scored.push({ text: sentence.text, position: scored.length, score });
  }
  const ranked = scored.filter((s) => s.score >= relevanceFloor).sort((a, b) => b.score - a.score || a.position - b.position);
  const bestScore = ranked[0]?.score ?? 0;
  return ranked
    .filter((s) => s.score >= bestScore * shareOfBestScore)
    .slice(0, maxQuotedSentences)
    .sort((a, b) => a.position - b.position)
    .map((s) => s.text);
}

/** The extractive answer to the last user message, from the rest of the conversation. */
export function answerExtractively(messages: readonly ChatMessage[]): string {
  const { question, context } = questionAndContext(messages);
  const sentences = selectRelevantSentences(question, context);
  return sentences.length === 0 ? NOTHING_RELEVANT_ANSWER : sentences.join(' ');
}
