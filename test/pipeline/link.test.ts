import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { candidateList, chooseNames, chooseReranked, memoryVotes, toRerank, compileSeparators, queryParts } from '../../src/pipeline/link.js';
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

describe('memoryVotes, candidateList, toRerank and chooseReranked (twins of cner_train.rerank)', () => {
  const c = (...rows: [number, number, number?][]) => rows.map(([index, cosine, vote]) => ({ index, cosine, vote: vote ?? 0 }));
  const rule = { kWhole: 3, kPart: 2, voters: 2, temperature: 0.05 };
  const decision = { probability: 4, cosine: 2, vote: 3, bias: -6, threshold: 0.5, maxNames: 3, rerankTop: 0, preCosine: 1, preVote: 0, preBias: 0, rerankFloor: 0 };
  // The same numbers as training/tests/test_rerank.py.
  const memory = [
    { score: 0.9, names: [{ index: 1, cosine: 0.8 }, { index: 2, cosine: 0.7 }] },
    { score: 0.85, names: [{ index: 2, cosine: 0.7 }] },
    { score: 0.5, names: [{ index: 3, cosine: 0.4 }] },
  ];

  it('takes the whole text\'s top kWhole and each part\'s top kPart, each once, by best cosine', () => {
    const whole = { indices: [5, 1, 2, 9], scores: [0.9, 0.8, 0.7, 0.6] };
    const part = { indices: [3, 1, 4], scores: [0.95, 0.85, 0.5] };
    assert.deepEqual(candidateList([whole, part], rule), c([3, 0.95], [5, 0.9], [1, 0.85], [2, 0.7]));
    assert.deepEqual(candidateList([whole], { ...rule, kWhole: 10 }).map((x) => x.index), [5, 1, 2, 9]);
  });

  it('weighs the nearest training diagnoses by exp((cosine - best) / temperature), normalized over the voters', () => {
    const votes = memoryVotes(memory, 2, 0.05);
    assert.deepEqual([...votes.keys()], [1, 2]);
    assert.ok(Math.abs(votes.get(1)!.vote - 1 / (1 + Math.exp(-1))) < 1e-12);
    assert.ok(Math.abs(votes.get(2)!.vote - 1) < 1e-12);
    assert.equal(memoryVotes([], 2, 0.05).size, 0);
  });

  it('adds the neighbours\' gold names to the candidates, with their cosines and votes', () => {
    const got = candidateList([{ indices: [5, 1], scores: [0.9, 0.8] }], rule, memory);
    assert.deepEqual(got.map((x) => [x.index, x.cosine]), [[5, 0.9], [1, 0.8], [2, 0.7]]);
    assert.deepEqual(got.map((x) => Math.round(x.vote * 1e6) / 1e6), [0, 0.731059, 1]);
  });

  it('re-ranks the rerankTop best by prescore, in candidate order', () => {
    const cands = c([5, 0.9, 0], [1, 0.8, 0.731059], [2, 0.7, 1]);
    assert.deepEqual(toRerank(cands, { ...decision, rerankTop: 2, preVote: 1 }).map((x) => x.index), [1, 2]);
    assert.deepEqual(toRerank(cands, { ...decision, rerankTop: 2 }).map((x) => x.index), [5, 1], 'by cosine alone');
    assert.deepEqual(toRerank(cands, { ...decision, rerankTop: 0 }).map((x) => x.index), [5, 1, 2], '0: all');
    assert.deepEqual(toRerank(c([7, 0.5], [8, 0.5], [9, 0.5]), { ...decision, rerankTop: 2 }).map((x) => x.index), [7, 8], 'ties keep candidate order');
    // prescore probabilities sigmoid(cosine - 1): 0.475, 0.450, 0.426
    assert.deepEqual(toRerank(cands, { ...decision, preBias: -1, rerankFloor: 0.44 }).map((x) => x.index), [5, 1], 'under the floor: not re-ranked');
    assert.deepEqual(toRerank(cands, { ...decision, preBias: -1, rerankFloor: 0.9 }).map((x) => x.index), [5], 'the best always');
  });

  it('scores sigmoid(weights · (probability, cosine, vote) + bias), keeps what clears the threshold, never none, at most maxNames', () => {
    const got = chooseReranked(c([1, 0.8, 0.731059], [2, 0.7, 1]), [0.2, 0.9], decision);
    assert.deepEqual(got.map((x) => x.index), [2]);
    assert.ok(Math.abs(got[0]!.score - 1 / (1 + Math.exp(-2))) < 1e-9);
    assert.deepEqual(chooseReranked(c([1, 0.8, 0.731059], [2, 0.7, 1]), [0.2, 0.9], { ...decision, threshold: 0.95 }).map((x) => x.index), [2], 'never none');
    assert.deepEqual(chooseReranked(c([7, 0], [8, 0]), [0.6, 0.6], { ...decision, bias: 0, threshold: 0 }).map((x) => x.index), [7, 8], 'ties keep candidate order');
    assert.deepEqual(chooseReranked(c([1, 0], [2, 0], [3, 0]), [0.9, 0.9, 0.9], { ...decision, bias: 0, maxNames: 2 }).length, 2);
    assert.deepEqual(chooseReranked([], [], decision), []);
  });
});
