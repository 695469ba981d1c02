import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { candidateList, chooseNames, chooseReranked, compileSeparators, queryParts } from '../../src/pipeline/link.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

interface Golden {
  readonly part_separators: string;
  readonly parts: readonly { readonly text: string; readonly parts: readonly string[] }[];
  readonly decisions: readonly {
    readonly decision: { readonly whole: number; readonly part: number; readonly max_names: number };
    readonly parts: readonly { readonly indices: number[]; readonly scores: number[] }[];
    readonly chosen: readonly number[];
  }[];
}

const golden = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'fixtures', 'golden', 'link.json'), 'utf8')) as Golden;

describe('linker rules, against the training package (fixtures/golden/link.json)', () => {
  const separators = compileSeparators(golden.part_separators);

  it('splits a diagnosis string into the same parts', () => {
    assert.ok(golden.parts.length >= 10);
    for (const c of golden.parts) assert.deepEqual(queryParts(c.text, separators), c.parts, JSON.stringify(c.text));
  });

  it('keeps the same names for the same nearest names and thresholds', () => {
    assert.ok(golden.decisions.length >= 10);
    for (const c of golden.decisions) {
      const d = { whole: c.decision.whole, part: c.decision.part, maxNames: c.decision.max_names };
      assert.deepEqual(chooseNames(c.parts, d), c.chosen, JSON.stringify(c));
    }
  });

  it('never keeps nothing, and never more than asked', () => {
    const low = { indices: [3, 4], scores: [0.1, 0.05] };
    assert.deepEqual(chooseNames([low, { indices: [7], scores: [0.2] }], { whole: 0.9, part: 0.9, maxNames: 3 }), [3]);
    const sure = (i: number, s: number) => ({ indices: [i], scores: [s] });
    assert.deepEqual(chooseNames([sure(1, 0.99), sure(2, 0.98), sure(3, 0.97)], { whole: 0.5, part: 0.5, maxNames: 2 }), [1, 2]);
    assert.deepEqual(chooseNames([], { whole: 0, part: 0, maxNames: 2 }), []);
  });
});

describe('candidateList and chooseReranked (twins of cner_train.rerank)', () => {
  const c = (...pairs: [number, number][]) => pairs.map(([index, cosine]) => ({ index, cosine }));

  it('takes the whole text\'s top kWhole and each part\'s top kPart, each once, by best cosine', () => {
    const whole = { indices: [5, 1, 2, 9], scores: [0.9, 0.8, 0.7, 0.6] };
    const part = { indices: [3, 1, 4], scores: [0.95, 0.85, 0.5] };
    assert.deepEqual(candidateList([whole, part], 3, 2), c([3, 0.95], [5, 0.9], [1, 0.85], [2, 0.7]));
    assert.deepEqual(candidateList([whole], 10, 2).map((x) => x.index), [5, 1, 2, 9]);
  });

  it('keeps what clears the threshold, best first, never none, at most maxNames', () => {
    const d = { threshold: 0.5, maxNames: 2, cosineWeight: 0 };
    assert.deepEqual(chooseReranked(c([1, 0], [2, 0], [3, 0]), [0.6, 0.9, 0.7], d), [{ index: 2, score: 0.9 }, { index: 3, score: 0.7 }]);
    assert.deepEqual(chooseReranked(c([1, 0], [2, 0]), [0.1, 0.3], d), [{ index: 2, score: 0.3 }]);
    assert.deepEqual(chooseReranked(c([7, 0], [8, 0]), [0.6, 0.6], d), [{ index: 7, score: 0.6 }, { index: 8, score: 0.6 }], 'ties keep candidate order');
    assert.deepEqual(chooseReranked([], [], d), []);
  });

  it('fuses the probability with the cosine by the bundle\'s weight (the same numbers as test_rerank.py)', () => {
    const d = { threshold: 0.6, maxNames: 3, cosineWeight: 0.5 };
    const got = chooseReranked(c([1, 0.9], [2, 0.1], [3, 0.8]), [0.4, 0.9, 0.6], d); // by probability alone: 2, 3, 1
    assert.deepEqual(got.map((x) => x.index), [3, 1]);
    assert.deepEqual(got.map((x) => Math.round(x.score * 1e6) / 1e6), [0.7, 0.65]);
    assert.deepEqual(chooseReranked(c([1, 0.9], [2, 0.1]), [0.1, 0.9], { threshold: 0.9, maxNames: 3, cosineWeight: 0.5 }).map((x) => x.index), [1], 'never none');
  });
});
