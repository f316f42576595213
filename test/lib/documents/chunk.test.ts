/**
 * Chunking (issue 7, criterion 4) as behaviour: exact offsets, the token bound, heading paths,
 * the splitting order (headings → paragraphs → sentences → lines → hard cut), bounded overlap,
 * determinism, Unicode safety, and a 1 MB document.
 *
 * The bound: every chunk has `tokens <= targetTokens`, overlap included (no allowance on top).
 */
import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import { chunkText, countTokens, type Chunk, type ChunkOptions } from '../../../lib/documents/chunk';

// --- fixtures ----------------------------------------------------------------------------------

const VOCABULARY = (
  'the a of to and in for is on with that by as at from it this be are or an install server ' +
  'configure request response token chunk index vector search query document parse build test ' +
  'release version module package option value default error retry timeout worker queue cache'
).split(' ');

/** Deterministic pseudo-random words (a linear congruential generator, so fixtures never change). */
function wordSource(seed: number): (count: number) => string {
  let state = seed;
  return (count) => {
    const words: string[] = [];
    for (let i = 0; i < count; i++) {
      state = (state * 1103515245 + 12345) % 2147483648;
      words.push(VOCABULARY[state % VOCABULARY.length]!);
    }
    return words.join(' ');
  };
}

/** A sentence of `wordCount` words, capitalised, ending with a period. */
function sentenceFrom(words: (count: number) => string, wordCount: number): string {
  const text = words(wordCount);
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
}

