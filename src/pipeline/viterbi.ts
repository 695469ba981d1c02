// Constrained BIO Viterbi (docs/contract.md "CRF decoding").
//
// Hot path: one call per chunk, so no allocation per call and no index
// bookkeeping in the inner loop:
// - the forward pass stores only the best score per (position, tag); the
//   backward trace recomputes the arg-max for the one tag it follows, which
//   gives the same answer (same sums, same scan order) for 13 instead of 169
//   comparisons per position;
// - I-X targets only look at B-X and I-X, the only predecessors the BIO
//   constraint allows, so a step is 7×13 + 6×2 additions instead of 13×13;
// - the 7 targets every tag may precede (O and the six B-X) are maxed in
//   parallel, one local accumulator each, in a single pass over the
//   predecessors: 7 independent chains instead of one long one.

import type { ConstrainedCrf } from './crf.js';
import { NUM_TAGS, isInside } from './labels.js';

/** O, B-DIS, B-EXA, B-TES, B-OPE, B-DRU, B-ANA: the tags any tag may precede. */
const OPEN_TAGS = [0, 1, 3, 5, 7, 9, 11] as const;

export class ViterbiDecoder {
  readonly #crf: ConstrainedCrf;
  readonly #toOpen: Float64Array; // [from, 7] transitions into OPEN_TAGS
  #scores: Float64Array; // [seq, tags] best path score ending in each tag

  constructor(crf: ConstrainedCrf, initialLength = 128) {
    // The accumulators below are written for the contract's 13 tags.
    if (crf.numTags !== NUM_TAGS) throw new RangeError(`ViterbiDecoder needs ${NUM_TAGS} tags, got ${crf.numTags}`);
    this.#crf = crf;
    this.#toOpen = new Float64Array(NUM_TAGS * OPEN_TAGS.length);
    for (let i = 0; i < NUM_TAGS; i++) {
      OPEN_TAGS.forEach((j, q) => (this.#toOpen[i * OPEN_TAGS.length + q] = crf.transitions[i * NUM_TAGS + j]!));
    }
    this.#scores = new Float64Array(initialLength * NUM_TAGS);
  }

  /**
   * Best tag sequence for `emissions` ([length, tags], row-major). Writes into
   * `out` when given (at least `length` entries) and returns it.
   */
  decode(emissions: Float32Array, length: number, out: Uint8Array = new Uint8Array(length)): Uint8Array {
    const T = NUM_TAGS;
    if (length === 0) return out;
    if (emissions.length < length * T) throw new RangeError(`emissions hold ${emissions.length} values, need ${length}×${T}`);
    if (out.length < length) throw new RangeError(`out holds ${out.length} entries, need ${length}`);
    if (this.#scores.length < length * T) this.#scores = new Float64Array(length * T);
    const sc = this.#scores;
    const crf = this.#crf;
    const tr = crf.transitionsByTarget; // [to, from]
    const toOpen = this.#toOpen; // [from, 7]

    for (let j = 0; j < T; j++) sc[j] = crf.start[j]! + emissions[j]!;

    for (let t = 1; t < length; t++) {
      const p = (t - 1) * T; // previous row
      const c = t * T; // this row
      // O and B-X: every predecessor is allowed. Seeded with predecessor 0 (O).
      let s = sc[p]!;
      let o = s + toOpen[0]!;
      let bDis = s + toOpen[1]!;
      let bExa = s + toOpen[2]!;
      let bTes = s + toOpen[3]!;
      let bOpe = s + toOpen[4]!;
      let bDru = s + toOpen[5]!;
      let bAna = s + toOpen[6]!;
      for (let i = 1; i < T; i++) {
        s = sc[p + i]!;
        const k = i * 7;
        let v = s + toOpen[k]!;
        if (v > o) o = v;
        v = s + toOpen[k + 1]!;
        if (v > bDis) bDis = v;
        v = s + toOpen[k + 2]!;
        if (v > bExa) bExa = v;
        v = s + toOpen[k + 3]!;
        if (v > bTes) bTes = v;
        v = s + toOpen[k + 4]!;
        if (v > bOpe) bOpe = v;
        v = s + toOpen[k + 5]!;
        if (v > bDru) bDru = v;
        v = s + toOpen[k + 6]!;
        if (v > bAna) bAna = v;
      }
      sc[c] = o + emissions[c]!;
      sc[c + 1] = bDis + emissions[c + 1]!;
      sc[c + 3] = bExa + emissions[c + 3]!;
      sc[c + 5] = bTes + emissions[c + 5]!;
      sc[c + 7] = bOpe + emissions[c + 7]!;
      sc[c + 9] = bDru + emissions[c + 9]!;
      sc[c + 11] = bAna + emissions[c + 11]!;
      // I-X (even j > 0): only B-X (j - 1) and I-X (j).
      for (let j = 2; j < T; j += 2) {
        const k = j * T;
        const fromB = sc[p + j - 1]! + tr[k + j - 1]!;
        const fromI = sc[p + j]! + tr[k + j]!;
        sc[c + j] = (fromI > fromB ? fromI : fromB) + emissions[c + j]!;
      }
    }

    const last = (length - 1) * T;
    let tag = 0; // O: always a valid last tag
    let best = sc[last]! + crf.end[0]!;
    for (let j = 1; j < T; j++) {
      const v = sc[last + j]! + crf.end[j]!;
      if (v > best) {
        best = v;
        tag = j;
      }
    }
    out[length - 1] = tag;
    for (let t = length - 1; t > 0; t--) {
      tag = bestPredecessor(sc, (t - 1) * T, tr, tag);
      out[t - 1] = tag;
    }
    return out;
  }
}

/**
 * Arg-max over the allowed predecessors of `tag`, scanned in index order with
 * a strict `>` (ties go to the lower index, as the contract says). Starting at
 * the first allowed predecessor keeps the path valid even if every score is
 * −∞ or NaN.
 */
function bestPredecessor(sc: Float64Array, row: number, tr: Float64Array, tag: number): number {
  const first = isInside(tag) ? tag - 1 : 0;
  const lastPred = isInside(tag) ? tag : NUM_TAGS - 1;
  const k = tag * NUM_TAGS;
  let arg = first;
  let best = sc[row + first]! + tr[k + first]!;
  for (let i = first + 1; i <= lastPred; i++) {
    const v = sc[row + i]! + tr[k + i]!;
    if (v > best) {
      best = v;
      arg = i;
    }
  }
  return arg;
}
