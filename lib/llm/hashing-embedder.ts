/**
 * The built-in provider's embedder: signed feature hashing of word unigrams, word bigrams and
 * character 3–5-grams into 384 dimensions, with no model file, no dependency and no network.
 * Deterministic across processes and versions of Node (the hash runs on UTF-16 code units), so
 * vectors stored yesterday stay comparable with queries embedded today.
 *
 * Similarity is lexical: texts that share words, word stems or word pieces come out close; texts
 * that say the same thing in different words mostly do not.
 */

export const HASHING_EMBEDDING_DIMENSIONS = 384;

/**
 * How much each feature group contributes once each group's own vector is unit length. Whole
 * words carry most of the meaning; word pieces catch inflections and compounds the stemmer
 * misses; bigrams reward shared phrases without dominating.
 */
const groupWeights = { words: 1, bigrams: 0.5, characters: 0.8 } as const;
type FeatureGroup = keyof typeof groupWeights;
const featureGroups: readonly FeatureGroup[] = ['words', 'bigrams', 'characters'];

const minCharacterGram = 3;
const maxCharacterGram = 5;

/**
 * Function words that say little about what a text is about. Left out of word features and word
 * pieces (they would otherwise make every English sentence similar to every other), but still
 * counted in token usage.
 */
const stopWords: ReadonlySet<string> = new Set(
  (
    'a about above after again against all am an and any are as at be because been before being below between both but by ' +
    'can could did do does doing down during each few for from further had has have having he her here hers herself him ' +
    'himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other ' +
    'our ours ourselves out over own same she should so some such than that the their theirs them themselves then there ' +
    'these they this those through to too under until up very was we were what when where which while who whom why will ' +
    'with would you your yours yourself yourselves also may might must shall us let get got via per'
  ).split(' '),
);

// ---------------------------------------------------------------------------------------------
// Hashing: FNV-1a over UTF-16 code units, then murmur3's finaliser so that nearby strings spread
// over all dimensions. The bucket comes from the high bits and the sign from the lowest bit, so the
// two are independent.

const fnvOffsetBasis = 0x811c9dc5;
const fnvPrime = 0x01000193;

function fnvStep(hash: number, codeUnit: number): number {
  return Math.imul(hash ^ codeUnit, fnvPrime);
}

function fnvString(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) h = fnvStep(h, text.charCodeAt(i));
  return h;
}

