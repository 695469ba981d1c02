// Shared test helpers: fast-check arbitraries for CRFs and emissions, and
// brute-force references that enumerate every valid BIO path.

import fc from 'fast-check';
import type { Crf } from '../../src/pipeline/crf.js';
import { NUM_TAGS, isAllowedTransition } from '../../src/pipeline/labels.js';

const T = NUM_TAGS;

/** Scores as small integers: sums are exact, so ties are real ties. */
export const intScore = fc.integer({ min: -3, max: 3 });
export const floatScore = fc.double({ min: -8, max: 8, noNaN: true, noDefaultInfinity: true });

export function crfArb(score: fc.Arbitrary<number>): fc.Arbitrary<Crf> {
  return fc
    .tuple(fc.array(score, { minLength: T, maxLength: T }), fc.array(score, { minLength: T, maxLength: T }), fc.array(score, { minLength: T * T, maxLength: T * T }))
    .map(([start, end, transitions]) => ({
      numTags: T,
      start: Float64Array.from(start),
      end: Float64Array.from(end),
      transitions: Float64Array.from(transitions),
    }));
}

/** Emissions [length, tags] for a length in [minLength, maxLength]. */
export function emissionsArb(score: fc.Arbitrary<number>, minLength: number, maxLength: number): fc.Arbitrary<Float32Array> {
  return fc
    .integer({ min: minLength, max: maxLength })
    .chain((n) => fc.array(score, { minLength: n * T, maxLength: n * T }))
    .map((xs) => Float32Array.from(xs));
}

export function pathScore(crf: Crf, em: Float32Array, path: readonly number[]): number {
  let s = crf.start[path[0]!]! + em[path[0]!]!;
  for (let t = 1; t < path.length; t++) s += crf.transitions[path[t - 1]! * T + path[t]!]! + em[t * T + path[t]!]!;
  return s + crf.end[path[path.length - 1]!]!;
}

/** Every tag sequence of `length` that the BIO constraint allows. */
export function validPaths(length: number): number[][] {
  const out: number[][] = [];
  const path: number[] = [];
  const extend = (prev: number): void => {
    if (path.length === length) {
      out.push([...path]);
      return;
    }
    for (let y = 0; y < T; y++) {
      if (!isAllowedTransition(prev, y)) continue;
      path.push(y);
      extend(y);
      path.pop();
    }
  };
  extend(-1);
  return out;
}

const pathCache = new Map<number, number[][]>();
export function cachedValidPaths(length: number): number[][] {
  let p = pathCache.get(length);
  if (p === undefined) pathCache.set(length, (p = validPaths(length)));
  return p;
}

export function isValidBio(tags: ArrayLike<number>, length: number = tags.length): boolean {
  let prev = -1;
  for (let t = 0; t < length; t++) {
    if (!isAllowedTransition(prev, tags[t]!)) return false;
    prev = tags[t]!;
  }
  return true;
}

export function logSumExp(xs: readonly number[]): number {
  const m = Math.max(...xs);
  if (m === -Infinity) return -Infinity;
  return m + Math.log(xs.reduce((a, x) => a + Math.exp(x - m), 0));
}

/** Emissions [n, tags] where one random tag per position stands out by `height` above noise. */
export function peakedArb(noise: fc.Arbitrary<number>, height: fc.Arbitrary<number>, minLength: number, maxLength: number): fc.Arbitrary<Float32Array> {
  return fc
    .integer({ min: minLength, max: maxLength })
    .chain((n) => fc.tuple(fc.array(noise, { minLength: n * T, maxLength: n * T }), fc.array(fc.tuple(fc.nat(T - 1), height), { minLength: n, maxLength: n })))
    .map(([xs, peaks]) => {
      const em = Float32Array.from(xs);
      peaks.forEach(([tag, h], t) => (em[t * T + tag]! += h));
      return em;
    });
}
