import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createBuiltinProvider } from '../../../lib/llm/builtin';
import { cosineSimilarity } from '../../../lib/llm/hashing-embedder';

/**
 * Retrieval quality of the built-in embedder on hand-labelled pairs (test/fixtures/embedding-pairs.json,
 * written before the embedder was tuned): related pairs describe the same thing in other words,
 * unrelated pairs are on different topics, many sharing a word with another meaning (bank, server,
 * python…). Cosine similarity should rank related pairs above unrelated ones: ROC AUC ≥ 0.8.
 */

interface LabelledPair {
  a: string;
  b: string;
  related: boolean;
}

function loadPairs(): LabelledPair[] {
  const raw: unknown = JSON.parse(readFileSync(path.join(__dirname, '../../fixtures/embedding-pairs.json'), 'utf8'));
  if (!Array.isArray(raw)) throw new Error('embedding-pairs.json must hold an array');
  return raw.map((item: Partial<LabelledPair>, index) => {
    if (typeof item.a !== 'string' || typeof item.b !== 'string' || typeof item.related !== 'boolean') {
      throw new Error(`embedding-pairs.json[${index}] needs {a: string, b: string, related: boolean}`);
    }
    return { a: item.a, b: item.b, related: item.related };
  });
}

/**
 * ROC AUC as the Mann–Whitney U statistic: the share of (positive, negative) pairs in which the
 * positive scores higher, ties counting one half.
 */
function rocAuc(positiveScores: number[], negativeScores: number[]): number {
  if (positiveScores.length === 0 || negativeScores.length === 0) throw new Error('ROC AUC needs both positives and negatives');
  let wins = 0;
  for (const positive of positiveScores) {
    for (const negative of negativeScores) {
      if (positive > negative) wins += 1;
      else if (positive === negative) wins += 0.5;
    }
  }
  return wins / (positiveScores.length * negativeScores.length);
}

describe('built-in embedder quality on labelled text pairs', () => {
  const pairs = loadPairs();

  test('the fixture has at least 50 pairs, related and unrelated', () => {
    expect(pairs.length).toBeGreaterThanOrEqual(50);
    expect(pairs.some((pair) => pair.related)).toBe(true);
    expect(pairs.some((pair) => !pair.related)).toBe(true);
  });

  test('ROC AUC counts ties as one half', () => {
    expect(rocAuc([0.9, 0.8], [0.1, 0.2])).toBe(1);
    expect(rocAuc([0.1], [0.9])).toBe(0);
    expect(rocAuc([0.5, 0.5], [0.5, 0.5])).toBe(0.5);
    expect(rocAuc([0.7, 0.3], [0.5, 0.3])).toBe((1 + 0 + 1 + 0.5) / 4);
  });

  test('cosine similarity ranks related pairs above unrelated ones (ROC AUC ≥ 0.8)', async () => {
    const provider = createBuiltinProvider();
    const { vectors } = await provider.embed({ model: 'hashing-384', inputs: pairs.flatMap((pair) => [pair.a, pair.b]) });
    const similarities = pairs.map((pair, i) => ({ related: pair.related, score: cosineSimilarity(vectors[2 * i] ?? [], vectors[2 * i + 1] ?? []) }));
    const auc = rocAuc(
      similarities.filter((s) => s.related).map((s) => s.score),
      similarities.filter((s) => !s.related).map((s) => s.score),
    );
    expect(auc).toBeGreaterThanOrEqual(0.8);
  });
});