function finalMix(hash: number): number {
  let h = hash ^ (hash >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Each group hashes from its own starting state, so the word `ing` and the piece `ing` differ. */
const groupSeeds: Record<FeatureGroup, number> = {
  words: fnvString(fnvOffsetBasis, 'word:'),
  bigrams: fnvString(fnvOffsetBasis, 'bigram:'),
  characters: fnvString(fnvOffsetBasis, 'chars:'),
};

// ---------------------------------------------------------------------------------------------
// Text to terms.

/** Letters and digits; everything else (punctuation, `_`, `-`, `'`) separates words. */
const wordPattern = /[\p{L}\p{N}]+/gu;
/** camelCase and PascalCase boundaries in identifiers: `parseHttpResponse` → parse Http Response. */
const camelBoundary = /(\p{Ll})(\p{Lu})|(\p{Lu})(\p{Lu}\p{Ll})/gu;

/** Lower-cased, NFKC-normalised words of `text` (full-width letters, ligatures and `ﬁ` folded). */
export function tokenize(text: string): string[] {
  const normalised = text.normalize('NFKC').replace(camelBoundary, '$1$3 $2$4').toLowerCase();
  return normalised.match(wordPattern) ?? [];
}

/** Whitespace-separated words: the unit the built-in provider reports as tokens. */
export function countWords(text: string): number {
  return text.match(/\S+/g)?.length ?? 0;
}

const vowels = /[aeiouy]/;

function stripSuffix(word: string, suffix: string, replacement: string, minStem: number): string | undefined {
  if (!word.endsWith(suffix)) return undefined;
  const stem = word.slice(0, word.length - suffix.length);
  return stem.length >= minStem && vowels.test(stem) ? stem + replacement : undefined;
}

/** `runn` → `run`, `stopp` → `stop`; `ll`, `ss` and `zz` are usually part of the word (`fall`). */
function undoubleFinalConsonant(stem: string): string {
  const last = stem[stem.length - 1];
  if (stem.length >= 4 && last === stem[stem.length - 2] && last !== undefined && !/[aeioulsz]/.test(last)) {
    return stem.slice(0, -1);
  }
  return stem;
}

/**
 * A light English stemmer: enough that `query`/`queries`, `migrate`/`migration`/`migrated`,
 * `cache`/`cached`/`caching` and `server`/`servers` share a term. Words of other languages and
 * short words pass through unchanged; character n-grams catch what this misses.
 */
export function stem(word: string): string {
  if (word.length <= 3 || !/^[a-z]+$/.test(word)) return word;
  let w = word;
  w =
    stripSuffix(w, 'ies', 'y', 2) ??
    stripSuffix(w, 'ied', 'y', 2) ??
    stripSuffix(w, 'sses', 'ss', 2) ??
    (/(ss|us|is)$/.test(w) ? w : undefined) ??
    (/(s|x|z|ch|sh)es$/.test(w) ? w.slice(0, -2) : undefined) ??
    stripSuffix(w, 's', '', 3) ??
    w;
  const withoutVerbEnding = stripSuffix(w, 'ing', '', 3) ?? stripSuffix(w, 'ed', '', 3);
  if (withoutVerbEnding !== undefined) w = undoubleFinalConsonant(withoutVerbEnding);
  w =
    stripSuffix(w, 'ational', 'ate', 3) ??
    stripSuffix(w, 'ation', 'ate', 3) ??
    stripSuffix(w, 'ness', '', 3) ??
    stripSuffix(w, 'ment', '', 4) ??
    stripSuffix(w, 'ly', '', 4) ??
    stripSuffix(w, 'er', '', 4) ??
    w;
  // A final silent e varies with the suffix (store/storing, cache/cached): drop it everywhere.
  if (w.length > 3 && w.endsWith('e')) w = w.slice(0, -1);
  return w;
}

/** The stems of the words of `text` that carry content (stop words left out), in text order. */
export function contentStems(text: string): string[] {
  const stems: string[] = [];
  for (const word of tokenize(text)) if (!stopWords.has(word)) stems.push(stem(word));
  return stems;
}

// ---------------------------------------------------------------------------------------------
// Embedding.

/** Feature hash → occurrences, per group; reused between texts to spare the allocator. */
const counts: Record<FeatureGroup, Map<number, number>> = { words: new Map(), bigrams: new Map(), characters: new Map() };

function count(group: FeatureGroup, hash: number): void {
  const map = counts[group];
  map.set(hash, (map.get(hash) ?? 0) + 1);
}

/** Adds every 3–5-gram of `<word>` (the brackets mark its start and end) to the character group. */
function countCharacterGrams(word: string): void {
  const marked = `<${word}>`;
  for (let start = 0; start + minCharacterGram <= marked.length; start++) {
    // FNV-1a is incremental: the 4- and 5-gram hashes continue from the 3-gram's state.
    let h = groupSeeds.characters;
    for (let end = start; end < marked.length && end - start < maxCharacterGram; end++) {
      h = fnvStep(h, marked.charCodeAt(end));
      if (end - start + 1 >= minCharacterGram) count('characters', h);
    }
  }
}

function euclideanNorm(vector: Float64Array): number {
  let sumOfSquares = 0;
  for (const x of vector) sumOfSquares += x * x;
  return Math.sqrt(sumOfSquares);
}

/** Adds each group's counts to `vector` with sublinear tf (1 + ln tf), unit length per group. */
function addGroups(vector: Float64Array): void {
  const groupVector = new Float64Array(HASHING_EMBEDDING_DIMENSIONS);
  for (const group of featureGroups) {
    const map = counts[group];
    if (map.size === 0) continue;
    groupVector.fill(0);
    for (const [hash, occurrences] of map) {
      const mixed = finalMix(hash);
      const bucket = (mixed >>> 8) % HASHING_EMBEDDING_DIMENSIONS;
      const sign = mixed & 1 ? -1 : 1;
      groupVector[bucket] = (groupVector[bucket] ?? 0) + sign * (1 + Math.log(occurrences));
    }
    const norm = euclideanNorm(groupVector);
    if (norm === 0) continue; // the features cancelled each other out: nothing to add
    const scale = groupWeights[group] / norm;
    for (let i = 0; i < HASHING_EMBEDDING_DIMENSIONS; i++) vector[i] = (vector[i] ?? 0) + (groupVector[i] ?? 0) * scale;
  }
}

/**
 * The 384-dimensional unit vector of `text`; the zero vector when the text has no words (a zero
 * vector has cosine 0 with everything, never NaN).
 */
export function embedText(text: string): number[] {
  for (const group of featureGroups) counts[group].clear();
  let previousStem: string | undefined;
  for (const word of tokenize(text)) {
    if (stopWords.has(word)) continue; // bigrams join the content words on either side of a stop word
    const wordStem = stem(word);
    count('words', fnvString(groupSeeds.words, wordStem));
    if (previousStem !== undefined) {
      count('bigrams', fnvString(fnvStep(fnvString(groupSeeds.bigrams, previousStem), 0x20), wordStem));
    }
    previousStem = wordStem;
    countCharacterGrams(word);
  }
  const vector = new Float64Array(HASHING_EMBEDDING_DIMENSIONS);
  addGroups(vector);
  const norm = euclideanNorm(vector);
  const result = new Array<number>(HASHING_EMBEDDING_DIMENSIONS);
  for (let i = 0; i < HASHING_EMBEDDING_DIMENSIONS; i++) result[i] = norm === 0 ? 0 : (vector[i] ?? 0) / norm;
  return result;
}

/** Cosine similarity; 0 when either vector is all zeros. */
export function cosineSimilarity(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let normA = 0;
  let normB = 0;
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    normA += x * x;
    normB += y * y;
  }
  return normA === 0 || normB === 0 ? 0 : dot / Math.sqrt(normA * normB);
}
