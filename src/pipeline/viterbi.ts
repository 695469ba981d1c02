// Constrained BIO Viterbi (docs/contract.md "CRF decoding").
//
// Hot path: one call per chunk, so no allocation per call, and as few typed
// array accesses as possible (each one costs V8 a bounds and a detach check):
// - the 13 scores of the previous position live in locals (s0…s12), not in
//   memory; a row is written to `#scores` only when the backward trace will
//   read it;
// - I-X targets only look at B-X and I-X, the only predecessors the BIO
//   constraint allows;
// - O and B-X (the 7 "open" targets any tag may precede) are pruned exactly:
//   a predecessor scoring below max − spread(transitions into open targets)
//   loses every open target to the best predecessor, and so does one that
//   its best transition difference to the best predecessor cannot lift to
//   the max; both are left out. With a trained model's peaked emissions one
//   predecessor is left nearly always (98% of positions with the shipped
//   model), and a step is then 7 additions instead of 13×7 compare-and-moves;
// - the backward trace reads one 32-bit word per position (which predecessors
//   were kept, and which of B-X/I-X won each I-X) instead of recomputing 13
//   sums per position.
// Exactness: the kept predecessors are scanned in index order with strict `>`,
// so the scores and the path are those of the plain 13×13 recursion, ties
// included; rows with scores that are not finite take that plain recursion,
// written as before, so −∞ and NaN behave as they always did (and a CRF whose
// transitions or start scores reach 1e200 is never pruned).

import type { ConstrainedCrf } from './crf.js';
import { NUM_TAGS } from './labels.js';
import { storeRow } from './rows.js';

/** O, B-DIS, B-EXA, B-TES, B-OPE, B-DRU, B-ANA: the tags any tag may precede. */
const OPEN_TAGS = [0, 1, 3, 5, 7, 9, 11] as const;
const ALL_PREDECESSORS = (1 << NUM_TAGS) - 1; // bit i: tag i kept as a predecessor
const INSIDE_SHIFT = NUM_TAGS - 1; // bit 12 + x (x = 1…6): I-X came from I-X, not B-X
/**
 * Pruning is on only when every finite start score and every transition the
 * pruned step reads is below this in magnitude. Then a row of finite scores
 * is below 1e200 + t·(1e200 + 3.4e38) (float32 emissions), far from overflow
 * for any length, so every sum of the pruned step is finite, which the
 * pruning bound and the branch-free selects (x·1 + y·0 = x) need; and a row
 * holds only finite scores exactly when their plain sum is finite.
 */
const PRUNABLE_MAGNITUDE = 1e200;
/**
 * Relative slack on the pruning bounds, far above the rounding of the few
 * additions they compare, so rounding never prunes a predecessor that could
 * win or tie.
 */
const SLACK = 1e-9;

export class ViterbiDecoder {
  readonly #crf: ConstrainedCrf;
  readonly #toOpen: Float64Array; // [from, 7] transitions into OPEN_TAGS
  /** [best, other]: max over open targets q of tr[other][q] − tr[best][q]. */
  readonly #gap: Float64Array;
  /** [12]: B-X→I-X, I-X→I-X for each type X, in type order. */
  readonly #intoInside: Float64Array;
  /** Spread (max − min) of the transitions into open targets. */
  readonly #openSpread: number;
  /** Absolute part of the slack, scaled by the transitions' magnitude. */
  readonly #slack: number;
  /** False when the transitions themselves are too large to prune safely. */
  readonly #prune: boolean;
  #scores: Float64Array; // [seq, tags] best path score ending in each tag; rows the trace needs
  #trace: Int32Array; // [seq] kept-predecessor bits 0…12, I-X-from-I-X bits 13…18

