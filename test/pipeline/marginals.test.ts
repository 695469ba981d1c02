import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Crf, constrain } from '../../src/pipeline/crf.js';
import { ENTITY_TYPES, NUM_TAGS } from '../../src/pipeline/labels.js';
import { CrfPosterior } from '../../src/pipeline/marginals.js';
import { spansFromTags } from '../../src/pipeline/spans.js';
import { cachedValidPaths, crfArb, emissionsArb, floatScore, logSumExp, pathScore } from './helpers.js';

const T = NUM_TAGS;

/** log Z and P(span) for every span that any valid path reads, by enumeration. */
function bruteForce(crf: Crf, em: Float32Array, n: number): { logZ: number; spanProb: Map<string, number> } {
  const paths = cachedValidPaths(n);
  const scores = paths.map((p) => pathScore(crf, em, p));
  const logZ = logSumExp(scores);
  const spanProb = new Map<string, number>();
  paths.forEach((p, k) => {
    const prob = Math.exp(scores[k]! - logZ);
    for (const s of spansFromTags(p)) {
      const key = `${s.start}:${s.end}:${s.typeIndex}`;
      spanProb.set(key, (spanProb.get(key) ?? 0) + prob);
    }
  });
  return { logZ, spanProb };
}

function checkAgainstBruteForce(crf: Crf, em: Float32Array, tolerance: number): void {
  const n = em.length / T;
  const post = new CrfPosterior(constrain(crf));
  post.compute(em, n);
  const { logZ, spanProb } = bruteForce(crf, em, n);
  assert.ok(Math.abs(post.logPartition - logZ) <= 1e-9 * Math.max(1, Math.abs(logZ)), `log Z ${post.logPartition} vs ${logZ}`);
  for (let s = 0; s < n; s++) {
    for (let e = s + 1; e <= n; e++) {
      for (let k = 0; k < ENTITY_TYPES.length; k++) {
        const got = post.spanConfidence(s, e, k);
        const want = spanProb.get(`${s}:${e}:${k}`) ?? 0;
        assert.ok(got >= 0 && got <= 1, `confidence ${got} outside [0, 1]`);
        assert.ok(Math.abs(got - want) <= tolerance, `span [${s}, ${e}) type ${k}: ${got} vs brute force ${want}`);
      }
    }
  }
}

describe('CrfPosterior', () => {
  it('equals the brute-force posterior of every span (length ≤ 4)', () => {
    fc.assert(
      fc.property(crfArb(floatScore), emissionsArb(floatScore, 1, 4), (crf, em) => checkAgainstBruteForce(crf, em, 1e-9)),
      { numRuns: 60 },
    );
  });

  it('falls back to exact log-space sums when scaling would underflow', () => {
    // Emissions spread over ±900 nats: exp() of the scaled form underflows.
    const huge = fc.double({ min: -900, max: 900, noNaN: true });
    fc.assert(
      fc.property(crfArb(floatScore), emissionsArb(huge, 2, 4), (crf, em) => checkAgainstBruteForce(crf, em, 1e-9)),
      { numRuns: 30 },
    );
  });

  it('agrees with a log-space reference on long chunks', () => {
    fc.assert(
      fc.property(crfArb(floatScore), emissionsArb(floatScore, 60, 128), (crf, em) => {
        const n = em.length / T;
        const c = constrain(crf);
        const post = new CrfPosterior(c);
        post.compute(em, n);
        const ref = logSpaceReference(c, em, n);
        assert.ok(Math.abs(post.logPartition - ref.logZ) <= 1e-9 * Math.abs(ref.logZ));
        for (const t of [0, 1, Math.floor(n / 2), n - 1]) {
          for (let y = 0; y < T; y++) {
            const a = ref.alpha[t * T + y]!;
            const b = ref.beta[t * T + y]!;
            if (a > -Infinity) assert.ok(Math.abs(post.logAlpha(t, y) - a) <= 1e-7 * Math.max(1, Math.abs(a)), `α ${t},${y}`);
            if (b > -Infinity) assert.ok(Math.abs(post.logBeta(t, y) - b) <= 1e-7 * Math.max(1, Math.abs(b)), `β ${t},${y}`);
          }
        }
        for (let k = 0; k < 20; k++) {
          const s = (k * 7) % n;
          const conf = post.spanConfidence(s, Math.min(n, s + 1 + (k % 3)), k % 6);
          assert.ok(conf >= 0 && conf <= 1);
        }
      }),
      { numRuns: 20 },
    );
  });

  it('gives a confident, unambiguous span a confidence near 1', () => {
    const crf: Crf = { numTags: T, start: new Float64Array(T), end: new Float64Array(T), transitions: new Float64Array(T * T) };
    const em = new Float32Array(4 * T);
    [0, 1, 2, 0].forEach((tag, t) => (em[t * T + tag] = 30)); // O B-DIS I-DIS O
    const post = new CrfPosterior(constrain(crf));
    post.compute(em, 4);
    assert.ok(post.spanConfidence(1, 3, 0) > 0.999999);
    assert.ok(post.spanConfidence(1, 2, 0) < 1e-6); // B-DIS alone, then not I-DIS
    assert.throws(() => post.spanConfidence(2, 5, 0), RangeError);
  });
});

function logSpaceReference(c: Crf, em: Float32Array, n: number): { alpha: Float64Array; beta: Float64Array; logZ: number } {
  const alpha = new Float64Array(n * T);
  const beta = new Float64Array(n * T);
  for (let y = 0; y < T; y++) alpha[y] = c.start[y]! + em[y]!;
  for (let t = 1; t < n; t++) {
    for (let j = 0; j < T; j++) {
      const terms = Array.from({ length: T }, (_, i) => alpha[(t - 1) * T + i]! + c.transitions[i * T + j]!);
      alpha[t * T + j] = logSumExp(terms) + em[t * T + j]!;
    }
  }
  for (let y = 0; y < T; y++) beta[(n - 1) * T + y] = c.end[y]!;
  for (let t = n - 2; t >= 0; t--) {
    for (let i = 0; i < T; i++) {
      const terms = Array.from({ length: T }, (_, j) => c.transitions[i * T + j]! + em[(t + 1) * T + j]! + beta[(t + 1) * T + j]!);
      beta[t * T + i] = logSumExp(terms);
    }
  }
  const logZ = logSumExp(Array.from({ length: T }, (_, y) => alpha[(n - 1) * T + y]! + c.end[y]!));
  return { alpha, beta, logZ };
}
