import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Crf, constrain } from '../../src/pipeline/crf.js';
import { NUM_TAGS, TAGS } from '../../src/pipeline/labels.js';
import { ViterbiDecoder } from '../../src/pipeline/viterbi.js';
import { cachedValidPaths, crfArb, emissionsArb, floatScore, intScore, isValidBio, pathScore } from './helpers.js';

const T = NUM_TAGS;

/**
 * The best valid path by enumeration. Among equal scores the contract's
 * tie-breaking (lower index when scanning, from the last tag backwards)
 * picks the path that is smallest compared from its last tag to its first.
 */
function bruteForce(crf: Crf, em: Float32Array, n: number): { path: number[]; score: number } {
  let best: number[] = [];
  let bestScore = -Infinity;
  for (const path of cachedValidPaths(n)) {
    const s = pathScore(crf, em, path);
    if (s > bestScore || (s === bestScore && reverseLexLess(path, best))) {
      best = path;
      bestScore = s;
    }
  }
  return { path: best, score: bestScore };
}

function reverseLexLess(a: readonly number[], b: readonly number[]): boolean {
  for (let t = a.length - 1; t >= 0; t--) if (a[t] !== b[t]) return a[t]! < b[t]!;
  return false;
}

const decode = (crf: Crf, em: Float32Array): number[] => Array.from(new ViterbiDecoder(constrain(crf)).decode(em, em.length / T));

describe('ViterbiDecoder', () => {
  it('equals brute force over all valid paths, ties included (integer scores, length ≤ 4)', () => {
    fc.assert(
      fc.property(crfArb(intScore), emissionsArb(intScore, 1, 4), (crf, em) => {
        assert.deepEqual(decode(crf, em), bruteForce(crf, em, em.length / T).path);
      }),
      { numRuns: 150 },
    );
  });

  it('finds a best-scoring path for real-valued scores (length ≤ 5)', () => {
    // Distinct paths may tie up to rounding here (sums in another order), so
    // this checks the score; exact tie-breaking is the integer test above.
    fc.assert(
      fc.property(crfArb(floatScore), emissionsArb(floatScore, 5, 5), (crf, em) => {
        const got = decode(crf, em);
        const { score } = bruteForce(crf, em, 5);
        assert.ok(isValidBio(got));
        const gotScore = pathScore(crf, em, got);
        assert.ok(Math.abs(gotScore - score) <= 1e-9 * Math.max(1, Math.abs(score)), `${gotScore} vs ${score}`);
      }),
      { numRuns: 40 },
    );
  });

  it('never outputs an invalid BIO sequence, however extreme the scores', () => {
    const wild = fc.oneof(floatScore, fc.constantFrom(-1e30, 1e30, -1e300, 0), fc.double({ noNaN: true }));
    fc.assert(
      fc.property(crfArb(floatScore), emissionsArb(wild, 1, 140), (crf, em) => {
        assert.ok(isValidBio(decode(crf, em)));
      }),
      { numRuns: 100 },
    );
  });

  it('stays valid with NaN emissions', () => {
    const crf: Crf = { numTags: T, start: new Float64Array(T), end: new Float64Array(T), transitions: new Float64Array(T * T) };
    const em = new Float32Array(10 * T).fill(Number.NaN);
    assert.ok(isValidBio(decode(crf, em)));
  });

  it('follows the emissions when transitions are flat, repairing a stray I-X', () => {
    const crf: Crf = { numTags: T, start: new Float64Array(T), end: new Float64Array(T), transitions: new Float64Array(T * T) };
    const want = ['O', 'B-DIS', 'I-DIS', 'I-ANA', 'O'];
    const em = new Float32Array(want.length * T);
    want.forEach((tag, t) => (em[t * T + TAGS.indexOf(tag)] = 5));
    const got = decode(crf, em).map((i) => TAGS[i]);
    assert.deepEqual(got.slice(0, 3), ['O', 'B-DIS', 'I-DIS']);
    assert.notEqual(got[3], 'I-ANA');
  });

  it('reuses its buffers across calls of different lengths and writes into `out`', () => {
    const crf: Crf = { numTags: T, start: new Float64Array(T), end: new Float64Array(T), transitions: new Float64Array(T * T) };
    const d = new ViterbiDecoder(constrain(crf), 4);
    const long = new Float32Array(300 * T);
    for (let t = 0; t < 300; t++) long[t * T + (t % 2 === 0 ? 1 : 2)] = 1; // B-DIS I-DIS …
    const out = new Uint8Array(300);
    assert.equal(d.decode(long, 300, out), out);
    assert.deepEqual(Array.from(out.slice(0, 4)), [1, 2, 1, 2]);
    assert.deepEqual(Array.from(d.decode(long, 3)), [1, 2, 1]);
    assert.deepEqual(Array.from(d.decode(long, 0)), []);
    assert.throws(() => d.decode(new Float32Array(T), 2), RangeError);
  });
});