  constructor(crf: ConstrainedCrf, initialLength = 128) {
    // The locals below are written for the contract's 13 tags.
    if (crf.numTags !== NUM_TAGS) throw new RangeError(`ViterbiDecoder needs ${NUM_TAGS} tags, got ${crf.numTags}`);
    const T = NUM_TAGS;
    const Q = OPEN_TAGS.length;
    this.#crf = crf;
    this.#toOpen = new Float64Array(T * Q);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < T; i++) {
      OPEN_TAGS.forEach((j, q) => {
        const v = crf.transitions[i * T + j]!;
        this.#toOpen[i * Q + q] = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      });
    }
    this.#gap = new Float64Array(T * T);
    for (let k = 0; k < T; k++) {
      for (let i = 0; i < T; i++) {
        let g = -Infinity;
        for (let q = 0; q < Q; q++) g = Math.max(g, this.#toOpen[i * Q + q]! - this.#toOpen[k * Q + q]!);
        this.#gap[k * T + i] = g;
      }
    }
    this.#intoInside = new Float64Array(T - 1);
    for (let x = 0; x < (T - 1) / 2; x++) {
      const inside = 2 * x + 2;
      this.#intoInside[2 * x] = crf.transitions[(inside - 1) * T + inside]!;
      this.#intoInside[2 * x + 1] = crf.transitions[inside * T + inside]!;
    }
    let magnitude = Math.max(Math.abs(lo), Math.abs(hi));
    for (const v of this.#intoInside) magnitude = Math.max(magnitude, Math.abs(v));
    let startMagnitude = 0;
    for (const v of crf.start) if (Number.isFinite(v)) startMagnitude = Math.max(startMagnitude, Math.abs(v)); // −∞: forbidden starts
    this.#openSpread = hi - lo;
    this.#slack = (magnitude + 1) * SLACK;
    // NaN (never from parseCrf) disables pruning too
    this.#prune = magnitude < PRUNABLE_MAGNITUDE && startMagnitude < PRUNABLE_MAGNITUDE;
    this.#scores = new Float64Array(initialLength * T);
    this.#trace = new Int32Array(initialLength);
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
    if (this.#trace.length < length) {
      this.#scores = new Float64Array(length * T);
      this.#trace = new Int32Array(length);
    }
    const sc = this.#scores;
    const trace = this.#trace;
    const crf = this.#crf;
    const toOpen = this.#toOpen; // [from, 7]
    const gap = this.#gap; // [best, other]
    const openSpread = this.#openSpread;
    const slack = this.#slack;
    const prune = this.#prune;
    const into = this.#intoInside;
    const bDisToI = into[0]!, iDisToI = into[1]!, bExaToI = into[2]!, iExaToI = into[3]!;
    const bTesToI = into[4]!, iTesToI = into[5]!, bOpeToI = into[6]!, iOpeToI = into[7]!;
    const bDruToI = into[8]!, iDruToI = into[9]!, bAnaToI = into[10]!, iAnaToI = into[11]!;

    // Scores of the previous position, by tag: O, B-DIS, I-DIS, B-EXA, … I-ANA.
    const start = crf.start;
    let s0 = start[0]! + emissions[0]!;
    let s1 = start[1]! + emissions[1]!;
    let s2 = start[2]! + emissions[2]!;
    let s3 = start[3]! + emissions[3]!;
    let s4 = start[4]! + emissions[4]!;
    let s5 = start[5]! + emissions[5]!;
    let s6 = start[6]! + emissions[6]!;
    let s7 = start[7]! + emissions[7]!;
    let s8 = start[8]! + emissions[8]!;
    let s9 = start[9]! + emissions[9]!;
    let s10 = start[10]! + emissions[10]!;
    let s11 = start[11]! + emissions[11]!;
    let s12 = start[12]! + emissions[12]!;

    for (let t = 1; t < length; t++) {
      const p = (t - 1) * T; // previous row of `sc`
      const c = t * T; // this row of `emissions`
      // Best score into each open target (before this position's emission).
      let o: number, bDis: number, bExa: number, bTes: number, bOpe: number, bDru: number, bAna: number;
      let kept = ALL_PREDECESSORS;
      const sum = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11 + s12;
      const pruned = prune && sum - sum === 0; // every score finite: a ±∞ or NaN makes the sum ±∞ or NaN
      if (pruned) {
        let m = s0;
        if (s1 > m) m = s1;
        if (s2 > m) m = s2;
        if (s3 > m) m = s3;
        if (s4 > m) m = s4;
        if (s5 > m) m = s5;
        if (s6 > m) m = s6;
        if (s7 > m) m = s7;
        if (s8 > m) m = s8;
        if (s9 > m) m = s9;
        if (s10 > m) m = s10;
        if (s11 > m) m = s11;
        if (s12 > m) m = s12;
        // s + tr[i][q] ≤ s + max(tr) < m + min(tr) ≤ m + tr[best][q] for every q.
        const margin = Math.abs(m) * SLACK + slack;
        const cut = m - openSpread - margin;
        kept =
          +(s0 >= cut) | (+(s1 >= cut) << 1) | (+(s2 >= cut) << 2) | (+(s3 >= cut) << 3) | (+(s4 >= cut) << 4) |
          (+(s5 >= cut) << 5) | (+(s6 >= cut) << 6) | (+(s7 >= cut) << 7) | (+(s8 >= cut) << 8) | (+(s9 >= cut) << 9) |
          (+(s10 >= cut) << 10) | (+(s11 >= cut) << 11) | (+(s12 >= cut) << 12);
        if ((kept & (kept - 1)) === 0) {
          // One predecessor left: it is the maximum, m.
          const k = lowestBit(kept) * 7;
          o = m + toOpen[k]!;
          bDis = m + toOpen[k + 1]!;
          bExa = m + toOpen[k + 2]!;
          bTes = m + toOpen[k + 3]!;
          bOpe = m + toOpen[k + 4]!;
          bDru = m + toOpen[k + 5]!;
          bAna = m + toOpen[k + 6]!;
        } else {
          storeRow(sc, p, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12);
          // The tighter bound against the best predecessor b itself:
          // s_i + max_q(tr[i][q] − tr[b][q]) < s_b means i loses every open target to b.
          let best = lowestBit(kept); // the first kept predecessor scoring m
          while (sc[p + best]! !== m) best = lowestBit(kept & ~((2 << best) - 1));
          const g = best * T;
          const floor = m - margin;
          let close = 0;
          for (let rest = kept; rest !== 0; rest &= rest - 1) {
            const i = lowestBit(rest);
            close |= +(sc[p + i]! + gap[g + i]! >= floor) << i;
          }
          kept = close;
          let i = lowestBit(kept);
          let s = sc[p + i]!;
          let k = i * 7;
          o = s + toOpen[k]!;
          bDis = s + toOpen[k + 1]!;
          bExa = s + toOpen[k + 2]!;
          bTes = s + toOpen[k + 3]!;
          bOpe = s + toOpen[k + 4]!;
          bDru = s + toOpen[k + 5]!;
          bAna = s + toOpen[k + 6]!;
          // Several close predecessors: which one wins a target is data-dependent,
          // so select without branches: x·1 + y·0 = x for finite x, y (up to the
          // sign of a zero, which no comparison or later sum sees).
          for (let rest = kept & (kept - 1); rest !== 0; rest &= rest - 1) {
            i = lowestBit(rest);
            s = sc[p + i]!;
            k = i * 7;
            let v = s + toOpen[k]!;
            let w = +(v > o);
            o = v * w + o * (1 - w);
            v = s + toOpen[k + 1]!;
            w = +(v > bDis);
            bDis = v * w + bDis * (1 - w);
            v = s + toOpen[k + 2]!;
            w = +(v > bExa);
            bExa = v * w + bExa * (1 - w);
            v = s + toOpen[k + 3]!;
            w = +(v > bTes);
            bTes = v * w + bTes * (1 - w);
            v = s + toOpen[k + 4]!;
            w = +(v > bOpe);
            bOpe = v * w + bOpe * (1 - w);
            v = s + toOpen[k + 5]!;
            w = +(v > bDru);
            bDru = v * w + bDru * (1 - w);
            v = s + toOpen[k + 6]!;
            w = +(v > bAna);
            bAna = v * w + bAna * (1 - w);
          }
        }
      } else {
        // The plain recursion over all 13 predecessors, seeded with O.
        storeRow(sc, p, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12);
        o = s0 + toOpen[0]!;
        bDis = s0 + toOpen[1]!;
        bExa = s0 + toOpen[2]!;
        bTes = s0 + toOpen[3]!;
        bOpe = s0 + toOpen[4]!;
        bDru = s0 + toOpen[5]!;
        bAna = s0 + toOpen[6]!;
        for (let i = 1; i < T; i++) {
          const s = sc[p + i]!;
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
      }

      // I-X: from B-X or from I-X; 1 when I-X wins (strict >: ties go to B-X, the lower index).
      const disB = s1 + bDisToI, disI = s2 + iDisToI, exaB = s3 + bExaToI, exaI = s4 + iExaToI;
      const tesB = s5 + bTesToI, tesI = s6 + iTesToI, opeB = s7 + bOpeToI, opeI = s8 + iOpeToI;
      const druB = s9 + bDruToI, druI = s10 + iDruToI, anaB = s11 + bAnaToI, anaI = s12 + iAnaToI;
      const dis = +(disI > disB), exa = +(exaI > exaB), tes = +(tesI > tesB);
      const ope = +(opeI > opeB), dru = +(druI > druB), ana = +(anaI > anaB);
      trace[t] =
        kept | (dis << (INSIDE_SHIFT + 1)) | (exa << (INSIDE_SHIFT + 2)) | (tes << (INSIDE_SHIFT + 3)) |
        (ope << (INSIDE_SHIFT + 4)) | (dru << (INSIDE_SHIFT + 5)) | (ana << (INSIDE_SHIFT + 6));

      s0 = o + emissions[c]!;
      s1 = bDis + emissions[c + 1]!;
      s3 = bExa + emissions[c + 3]!;
      s5 = bTes + emissions[c + 5]!;
      s7 = bOpe + emissions[c + 7]!;
      s9 = bDru + emissions[c + 9]!;
      s11 = bAna + emissions[c + 11]!;
      if (pruned) {
        // Finite terms: select without branches, the winner changes with the data.
        s2 = disI * dis + disB * (1 - dis) + emissions[c + 2]!;
        s4 = exaI * exa + exaB * (1 - exa) + emissions[c + 4]!;
        s6 = tesI * tes + tesB * (1 - tes) + emissions[c + 6]!;
        s8 = opeI * ope + opeB * (1 - ope) + emissions[c + 8]!;
        s10 = druI * dru + druB * (1 - dru) + emissions[c + 10]!;
        s12 = anaI * ana + anaB * (1 - ana) + emissions[c + 12]!;
      } else {
        s2 = (dis ? disI : disB) + emissions[c + 2]!;
        s4 = (exa ? exaI : exaB) + emissions[c + 4]!;
        s6 = (tes ? tesI : tesB) + emissions[c + 6]!;
        s8 = (ope ? opeI : opeB) + emissions[c + 8]!;
        s10 = (dru ? druI : druB) + emissions[c + 10]!;
        s12 = (ana ? anaI : anaB) + emissions[c + 12]!;
      }
    }

    // Best last tag, O first (always a valid last tag), strict > in index order.
    const end = crf.end;
    const last = (length - 1) * T;
    storeRow(sc, last, s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12);
    let tag = 0;
    let best = sc[last]! + end[0]!;
    for (let j = 1; j < T; j++) {
      const v = sc[last + j]! + end[j]!;
      if (v > best) {
        best = v;
        tag = j;
      }
    }
    out[length - 1] = tag;

    const tr = crf.transitionsByTarget; // [to, from]
    for (let t = length - 1; t > 0; t--) {
      const word = trace[t]!;
      if (tag !== 0 && (tag & 1) === 0) {
        tag -= 1 - ((word >> (INSIDE_SHIFT + (tag >> 1))) & 1); // I-X: stay, or step back to B-X
      } else {
        const kept = word & ALL_PREDECESSORS;
        tag = (kept & (kept - 1)) === 0 ? lowestBit(kept) : bestKept(sc, (t - 1) * T, tr, tag, kept);
      }
      out[t - 1] = tag;
    }
    return out;
  }
}

const lowestBit = (bits: number): number => 31 - Math.clz32(bits & -bits);


/**
 * Arg-max of sc[row + i] + tr[tag, i] over the kept predecessors i, scanned in
 * index order with a strict `>` (ties go to the lower index, as the contract
 * says); the same arg-max as over all 13, since the others are strictly worse.
 * Starting at the first kept predecessor keeps the path valid even if every
 * score is −∞ or NaN.
 */
function bestKept(sc: Float64Array, row: number, tr: Float64Array, tag: number, kept: number): number {
  const k = tag * NUM_TAGS;
  let arg = lowestBit(kept);
  let best = sc[row + arg]! + tr[k + arg]!;
  for (let rest = kept & (kept - 1); rest !== 0; rest &= rest - 1) {
    const i = lowestBit(rest);
    const v = sc[row + i]! + tr[k + i]!;
    if (v > best) {
      best = v;
      arg = i;
    }
  }
  return arg;
}
