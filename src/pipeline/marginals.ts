// Entity confidence (docs/contract.md "Entity confidence"): the posterior
// probability, under the constrained CRF, that exactly this span carries this
// type, from forward (α) and backward (β) scores.
//
// α and β are kept scaled instead of in log space: a step costs
// multiplications by precomputed exp(transition − max transition) values, and
// the 13 exp(emission − row max) of a position are computed once for both
// passes, instead of 169 log-sum-exps per pass. The log of each row's scale is
// carried separately. Rows are not renormalised at every step: a row is
// multiplied by a power of two (exact) only when its sum leaves
// [2^-100, 2^100], so a step needs no max, no division and no log.
//
// Why that cannot underflow: every reachable entry of a row is at least the
// previous row's sum times exp(−(2·transition spread + 2·emission spread))/169
// (an I-X looks back through the open tag before it; a row holds at most 13
// times its largest entry), and the same holds for β. That sum is at least
// 2^-100, so every entry stays above 2^-108 · exp(−budget), budget being
// 2·transition spread + 2·emission spread + start and end spreads: above
// 2^-974 for budget ≤ 600, clear of subnormal numbers. A chunk whose scores
// spread further (hundreds of nats, never seen from a trained model) takes the
// exact log-space recursion instead.
//
// Hot path, as in viterbi.ts: typed array accesses cost V8 a bounds and a
// detach check each, so the row being extended lives in 13 locals, the 103
// exp(transition) factors in locals read once per chunk, and the 13-tag layout
// is unrolled; a step reads only this position's 13 exp(emission) values.

import type { ConstrainedCrf } from './crf.js';
import { NUM_TAGS, beginTag, insideTag } from './labels.js';
import { storeRow } from './rows.js';

/** O, B-DIS, B-EXA, B-TES, B-OPE, B-DRU, B-ANA: the tags any tag may precede. */
const OPEN_TAGS = [0, 1, 3, 5, 7, 9, 11] as const;

export class CrfPosterior {
  readonly #crf: ConstrainedCrf;
  readonly #expTrans: Float64Array; // [from, to] exp(transition − maxTransition), 0 where forbidden
  readonly #intoOpen: Float64Array; // [7, from] the same into OPEN_TAGS, for the forward pass
  readonly #intoInside: Float64Array; // [12] B-X→I-X, I-X→I-X for each type X
  readonly #expEnd: Float64Array; // [tags] exp(end − maxEnd)
  readonly #maxTrans: number;
  readonly #maxEnd: number;
  /** Spread of the CRF's finite scores (2·transitions + start + end), part of the scaling budget. */
  readonly #crfSpread: number;
  #alpha: Float64Array; // [seq, tags] scaled α (log α in log mode)
  #beta: Float64Array; // [seq, tags] scaled β (log β in log mode)
  #logMode = false;
  #alphaLog: Float64Array; // [seq] log of α's scale per row
  #betaLog: Float64Array; // [seq] log of β's scale per row
  #expE: Float64Array; // [seq, tags] exp(emission − row max)
  #eMax: Float64Array; // [seq] row max of the emissions
  readonly #w: Float64Array; // [tags] scratch
  #emissions: Float32Array = new Float32Array(0);
  #length = 0;
  #logZ = Number.NaN;

