import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Crf, constrain } from '../../src/pipeline/crf.js';
import { ENTITY_TYPES, NUM_TAGS, beginTag, insideTag } from '../../src/pipeline/labels.js';
import { CrfPosterior, expNonPositive } from '../../src/pipeline/marginals.js';
import { spansFromTags } from '../../src/pipeline/spans.js';
import { cachedValidPaths, crfArb, emissionsArb, floatScore, logSumExp, pathScore, peakedArb } from './helpers.js';

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

/** The contract's span formula, on the log-space reference. */
function referenceSpan(c: Crf, em: Float32Array, ref: { alpha: Float64Array; beta: Float64Array; logZ: number }, start: number, end: number, typeIndex: number): number {
  const n = em.length / T;
  const B = beginTag(typeIndex);
  const I = insideTag(typeIndex);
  let s = ref.alpha[start * T + B]!;
  let prev = B;
  for (let t = start + 1; t < end; t++) {
    s += c.transitions[prev * T + I]! + em[t * T + I]!;
    prev = I;
  }
  if (end < n) {
    const terms = Array.from({ length: T }, (_, y) => (y === I ? -Infinity : c.transitions[prev * T + y]! + em[end * T + y]! + ref.beta[end * T + y]!));
    s += logSumExp(terms);
  } else {
    s += c.end[prev]!;
  }
  return Math.min(1, Math.max(0, Math.exp(s - ref.logZ)));
}


describe('CrfPosterior against the log-space recursion', () => {
  /** log Z, every log α/log β, and `spans` random spans (every span when the chunk is short). */
  const check = (crf: Crf, em: Float32Array, spans: number, post = new CrfPosterior(constrain(crf))): void => {
    const n = em.length / T;
    const c = constrain(crf);
    post.compute(em, n);
    const ref = logSpaceReference(c, em, n);
    const close = (got: number, want: number, what: string): void => {
      if (want === -Infinity) assert.equal(got, -Infinity, what);
      else assert.ok(Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
    };
    close(post.logPartition, ref.logZ, 'log Z');
    for (let t = 0; t < n; t++) {
      for (let y = 0; y < T; y++) {
        close(post.logAlpha(t, y), ref.alpha[t * T + y]!, `log α ${t},${y}`);
        close(post.logBeta(t, y), ref.beta[t * T + y]!, `log β ${t},${y}`);
      }
    }
    for (let k = 0; k < spans; k++) {
      const start = n <= 8 ? k % n : (k * 7919) % n;
      const end = Math.min(n, start + 1 + (n <= 8 ? Math.floor(k / n) % (n - start) : k % 5));
      const type = k % ENTITY_TYPES.length;
      const got = post.spanConfidence(start, end, type);
      const want = referenceSpan(c, em, ref, start, end, type);
      assert.ok(Math.abs(got - want) <= 1e-9 * want + 1e-300, `span [${start}, ${end}) type ${type}: ${got} vs ${want}`);
    }
  };
  const unit = fc.double({ min: -1, max: 1, noNaN: true });

  it('agrees on random scores (length 1–130)', () => {
    fc.assert(fc.property(crfArb(floatScore), emissionsArb(floatScore, 1, 130), (crf, em) => check(crf, em, 60)), { numRuns: 60 });
  });

  it('agrees on peaked emissions and long chunks, where rows are rescaled', () => {
    const height = fc.double({ min: 0, max: 16, noNaN: true });
    fc.assert(fc.property(crfArb(floatScore), peakedArb(unit, height, 1, 130), (crf, em) => check(crf, em, 60)), { numRuns: 40 });
    fc.assert(fc.property(crfArb(floatScore), peakedArb(floatScore, height, 300, 1000), (crf, em) => check(crf, em, 30)), { numRuns: 6 });
  });

  it('agrees around the scaling budget, on either side of the switch to log space', () => {
    for (const spread of [60, 130, 150, 200, 400]) {
      const wide = fc.double({ min: -spread, max: spread, noNaN: true });
      fc.assert(fc.property(crfArb(floatScore), emissionsArb(wide, 1, 40), (crf, em) => check(crf, em, 30)), { numRuns: 10 });
    }
  });

  it('agrees when one object is reused across chunks of different lengths', () => {
    fc.assert(
      fc.property(crfArb(floatScore), fc.array(emissionsArb(floatScore, 1, 150), { minLength: 1, maxLength: 5 }), (crf, chunks) => {
        const post = new CrfPosterior(constrain(crf), 4);
        for (const em of chunks) check(crf, em, 20, post);
      }),
      { numRuns: 20 },
    );
  });

  it('computes exp(x ≤ 0) bit for bit as Math.exp', () => {
    const edges = [0, -0, -1e-300, -(2 ** -28), -(2 ** -27), -0.5 * Math.LN2, -1.5 * Math.LN2, -1, -708.39, -708.4, -744.4, -745.13, -745.14, -1e4, -Infinity, Number.NaN];
    for (const x of edges) assert.ok(Object.is(expNonPositive(x), Math.exp(x)), `exp(${x})`);
    fc.assert(
      fc.property(fc.oneof(fc.double({ min: -2, max: 0, noNaN: true }), fc.double({ min: -40, max: 0, noNaN: true }), fc.double({ min: -760, max: 0, noNaN: true })), (x) => {
        assert.ok(Object.is(expNonPositive(x), Math.exp(x)), `exp(${x})`);
      }),
      { numRuns: 20_000 },
    );
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
