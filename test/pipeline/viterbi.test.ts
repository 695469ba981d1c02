import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type ConstrainedCrf, type Crf, constrain } from '../../src/pipeline/crf.js';
import { NUM_TAGS, TAGS, isAllowedTransition } from '../../src/pipeline/labels.js';
import { ViterbiDecoder } from '../../src/pipeline/viterbi.js';
import { cachedValidPaths, crfArb, emissionsArb, floatScore, intScore, isValidBio, pathScore, peakedArb } from './helpers.js';

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

/**
 * The textbook O(n·T²) recursion the contract describes, with back pointers:
 * for each tag, its allowed predecessors scanned in index order with a strict
 * `>` (seeded with the first allowed one), then the best last tag likewise.
 * It makes the same additions in the same order as the decoder, so the two
 * must agree exactly, ties, ±∞ and NaN included.
 */
function referenceViterbi(crf: ConstrainedCrf, em: Float32Array, n: number): number[] {
  if (n === 0) return [];
  let prev = Array.from({ length: T }, (_, j) => crf.start[j]! + em[j]!);
  const back: number[][] = [];
  for (let t = 1; t < n; t++) {
    const cur: number[] = [];
    const ptr: number[] = [];
    for (let j = 0; j < T; j++) {
      let arg = -1;
      let best = Number.NaN;
      for (let i = 0; i < T; i++) {
        if (!isAllowedTransition(i, j)) continue;
        const v = prev[i]! + crf.transitions[i * T + j]!;
        if (arg < 0 || v > best) {
          best = v;
          arg = i;
        }
      }
      cur.push(best + em[t * T + j]!);
      ptr.push(arg);
    }
    back.push(ptr);
    prev = cur;
  }
  let tag = 0;
  let best = prev[0]! + crf.end[0]!;
  for (let j = 1; j < T; j++) {
    const v = prev[j]! + crf.end[j]!;
    if (v > best) {
      best = v;
      tag = j;
    }
  }
  const path = [tag];
  for (let t = n - 1; t > 0; t--) path.push((tag = back[t - 1]![tag]!));
  return path.reverse();
}


/** A CRF whose scores are drawn from `score` times `scale` (small scales: a trained model's; large: many close predecessors). */
const scaledCrfArb = (score: fc.Arbitrary<number>, scale: number): fc.Arbitrary<Crf> =>
  crfArb(score).map((c) => ({ ...c, start: c.start.map((x) => x * scale), end: c.end.map((x) => x * scale), transitions: c.transitions.map((x) => x * scale) }));

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

describe('ViterbiDecoder against the plain O(n·T²) recursion', () => {
  const check = (crf: Crf, em: Float32Array): void => {
    const c = constrain(crf);
    const n = em.length / T;
    assert.deepEqual(Array.from(new ViterbiDecoder(c).decode(em, n)), referenceViterbi(c, em, n));
  };
  const unit = fc.double({ min: -1, max: 1, noNaN: true });

  it('agrees on random real-valued scores (length 1–130)', () => {
    fc.assert(fc.property(crfArb(floatScore), emissionsArb(floatScore, 1, 130), check), { numRuns: 150 });
  });

  it('agrees on integer scores, where ties are everywhere (length 1–130)', () => {
    fc.assert(fc.property(crfArb(intScore), emissionsArb(intScore, 1, 130), check), { numRuns: 150 });
    const tiny = fc.integer({ min: -1, max: 1 });
    fc.assert(fc.property(crfArb(tiny), emissionsArb(fc.constant(0), 1, 40), check), { numRuns: 30 });
  });

  it('agrees on peaked emissions, for trained-like and for wide CRFs', () => {
    for (const scale of [0.1, 1, 5, 50]) {
      fc.assert(fc.property(scaledCrfArb(unit, scale), peakedArb(unit, fc.double({ min: 0, max: 16, noNaN: true }), 1, 130), check), { numRuns: 40 });
    }
    // Integer peaks on integer noise: ties among the close predecessors.
    fc.assert(fc.property(crfArb(intScore), peakedArb(intScore, fc.integer({ min: 0, max: 8 }), 1, 130), check), { numRuns: 60 });
  });

  it('agrees on long sequences', () => {
    fc.assert(fc.property(crfArb(floatScore), peakedArb(unit, fc.double({ min: 0, max: 10, noNaN: true }), 200, 1000), check), { numRuns: 10 });
    fc.assert(fc.property(crfArb(intScore), emissionsArb(intScore, 500, 1000), check), { numRuns: 5 });
  });

  it('agrees on ±∞, NaN, huge and tiny scores (the unpruned path)', () => {
    const wild = fc.oneof(floatScore, fc.constantFrom(Infinity, -Infinity, Number.NaN, 3e38, -3e38, 1e-40, -0), fc.float({ noDefaultInfinity: false }));
    fc.assert(fc.property(crfArb(floatScore), emissionsArb(wild, 1, 130), check), { numRuns: 150 });
    const hugeCrf = fc.oneof(floatScore, fc.constantFrom(1e300, -1e300, 1.7e308, -1.7e308, 1e-300, 1e199, -1e199)); // 1e199: pruned, just below the limit
    fc.assert(fc.property(crfArb(hugeCrf), emissionsArb(floatScore, 1, 60), check), { numRuns: 60 });
    fc.assert(fc.property(crfArb(hugeCrf), emissionsArb(wild, 1, 60), check), { numRuns: 60 });
  });

  it('agrees when one decoder is reused across chunks of different lengths', () => {
    fc.assert(
      fc.property(crfArb(floatScore), fc.array(peakedArb(unit, fc.double({ min: 0, max: 10, noNaN: true }), 1, 150), { minLength: 1, maxLength: 6 }), (crf, chunks) => {
        const c = constrain(crf);
        const d = new ViterbiDecoder(c, 4);
        const out = new Uint8Array(200).fill(255);
        for (const em of chunks) {
          const n = em.length / T;
          assert.equal(d.decode(em, n, out), out);
          assert.deepEqual(Array.from(out.subarray(0, n)), referenceViterbi(c, em, n));
        }
      }),
      { numRuns: 40 },
    );
  });
});