  constructor(crf: ConstrainedCrf, initialLength = 128) {
    // The unrolled passes below are written for the contract's 13 tags.
    if (crf.numTags !== NUM_TAGS) throw new RangeError(`CrfPosterior needs ${NUM_TAGS} tags, got ${crf.numTags}`);
    const T = NUM_TAGS;
    const Q = OPEN_TAGS.length;
    this.#crf = crf;
    let maxTrans = -Infinity;
    for (const v of crf.transitions) if (v > maxTrans) maxTrans = v;
    this.#maxTrans = maxTrans;
    const et = crf.transitions.map((v) => Math.exp(v - maxTrans));
    this.#expTrans = et;
    this.#intoOpen = new Float64Array(Q * T);
    for (let i = 0; i < T; i++) {
      OPEN_TAGS.forEach((j, q) => {
        this.#intoOpen[q * T + i] = et[i * T + j]!;
      });
    }
    this.#intoInside = new Float64Array(T - 1);
    for (let x = 0; x < (T - 1) / 2; x++) {
      const inside = insideTag(x);
      this.#intoInside[2 * x] = et[(inside - 1) * T + inside]!;
      this.#intoInside[2 * x + 1] = et[inside * T + inside]!;
    }
    let maxEnd = -Infinity;
    for (const v of crf.end) if (v > maxEnd) maxEnd = v;
    this.#maxEnd = maxEnd;
    this.#expEnd = crf.end.map((v) => Math.exp(v - maxEnd));
    this.#crfSpread = 2 * finiteSpread(crf.transitions) + finiteSpread(crf.start) + finiteSpread(crf.end);
    this.#alpha = new Float64Array(initialLength * T);
    this.#beta = new Float64Array(initialLength * T);
    this.#alphaLog = new Float64Array(initialLength);
    this.#betaLog = new Float64Array(initialLength);
    this.#expE = new Float64Array(initialLength * T);
    this.#eMax = new Float64Array(initialLength);
    this.#w = new Float64Array(T);
  }