function paragraph(words: (count: number) => string, sentences: number, wordsPerSentence = 10): string {
  return Array.from({ length: sentences }, () => sentenceFrom(words, wordsPerSentence)).join(' ');
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;
const insideSurrogatePair = (text: string, index: number) =>
  index > 0 && index < text.length && isHighSurrogate(text.charCodeAt(index - 1)) && isLowSurrogate(text.charCodeAt(index));

/** Start offsets of the lines that begin with a markdown heading marker. */
function headingLineStarts(text: string): number[] {
  return [...text.matchAll(/^#{1,6} /gm)].map((match) => match.index);
}

/**
 * The invariants every result must hold, collected as messages so one failure shows them all:
 * exact slices, order, trimmed text, exact token counts within the target (overlap included),
 * no offset inside a surrogate pair, and every non-whitespace character in some chunk.
 */
function problemsOf(text: string, chunks: Chunk[], { targetTokens }: ChunkOptions): string[] {
  const problems: string[] = [];
  let covered = 0; // every non-whitespace character before this offset is in some chunk
  chunks.forEach((chunk, i) => {
    const where = `chunk ${i} [${chunk.start}, ${chunk.end})`;
    if (chunk.index !== i) problems.push(`${where}: index ${chunk.index}`);
    if (chunk.text !== text.slice(chunk.start, chunk.end)) problems.push(`${where}: text is not the slice`);
    if (!(chunk.start < chunk.end)) problems.push(`${where}: empty`);
    if (/^\s|\s$/.test(chunk.text)) problems.push(`${where}: untrimmed`);
    if (chunk.tokens !== countTokens(chunk.text)) problems.push(`${where}: tokens ${chunk.tokens} != ${countTokens(chunk.text)}`);
    if (chunk.tokens > targetTokens) problems.push(`${where}: ${chunk.tokens} tokens > ${targetTokens}`);
    if (insideSurrogatePair(text, chunk.start) || insideSurrogatePair(text, chunk.end)) problems.push(`${where}: splits a surrogate pair`);
    const previous = chunks[i - 1];
    if (previous && !(chunk.start > previous.start && chunk.end > previous.end)) problems.push(`${where}: out of order`);
    const gap = text.slice(covered, chunk.start);
    if (chunk.start > covered && /\S/.test(gap)) problems.push(`${where}: text before it is in no chunk`);
    covered = Math.max(covered, chunk.end);
  });
  if (/\S/.test(text.slice(covered))) problems.push('text after the last chunk is in no chunk');
  return problems;
}

function chunkAndCheck(text: string, options: ChunkOptions): Chunk[] {
  const chunks = chunkText(text, options);
  expect(problemsOf(text, chunks, options)).toEqual([]);
  return chunks;
}

/** Pairs of consecutive chunks of the same section (overlap applies only within a section). */
function sameSectionPairs(chunks: Chunk[]): [Chunk, Chunk][] {
  const pairs: [Chunk, Chunk][] = [];
  for (let i = 1; i < chunks.length; i++) {
    const previous = chunks[i - 1]!;
    const chunk = chunks[i]!;
    if (previous.headingPath.join('\u0000') === chunk.headingPath.join('\u0000') && !/^#{1,6} /.test(chunk.text)) pairs.push([previous, chunk]);
  }
  return pairs;
}

// --- tokens -----------------------------------------------------------------------------------

describe('countTokens', () => {
  it('counts exactly as js-tiktoken’s cl100k_base encoder does', () => {
    const reference = new Tiktoken(cl100kBase);
    const samples = [
      'Hello, world! This is a test of the tokenizer.',
      "function add(a, b) {\n  return a + b; // it's fine\n}\n",
      '东京都的天气很好。我们今天去公园散步，然后吃午饭。',
      '日本語のテキストとカタカナ、ひらがな。',
      '👩‍👩‍👧‍👦 family, 👍🏽 thumbs, 🇫🇷 flag, 😀😀😀',
      'e\u0301 a\u0308\u0301 नमस्ते दुनिया',
      'special text <|endoftext|> and <|fim_prefix|> stays plain',
      '    indented\n\n\n\ttabs\t\tand   spaces   ',
      'a'.repeat(1000),
      '1234567890'.repeat(20),
      '=-'.repeat(300),
      'Antidisestablishmentarianism supercalifragilisticexpialidocious',
    ];
    for (const sample of samples) expect([sample, countTokens(sample)]).toEqual([sample, reference.encode(sample, [], []).length]);
    expect(countTokens('')).toBe(0);
  });

  it('stays fast on pathological runs (a 200,000-letter word, 100,000 unpunctuated CJK characters)', () => {
    // js-tiktoken's own merge is quadratic here (minutes); ours is O(n log n).
    expect(countTokens('a'.repeat(200_000))).toBeGreaterThan(1000);
    expect(countTokens('语言处理'.repeat(25_000))).toBeGreaterThan(10_000);
  });
});

// --- basics -------------------------------------------------------------------------------------

describe('chunkText basics', () => {
  const options = { targetTokens: 100, overlapTokens: 10 };

  it('returns no chunks for empty or whitespace-only text', () => {
    expect(chunkText('', options)).toEqual([]);
    expect(chunkText(' \n\t\n\n   ', options)).toEqual([]);
  });

  it('returns a short text as one trimmed chunk with exact offsets', () => {
    const text = '\n\n  Just one short paragraph.  \n';
    expect(chunkText(text, options)).toEqual([
      { index: 0, text: 'Just one short paragraph.', start: 4, end: 29, headingPath: [], tokens: countTokens('Just one short paragraph.') },
    ]);
  });

  it('rejects options that cannot be honoured', () => {
    expect(() => chunkText('text', { targetTokens: 3, overlapTokens: 0 })).toThrow(RangeError);
    expect(() => chunkText('text', { targetTokens: 100, overlapTokens: 100 })).toThrow(RangeError);
    expect(() => chunkText('text', { targetTokens: 100, overlapTokens: -1 })).toThrow(RangeError);
    expect(() => chunkText('text', { targetTokens: 10.5, overlapTokens: 0 })).toThrow(RangeError);
  });
});

// --- sections -----------------------------------------------------------------------------------

describe('sections and heading paths', () => {
  const roomy = { targetTokens: 500, overlapTokens: 0 };

  it('tracks nesting: deeper levels append, a same or higher level replaces', () => {
    const text = [
      'Intro before any heading.',
      '# Install',
      'Get it.',
      '## From source',
      'Clone and build.',
      '### Linux',
      'Use make.',
      '## From npm',
      'npm install it.',
      '# Usage',
      'Call it.',
      '### Deep without a level 2',
      'Still fine.',
    ].join('\n\n');
    const chunks = chunkAndCheck(text, roomy);
    expect(chunks.map((chunk) => [chunk.headingPath, chunk.text])).toEqual([
      [[], 'Intro before any heading.'],
      [['Install'], '# Install\n\nGet it.'],
      [['Install', 'From source'], '## From source\n\nClone and build.'],
      [['Install', 'From source', 'Linux'], '### Linux\n\nUse make.'],
      [['Install', 'From npm'], '## From npm\n\nnpm install it.'],
      [['Usage'], '# Usage\n\nCall it.'],
      [['Usage', 'Deep without a level 2'], '### Deep without a level 2\n\nStill fine.'],
    ]);
  });

  it('reads setext headings, strips closing hashes, and ignores what only looks like a heading', () => {
    const text = [
      'Title',
      '=====',
      '',
      'Body text.',
      '',
      '## Build ##',
      '',
      '```sh',
      '# not a heading: a shell comment',
      'make',
      '```',
      '',
      '#hashtag is not a heading either',
      '',
      'Sub part',
      '--------',
      '',
      'More text.',
      '',
      '---',
      '',
      'After a thematic break.',
    ].join('\n');
    const chunks = chunkAndCheck(text, roomy);
    expect(chunks.map((chunk) => chunk.headingPath)).toEqual([['Title'], ['Title', 'Build'], ['Title', 'Sub part']]);
    expect(chunks[1]?.text).toContain('# not a heading: a shell comment');
    expect(chunks[2]?.text).toMatch(/^Sub part\n-+\n\nMore text\.\n\n---\n\nAfter a thematic break\.$/);
  });

  it('keeps a heading with its section’s first chunk, even a section with no body', () => {
    const text = '# Guide\n\n## Setup\nStep one.\n\n## Empty\n\n## Last\nDone.';
    const chunks = chunkAndCheck(text, roomy);
    expect(chunks.map((chunk) => [chunk.headingPath, chunk.text])).toEqual([
      [['Guide'], '# Guide'],
      [['Guide', 'Setup'], '## Setup\nStep one.'],
      [['Guide', 'Empty'], '## Empty'],
      [['Guide', 'Last'], '## Last\nDone.'],
    ]);
  });

  it('never lets a chunk span two sections, nor an overlap reach back across a heading', () => {
    const words = wordSource(7);
    const sections = ['# Alpha', '## Beta', '## Gamma', '# Delta'].map((heading) => `${heading}\n\n${paragraph(words, 6)}\n\n${paragraph(words, 5)}`);
    const text = sections.join('\n\n');
    const chunks = chunkAndCheck(text, { targetTokens: 60, overlapTokens: 15 });
    const headingStarts = headingLineStarts(text);
    for (const chunk of chunks) {
      expect(headingStarts.filter((start) => start > chunk.start && start < chunk.end)).toEqual([]);
    }
    // Each section's first chunk starts at its heading; later chunks start after the heading line.
    for (const start of headingStarts) expect(chunks.some((chunk) => chunk.start === start)).toBe(true);
    for (const chunk of chunks) {
      const sectionStart = Math.max(...headingStarts.filter((start) => start <= chunk.start));
      if (chunk.start !== sectionStart) expect(chunk.start).toBeGreaterThan(text.indexOf('\n', sectionStart));
    }
    expect(new Set(chunks.map((chunk) => chunk.headingPath.join(' > ')))).toEqual(new Set(['Alpha', 'Alpha > Beta', 'Alpha > Gamma', 'Delta']));
  });
});

// --- splitting order ------------------------------------------------------------------------------

describe('splitting order: headings → paragraphs → sentences → lines → hard cut', () => {
  it('packs whole paragraphs greedily, cutting only between paragraphs', () => {
    const words = wordSource(11);
    const paragraphs = Array.from({ length: 12 }, (_, i) => paragraph(words, 1 + (i % 3), 8));
    const text = paragraphs.join('\n\n');
    const options = { targetTokens: 60, overlapTokens: 0 };
    const chunks = chunkAndCheck(text, options);
    const starts = new Set<number>();
    const ends = new Set<number>();
    let offset = 0;
    for (const p of paragraphs) {
      starts.add(offset);
      ends.add(offset + p.length);
      offset += p.length + 2;
    }
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.length).toBeLessThan(paragraphs.length);
    for (const chunk of chunks) {
      expect(starts.has(chunk.start)).toBe(true);
      expect(ends.has(chunk.end)).toBe(true);
    }
    // Greedy: the paragraph after each chunk would not have fitted in it.
    for (let i = 0; i + 1 < chunks.length; i++) {
      const next = paragraphs.find((p) => text.startsWith(p, chunks[i + 1]!.start))!;
      expect(countTokens(`${chunks[i]!.text}\n\n${next}`)).toBeGreaterThan(options.targetTokens);
    }
  });

  it('splits a paragraph larger than the target at sentence ends, starting it in a fresh chunk', () => {
    const words = wordSource(13);
    const short = 'A short opening paragraph.';
    const long = paragraph(words, 30, 12);
    const text = `${short}\n\n${long}\n\nA short closing paragraph.`;
    const chunks = chunkAndCheck(text, { targetTokens: 70, overlapTokens: 0 });
    expect(countTokens(long)).toBeGreaterThan(70);
    expect(chunks[0]?.text).toBe(short);
    const longStart = text.indexOf(long);
    const sentenceEnds = new Set([...long.matchAll(/\./g)].map((match) => longStart + match.index + 1));
    const inLong = chunks.filter((chunk) => chunk.start >= longStart && chunk.end <= longStart + long.length);
    expect(inLong.length).toBeGreaterThan(3);
    for (const chunk of inLong) {
      expect(sentenceEnds.has(chunk.end)).toBe(true);
      expect(chunk.text).toMatch(/^[A-Z]/);
    }
  });

  it('does not end sentences at common abbreviations, initials or list numbers', () => {
    const sentence = (i: number) => `Sentence ${i} mentions Dr. Smith and J. R. Doe, e.g. twice, vs. others, in the U.S. today.`;
    const text = Array.from({ length: 12 }, (_, i) => sentence(i)).join(' ');
    const chunks = chunkAndCheck(text, { targetTokens: 30, overlapTokens: 0 });
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(chunk.text).toMatch(/^Sentence \d+ .* today\.$/);
  });

  it('splits a "sentence" larger than the target (a code block) at line breaks before any hard cut', () => {
    const lines = Array.from({ length: 120 }, (_, i) => `    const value${i} = compute(input${i}, options)`);
    const text = `\`\`\`ts\n${lines.join('\n')}\n\`\`\``;
    const chunks = chunkAndCheck(text, { targetTokens: 80, overlapTokens: 0 });
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) {
      expect(chunk.start === 0 || text[chunk.start - 1] === ' ').toBe(true); // after a line's indentation
      expect(chunk.end === text.length || text[chunk.end] === '\n').toBe(true);
    }
  });

  it('hard-cuts a single enormous sentence without punctuation or line breaks at token boundaries', () => {
    const words = wordSource(17);
    const text = words(3000);
    const options = { targetTokens: 50, overlapTokens: 0 };
    const chunks = chunkAndCheck(text, options);
    expect(chunks.length).toBeGreaterThan(40);
    // Cut where the token budget runs out, not at some earlier boundary.
    for (const chunk of chunks.slice(0, -1)) expect(chunk.tokens).toBeGreaterThanOrEqual(options.targetTokens - 3);
    // Without overlap the pieces tile the text, separated only by the whitespace at each cut.
    for (let i = 1; i < chunks.length; i++) expect(text.slice(chunks[i - 1]!.end, chunks[i]!.start)).toMatch(/^\s*$/);
  });

  it('hard-cuts a run with no whitespace at all mid-"word", and the pieces tile it', () => {
    const blob = Buffer.from(Array.from({ length: 6000 }, (_, i) => (i * 7919) % 251)).toString('base64');
    const chunks = chunkAndCheck(blob, { targetTokens: 64, overlapTokens: 0 });
    expect(chunks.length).toBeGreaterThan(10);
    expect(chunks.map((chunk) => chunk.text).join('')).toBe(blob);
  });

  it('sizes hard-cut pieces to leave room for the overlap', () => {
    const words = wordSource(19);
    const text = words(2000);
    const chunks = chunkAndCheck(text, { targetTokens: 60, overlapTokens: 12 });
    expect(chunks[0]!.tokens).toBeLessThanOrEqual(48);
    const pairs = sameSectionPairs(chunks);
    expect(pairs.length).toBe(chunks.length - 1);
    for (const [previous, chunk] of pairs) {
      expect(chunk.start).toBeLessThan(previous.end);
      expect(countTokens(text.slice(chunk.start, previous.end))).toBeGreaterThanOrEqual(8);
    }
  });
});

// --- overlap ------------------------------------------------------------------------------------

describe('overlap', () => {
  const words = wordSource(23);
  // Paragraphs of one to three sentences, so the room left in a chunk never limits the overlap below overlapTokens.
  const prose = Array.from({ length: 30 }, (_, i) => paragraph(words, 1 + (i % 3), 9)).join('\n\n');

  it('starts each later chunk of a section up to overlapTokens earlier, at a word boundary inside its predecessor', () => {
    const options = { targetTokens: 80, overlapTokens: 20 };
    const chunks = chunkAndCheck(prose, options);
    const pairs = sameSectionPairs(chunks);
    expect(pairs.length).toBeGreaterThan(5);
    let overlapTokens = 0;
    for (const [previous, chunk] of pairs) {
      expect(chunk.start).toBeGreaterThan(previous.start);
      expect(chunk.start).toBeLessThan(previous.end);
      expect(/\s/.test(prose[chunk.start - 1]!)).toBe(true);
      const overlap = countTokens(prose.slice(chunk.start, previous.end));
      expect(overlap).toBeGreaterThan(0);
      expect(overlap).toBeLessThanOrEqual(options.overlapTokens);
      overlapTokens += overlap;
    }
    expect(overlapTokens / pairs.length).toBeGreaterThan(options.overlapTokens / 2);
  });

  it('prefers to start the overlap at a sentence start when sentences are short', () => {
    // About 10 tokens a sentence: a word start could give 15 tokens of overlap, a sentence start gives 10.
    const text = Array.from({ length: 60 }, (_, i) => `Step ${i} of the process is short.`).join(' ');
    const chunks = chunkAndCheck(text, { targetTokens: 60, overlapTokens: 15 });
    const pairs = sameSectionPairs(chunks);
    expect(pairs.length).toBeGreaterThan(5);
    for (const [previous, chunk] of pairs) {
      expect(chunk.start).toBeLessThan(previous.end);
      expect(chunk.text).toMatch(/^Step \d+ of the process is short\./);
    }
  });

  it('leaves chunks disjoint when overlapTokens is 0', () => {
    const chunks = chunkAndCheck(prose, { targetTokens: 80, overlapTokens: 0 });
    for (let i = 1; i < chunks.length; i++) expect(chunks[i]!.start).toBeGreaterThanOrEqual(chunks[i - 1]!.end);
  });
});

// --- determinism --------------------------------------------------------------------------------

describe('determinism', () => {
  it('returns the same chunks for the same input, whatever was chunked in between', () => {
    const words = wordSource(29);
    const document = `# Title\n\n${paragraph(words, 40)}\n\n## Part\n\n${words(800)}\n\n东京都的天气很好。${'我们今天去公园散步'.repeat(40)}`;
    const other = `${paragraph(wordSource(31), 50)} ${'x'.repeat(5000)}`;
    const options = { targetTokens: 64, overlapTokens: 16 };
    const first = chunkText(document, options);
    chunkText(other, options);
    expect(chunkText(document, options)).toEqual(first);
    expect(problemsOf(document, first, options)).toEqual([]);
  });
});

// --- Unicode --------------------------------------------------------------------------------------

describe('Unicode', () => {
  const graphemeStarts = (text: string) => new Set([...new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(text)].map((s) => s.index).concat(text.length));

  it('never puts an offset inside a surrogate pair: emoji, astral CJK, flags', () => {
    const text = [
      '😀🎉👍🏽🇫🇷🇯🇵'.repeat(200),
      '𠀀𠀁𠀂𠀃𠀄𠀅'.repeat(150),
      `Mixed ${'😀 word 👍🏽 '.repeat(200)}`,
    ].join('\n\n');
    chunkAndCheck(text, { targetTokens: 16, overlapTokens: 4 });
    chunkAndCheck(text, { targetTokens: 37, overlapTokens: 0 });
  });

  it('cuts runs of emoji sequences and combining marks between grapheme clusters', () => {
    const families = '👩‍👩‍👧‍👦👨‍👨‍👦'.repeat(100);
    const marks = 'a\u0308\u0301e\u0323\u0302'.repeat(400);
    for (const text of [families, marks]) {
      const boundaries = graphemeStarts(text);
      const chunks = chunkAndCheck(text, { targetTokens: 48, overlapTokens: 0 });
      expect(chunks.length).toBeGreaterThan(3);
      for (const chunk of chunks) {
        expect(boundaries.has(chunk.start)).toBe(true);
        expect(boundaries.has(chunk.end)).toBe(true);
      }
    }
  });

  it('splits CJK text at its full stops, and overlaps between CJK characters', () => {
    const sentence = '我们今天去公园散步然后在湖边吃午饭。';
    const text = sentence.repeat(60);
    const chunks = chunkAndCheck(text, { targetTokens: 60, overlapTokens: 10 });
    expect(chunks.length).toBeGreaterThan(5);
    for (const chunk of chunks) expect(chunk.text.endsWith('。')).toBe(true);
    const pairs = sameSectionPairs(chunks);
    for (const [previous, chunk] of pairs) expect(chunk.start).toBeLessThan(previous.end);
  });
});

// --- scale ----------------------------------------------------------------------------------------

describe('scale', () => {
  it('chunks a 1 MB mixed document (within the test timeout; no timing assertion)', () => {
    const words = wordSource(37);
    const parts: string[] = [];
    let size = 0;
    for (let i = 0; size < 1_000_000; i++) {
      const part =
        i % 50 === 0
          ? `# Chapter ${i}`
          : i % 10 === 0
            ? `## Section ${i}`
            : i % 17 === 0
              ? `\`\`\`js\n${Array.from({ length: 30 }, (_, line) => `const v${line} = call(${line});`).join('\n')}\n\`\`\``
              : i % 23 === 0
                ? `东京都的天气很好。${'我们今天去公园散步然后吃午饭'.repeat(20)}。😀👍🏽`
                : i % 97 === 0
                  ? words(2000)
                  : paragraph(words, 3 + (i % 6));
      parts.push(part);
      size += part.length + 2;
    }
    const text = parts.join('\n\n');
    const options = { targetTokens: 400, overlapTokens: 60 };
    const chunks = chunkText(text, options);
    expect(text.length).toBeGreaterThanOrEqual(1_000_000);
    expect(chunks.length).toBeGreaterThan(500);
    expect(problemsOf(text, chunks, options)).toEqual([]);
  });
});