  /**
   * Runs forward-backward over `emissions` ([length, tags]); the results stay
   * in this object until the next call, for `spanConfidence`.
   */
  compute(emissions: Float32Array, length: number): void {
    const T = NUM_TAGS;
    if (emissions.length < length * T) throw new RangeError(`emissions hold ${emissions.length} values, need ${length}×${T}`);
    if (this.#alphaLog.length < length) {
      this.#alpha = new Float64Array(length * T);
      this.#beta = new Float64Array(length * T);
      this.#alphaLog = new Float64Array(length);
      this.#betaLog = new Float64Array(length);
      this.#expE = new Float64Array(length * T);
      this.#eMax = new Float64Array(length);
    }
    this.#emissions = emissions;
    this.#length = length;
    if (length === 0) return;
    const safe = this.#crfSpread + 2 * this.#emissionRows() <= SCALING_BUDGET;
    this.#logMode = !(safe && this.#scaledPasses());
    if (this.#logMode) this.#exactLogSpace();
  }

  /** log Z of the last `compute`. */
  get logPartition(): number {
    return this.#logZ;
  }

  /** log α_t(y), log β_t(y) of the last `compute`. */
  logAlpha(t: number, y: number): number {
    const a = this.#alpha[t * NUM_TAGS + y]!;
    return this.#logMode ? a : Math.log(a) + this.#alphaLog[t]!;
  }

  logBeta(t: number, y: number): number {
    const b = this.#beta[t * NUM_TAGS + y]!;
    return this.#logMode ? b : Math.log(b) + this.#betaLog[t]!;
  }

  /**
   * P(y_start = B-X, y_start+1..end-1 = I-X, y_end ≠ I-X) for entity type
   * index `typeIndex` (the last factor is dropped when the span ends the
   * chunk), clamped to [0, 1]. `start`/`end` are chunk positions, end exclusive.
   */
  spanConfidence(start: number, end: number, typeIndex: number): number {
    const T = NUM_TAGS;
    const n = this.#length;
    if (!(start >= 0 && start < end && end <= n)) throw new RangeError(`span [${start}, ${end}) outside chunk of ${n}`);
    const em = this.#emissions;
    const tr = this.#crf.transitions; // [from, to], −∞ where forbidden
    const B = beginTag(typeIndex);
    const I = insideTag(typeIndex);

    let logP = this.logAlpha(start, B);
    let prev = B;
    for (let t = start + 1; t < end; t++) {
      logP += tr[prev * T + I]! + em[t * T + I]!;
      prev = I;
    }
    if (end === n) {
      // The span ends the chunk: its last tag is followed by the end score (β_{n-1}).
      logP += this.logBeta(n - 1, prev);
    } else if (!this.#logMode) {
      // log Σ_{y ≠ I-X} exp(trans[last][y] + e[end][y] + log β_end(y)), on the scaled values: one log.
      const et = this.#expTrans;
      const expE = this.#expE;
      const b = this.#beta;
      const e = end * T;
      let sum = 0;
      for (let y = 0; y < T; y++) if (y !== I) sum += et[prev * T + y]! * expE[e + y]! * b[e + y]!;
      logP += Math.log(sum) + this.#maxTrans + this.#eMax[end]! + this.#betaLog[end]!;
    } else {
      // The same sum in log space.
      let m = -Infinity;
      const w = this.#w;
      for (let y = 0; y < T; y++) {
        w[y] = y === I ? -Infinity : tr[prev * T + y]! + em[end * T + y]! + this.logBeta(end, y);
        if (w[y]! > m) m = w[y]!;
      }
      let sum = 0;
      for (let y = 0; y < T; y++) sum += Math.exp(w[y]! - m);
      logP += m + Math.log(sum);
    }
    const p = Math.exp(logP - this.#logZ);
    return Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
  }

  /**
   * Fills exp(emission − row max) and the row maxima; returns the largest
   * spread (max − min) of a row, NaN/∞ for non-finite emissions.
   */
  #emissionRows(): number {
    const T = NUM_TAGS;
    const n = this.#length;
    const em = this.#emissions;
    const expE = this.#expE;
    const eMax = this.#eMax;
    let spread = 0;
    for (let t = 0; t < n; t++) {
      const c = t * T;
      let lo = Infinity;
      let hi = -Infinity;
      for (let j = c; j < c + T; j++) {
        const x = em[j]!;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
      if (!(hi - lo <= spread)) spread = hi - lo; // NaN or ∞ spreads force the exact path
      eMax[t] = hi;
      for (let j = c; j < c + T; j++) expE[j] = expNonPositive(em[j]! - hi);
    }
    return spread;
  }

  /** Scaled α, log Z and scaled β; false when a row underflows to all zeros. */
  #scaledPasses(): boolean {
    const T = NUM_TAGS;
    const n = this.#length;
    const a = this.#alpha;
    const b = this.#beta;
    const aLog = this.#alphaLog;
    const bLog = this.#betaLog;
    const expE = this.#expE;
    const eMax = this.#eMax;
    const maxTrans = this.#maxTrans;
    // exp(transition − max) into each open target from each tag (toDis3: B-EXA → B-DIS),
    // and from B-X/I-X into I-X, in locals: read from memory once per chunk, not per step.
    const x = this.#intoOpen; // [7, from]
    const toO0 = x[0]!, toO1 = x[1]!, toO2 = x[2]!, toO3 = x[3]!, toO4 = x[4]!, toO5 = x[5]!, toO6 = x[6]!;
    const toO7 = x[7]!, toO8 = x[8]!, toO9 = x[9]!, toO10 = x[10]!, toO11 = x[11]!, toO12 = x[12]!;
    const toDis0 = x[13]!, toDis1 = x[14]!, toDis2 = x[15]!, toDis3 = x[16]!, toDis4 = x[17]!, toDis5 = x[18]!, toDis6 = x[19]!;
    const toDis7 = x[20]!, toDis8 = x[21]!, toDis9 = x[22]!, toDis10 = x[23]!, toDis11 = x[24]!, toDis12 = x[25]!;
    const toExa0 = x[26]!, toExa1 = x[27]!, toExa2 = x[28]!, toExa3 = x[29]!, toExa4 = x[30]!, toExa5 = x[31]!, toExa6 = x[32]!;
    const toExa7 = x[33]!, toExa8 = x[34]!, toExa9 = x[35]!, toExa10 = x[36]!, toExa11 = x[37]!, toExa12 = x[38]!;
    const toTes0 = x[39]!, toTes1 = x[40]!, toTes2 = x[41]!, toTes3 = x[42]!, toTes4 = x[43]!, toTes5 = x[44]!, toTes6 = x[45]!;
    const toTes7 = x[46]!, toTes8 = x[47]!, toTes9 = x[48]!, toTes10 = x[49]!, toTes11 = x[50]!, toTes12 = x[51]!;
    const toOpe0 = x[52]!, toOpe1 = x[53]!, toOpe2 = x[54]!, toOpe3 = x[55]!, toOpe4 = x[56]!, toOpe5 = x[57]!, toOpe6 = x[58]!;
    const toOpe7 = x[59]!, toOpe8 = x[60]!, toOpe9 = x[61]!, toOpe10 = x[62]!, toOpe11 = x[63]!, toOpe12 = x[64]!;
    const toDru0 = x[65]!, toDru1 = x[66]!, toDru2 = x[67]!, toDru3 = x[68]!, toDru4 = x[69]!, toDru5 = x[70]!, toDru6 = x[71]!;
    const toDru7 = x[72]!, toDru8 = x[73]!, toDru9 = x[74]!, toDru10 = x[75]!, toDru11 = x[76]!, toDru12 = x[77]!;
    const toAna0 = x[78]!, toAna1 = x[79]!, toAna2 = x[80]!, toAna3 = x[81]!, toAna4 = x[82]!, toAna5 = x[83]!, toAna6 = x[84]!;
    const toAna7 = x[85]!, toAna8 = x[86]!, toAna9 = x[87]!, toAna10 = x[88]!, toAna11 = x[89]!, toAna12 = x[90]!;
    const ii = this.#intoInside;
    const bDisI = ii[0]!, iDisI = ii[1]!, bExaI = ii[2]!, iExaI = ii[3]!, bTesI = ii[4]!, iTesI = ii[5]!;
    const bOpeI = ii[6]!, iOpeI = ii[7]!, bDruI = ii[8]!, iDruI = ii[9]!, bAnaI = ii[10]!, iAnaI = ii[11]!;

    // Forward. α_0 = exp(start + e_0 − max); the previous row is carried in a0…a12.
    const { start } = this.#crf;
    const em = this.#emissions;
    let m = -Infinity;
    for (let j = 0; j < T; j++) m = Math.max(m, start[j]! + em[j]!);
    for (let j = 0; j < T; j++) a[j] = Math.exp(start[j]! + em[j]! - m);
    aLog[0] = m;
    let a0 = a[0]!, a1 = a[1]!, a2 = a[2]!, a3 = a[3]!, a4 = a[4]!, a5 = a[5]!, a6 = a[6]!;
    let a7 = a[7]!, a8 = a[8]!, a9 = a[9]!, a10 = a[10]!, a11 = a[11]!, a12 = a[12]!;
    for (let t = 1; t < n; t++) {
      const c = t * T;
      // Into O and each B-X from every tag; into I-X from B-X and I-X only.
      const o =
        (a0 * toO0 + a1 * toO1 + a2 * toO2 + a3 * toO3 + a4 * toO4 + a5 * toO5 + a6 * toO6 +
          a7 * toO7 + a8 * toO8 + a9 * toO9 + a10 * toO10 + a11 * toO11 + a12 * toO12) *
        expE[c]!;
      const bDis =
        (a0 * toDis0 + a1 * toDis1 + a2 * toDis2 + a3 * toDis3 + a4 * toDis4 + a5 * toDis5 + a6 * toDis6 +
          a7 * toDis7 + a8 * toDis8 + a9 * toDis9 + a10 * toDis10 + a11 * toDis11 + a12 * toDis12) *
        expE[c + 1]!;
      const iDis = (a1 * bDisI + a2 * iDisI) * expE[c + 2]!;
      const bExa =
        (a0 * toExa0 + a1 * toExa1 + a2 * toExa2 + a3 * toExa3 + a4 * toExa4 + a5 * toExa5 + a6 * toExa6 +
          a7 * toExa7 + a8 * toExa8 + a9 * toExa9 + a10 * toExa10 + a11 * toExa11 + a12 * toExa12) *
        expE[c + 3]!;
      const iExa = (a3 * bExaI + a4 * iExaI) * expE[c + 4]!;
      const bTes =
        (a0 * toTes0 + a1 * toTes1 + a2 * toTes2 + a3 * toTes3 + a4 * toTes4 + a5 * toTes5 + a6 * toTes6 +
          a7 * toTes7 + a8 * toTes8 + a9 * toTes9 + a10 * toTes10 + a11 * toTes11 + a12 * toTes12) *
        expE[c + 5]!;
      const iTes = (a5 * bTesI + a6 * iTesI) * expE[c + 6]!;
      const bOpe =
        (a0 * toOpe0 + a1 * toOpe1 + a2 * toOpe2 + a3 * toOpe3 + a4 * toOpe4 + a5 * toOpe5 + a6 * toOpe6 +
          a7 * toOpe7 + a8 * toOpe8 + a9 * toOpe9 + a10 * toOpe10 + a11 * toOpe11 + a12 * toOpe12) *
        expE[c + 7]!;
      const iOpe = (a7 * bOpeI + a8 * iOpeI) * expE[c + 8]!;
      const bDru =
        (a0 * toDru0 + a1 * toDru1 + a2 * toDru2 + a3 * toDru3 + a4 * toDru4 + a5 * toDru5 + a6 * toDru6 +
          a7 * toDru7 + a8 * toDru8 + a9 * toDru9 + a10 * toDru10 + a11 * toDru11 + a12 * toDru12) *
        expE[c + 9]!;
      const iDru = (a9 * bDruI + a10 * iDruI) * expE[c + 10]!;
      const bAna =
        (a0 * toAna0 + a1 * toAna1 + a2 * toAna2 + a3 * toAna3 + a4 * toAna4 + a5 * toAna5 + a6 * toAna6 +
          a7 * toAna7 + a8 * toAna8 + a9 * toAna9 + a10 * toAna10 + a11 * toAna11 + a12 * toAna12) *
        expE[c + 11]!;
      const iAna = (a11 * bAnaI + a12 * iAnaI) * expE[c + 12]!;
      const k = rescaleExponent(o + bDis + iDis + bExa + iExa + bTes + iTes + bOpe + iOpe + bDru + iDru + bAna + iAna);
      if (Number.isNaN(k)) return false;
      const f = k === 0 ? 1 : 2 ** k;
      a0 = o * f;
      a1 = bDis * f;
      a2 = iDis * f;
      a3 = bExa * f;
      a4 = iExa * f;
      a5 = bTes * f;
      a6 = iTes * f;
      a7 = bOpe * f;
      a8 = iOpe * f;
      a9 = bDru * f;
      a10 = iDru * f;
      a11 = bAna * f;
      a12 = iAna * f;
      storeRow(a, c, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12);
      aLog[t] = aLog[t - 1]! + maxTrans + eMax[t]! - k * Math.LN2;
    }
    // Z = Σ α_{n-1}(y)·exp(end(y)), on the scaled values.
    const ee = this.#expEnd;
    const z =
      a0 * ee[0]! + a1 * ee[1]! + a2 * ee[2]! + a3 * ee[3]! + a4 * ee[4]! + a5 * ee[5]! + a6 * ee[6]! +
      a7 * ee[7]! + a8 * ee[8]! + a9 * ee[9]! + a10 * ee[10]! + a11 * ee[11]! + a12 * ee[12]!;
    this.#logZ = aLog[n - 1]! + this.#maxEnd + Math.log(z);
    if (!Number.isFinite(this.#logZ)) return false;

    // Backward. β_{n-1} = exp(end − max); w0…w12 carry β_{t+1}·exp(e_{t+1}) by tag.
    let c = (n - 1) * T;
    b.set(ee, c);
    bLog[n - 1] = this.#maxEnd;
    let w0 = b[c]! * expE[c]!, w1 = b[c + 1]! * expE[c + 1]!, w2 = b[c + 2]! * expE[c + 2]!;
    let w3 = b[c + 3]! * expE[c + 3]!, w4 = b[c + 4]! * expE[c + 4]!, w5 = b[c + 5]! * expE[c + 5]!;
    let w6 = b[c + 6]! * expE[c + 6]!, w7 = b[c + 7]! * expE[c + 7]!, w8 = b[c + 8]! * expE[c + 8]!;
    let w9 = b[c + 9]! * expE[c + 9]!, w10 = b[c + 10]! * expE[c + 10]!, w11 = b[c + 11]! * expE[c + 11]!;
    let w12 = b[c + 12]! * expE[c + 12]!;
    for (let t = n - 2; t >= 0; t--) {
      c = t * T;
      // Successors of O: O and every B-Y; of B-X and I-X: those and I-X.
      const o = toO0 * w0 + toDis0 * w1 + toExa0 * w3 + toTes0 * w5 + toOpe0 * w7 + toDru0 * w9 + toAna0 * w11;
      const bDis = toO1 * w0 + toDis1 * w1 + toExa1 * w3 + toTes1 * w5 + toOpe1 * w7 + toDru1 * w9 + toAna1 * w11 + bDisI * w2;
      const iDis = toO2 * w0 + toDis2 * w1 + toExa2 * w3 + toTes2 * w5 + toOpe2 * w7 + toDru2 * w9 + toAna2 * w11 + iDisI * w2;
      const bExa = toO3 * w0 + toDis3 * w1 + toExa3 * w3 + toTes3 * w5 + toOpe3 * w7 + toDru3 * w9 + toAna3 * w11 + bExaI * w4;
      const iExa = toO4 * w0 + toDis4 * w1 + toExa4 * w3 + toTes4 * w5 + toOpe4 * w7 + toDru4 * w9 + toAna4 * w11 + iExaI * w4;
      const bTes = toO5 * w0 + toDis5 * w1 + toExa5 * w3 + toTes5 * w5 + toOpe5 * w7 + toDru5 * w9 + toAna5 * w11 + bTesI * w6;
      const iTes = toO6 * w0 + toDis6 * w1 + toExa6 * w3 + toTes6 * w5 + toOpe6 * w7 + toDru6 * w9 + toAna6 * w11 + iTesI * w6;
      const bOpe = toO7 * w0 + toDis7 * w1 + toExa7 * w3 + toTes7 * w5 + toOpe7 * w7 + toDru7 * w9 + toAna7 * w11 + bOpeI * w8;
      const iOpe = toO8 * w0 + toDis8 * w1 + toExa8 * w3 + toTes8 * w5 + toOpe8 * w7 + toDru8 * w9 + toAna8 * w11 + iOpeI * w8;
      const bDru = toO9 * w0 + toDis9 * w1 + toExa9 * w3 + toTes9 * w5 + toOpe9 * w7 + toDru9 * w9 + toAna9 * w11 + bDruI * w10;
      const iDru = toO10 * w0 + toDis10 * w1 + toExa10 * w3 + toTes10 * w5 + toOpe10 * w7 + toDru10 * w9 + toAna10 * w11 + iDruI * w10;
      const bAna = toO11 * w0 + toDis11 * w1 + toExa11 * w3 + toTes11 * w5 + toOpe11 * w7 + toDru11 * w9 + toAna11 * w11 + bAnaI * w12;
      const iAna = toO12 * w0 + toDis12 * w1 + toExa12 * w3 + toTes12 * w5 + toOpe12 * w7 + toDru12 * w9 + toAna12 * w11 + iAnaI * w12;
      const k = rescaleExponent(o + bDis + iDis + bExa + iExa + bTes + iTes + bOpe + iOpe + bDru + iDru + bAna + iAna);
      if (Number.isNaN(k)) return false;
      const f = k === 0 ? 1 : 2 ** k;
      const r0 = o * f, r1 = bDis * f, r2 = iDis * f, r3 = bExa * f, r4 = iExa * f, r5 = bTes * f, r6 = iTes * f;
      const r7 = bOpe * f, r8 = iOpe * f, r9 = bDru * f, r10 = iDru * f, r11 = bAna * f, r12 = iAna * f;
      storeRow(b, c, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12);
      bLog[t] = bLog[t + 1]! + maxTrans + eMax[t + 1]! - k * Math.LN2;
      w0 = r0 * expE[c]!;
      w1 = r1 * expE[c + 1]!;
      w2 = r2 * expE[c + 2]!;
      w3 = r3 * expE[c + 3]!;
      w4 = r4 * expE[c + 4]!;
      w5 = r5 * expE[c + 5]!;
      w6 = r6 * expE[c + 6]!;
      w7 = r7 * expE[c + 7]!;
      w8 = r8 * expE[c + 8]!;
      w9 = r9 * expE[c + 9]!;
      w10 = r10 * expE[c + 10]!;
      w11 = r11 * expE[c + 11]!;
      w12 = r12 * expE[c + 12]!;
    }
    return true;
  }

  /** The textbook log-space recursion, for chunks whose scores spread too far to scale. */
  #exactLogSpace(): void {
    const T = NUM_TAGS;
    const n = this.#length;
    const em = this.#emissions;
    const { start, end, transitions: tr } = this.#crf;
    const la = this.#alpha; // [seq, tags] log α
    const lb = this.#beta; // [seq, tags] log β
    const terms = this.#w;
    for (let j = 0; j < T; j++) la[j] = start[j]! + em[j]!;
    for (let t = 1; t < n; t++) {
      for (let j = 0; j < T; j++) {
        for (let i = 0; i < T; i++) terms[i] = la[(t - 1) * T + i]! + tr[i * T + j]!;
        la[t * T + j] = logSumExp(terms) + em[t * T + j]!;
      }
    }
    for (let j = 0; j < T; j++) lb[(n - 1) * T + j] = end[j]!;
    for (let t = n - 2; t >= 0; t--) {
      for (let i = 0; i < T; i++) {
        for (let j = 0; j < T; j++) terms[j] = tr[i * T + j]! + em[(t + 1) * T + j]! + lb[(t + 1) * T + j]!;
        lb[t * T + i] = logSumExp(terms);
      }
    }
    for (let j = 0; j < T; j++) terms[j] = la[(n - 1) * T + j]! + end[j]!;
    this.#logZ = logSumExp(terms);
  }
}

/** Nats the scaled recursion may lose (see the top of the file) before entries near subnormal range. */
const SCALING_BUDGET = 600;
/** A row whose sum leaves [LOW, HIGH] is rescaled by a power of two. */
const LOW = 2 ** -100;
const HIGH = 2 ** 100;

/**
 * 0 while a row's sum stays in [LOW, HIGH], else k such that sum·2^k is near
 * 1 (scaling by 2^k is exact); NaN when the row is all zeros or not finite.
 */
function rescaleExponent(sum: number): number {
  if (sum >= LOW && sum <= HIGH) return 0;
  return sum > 0 && sum < Infinity ? -Math.round(Math.log2(sum)) : Number.NaN;
}


// exp(x) for x ≤ 0: fdlibm's e_exp.c, which is what V8's Math.exp runs, so the
// same bits, but inlined where Math.exp is a call into C; 13 per position
// made it the largest cost of `compute`.
const LN2_HI = 6.93147180369123816490e-1;
const LN2_LO = 1.90821492927058770002e-10;
const INV_LN2 = 1.44269504088896338700;
const P1 = 1.66666666666666019037e-1;
const P2 = -2.77777777770155933842e-3;
const P3 = 6.61375632143793436117e-5;
const P4 = -1.65339022054652515390e-6;
const P5 = 4.13813679705723846039e-8;
const EXP_UNDERFLOW = -7.45133219101941108420e2; // below: exp(x) rounds to 0
const POW2 = Float64Array.from({ length: 1022 }, (_, j) => 2 ** -j); // [j] 2^-j, normal numbers only

/** exp(x) for x ≤ 0 (and NaN), bit for bit as Math.exp; exported for its test. */
export function expNonPositive(x: number): number {
  if (!(x >= EXP_UNDERFLOW)) return Number.isNaN(x) ? x : 0;
  if (x > -3.72529029846191406250e-9) return 1 + x; // |x| < 2^-28
  // x = k·ln2 + r, |r| ≤ ln2/2; exp(r) by fdlibm's rational approximation.
  let hi: number;
  let lo: number;
  let k: number;
  if (x > -0.5 * Math.LN2) {
    const t = x * x;
    const c = x - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
    return 1 - ((x * c) / (c - 2) - x);
  }
  if (x > -1.5 * Math.LN2) {
    hi = x + LN2_HI;
    lo = -LN2_LO;
    k = -1;
  } else {
    k = Math.trunc(INV_LN2 * x - 0.5);
    hi = x - k * LN2_HI;
    lo = k * LN2_LO;
  }
  const r = hi - lo;
  const t = r * r;
  const c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  const y = 1 - (lo - (r * c) / (2 - c) - hi);
  // y·2^k: exact while 2^k is normal; below, one rounding as fdlibm does it.
  return k >= -1021 ? y * POW2[-k]! : y * POW2[-k - 1000]! * 2 ** -1000;
}

function finiteSpread(xs: Float64Array): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of xs) {
    if (x === -Infinity) continue; // forbidden moves are exact zeros in the scaled form
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return hi >= lo ? hi - lo : 0;
}

function logSumExp(xs: Float64Array): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (const x of xs) s += Math.exp(x - m);
  return m + Math.log(s);
}
