// Entity confidence (docs/contract.md "Entity confidence"): the posterior
// probability, under the constrained CRF, that exactly this span carries this
// type, from forward (α) and backward (β) scores.
//
// α and β are kept scaled instead of in log space: each row is divided by
// its largest entry and the log of that factor is carried separately, so a
// step costs multiplications by precomputed exp(transition) values, and the
// 13 exp(emission) of a position are computed once for both passes, instead
// of 169 log-sum-exps per pass. Every scaled entry stays above
// exp(−(2·transition spread + 2·emission spread + start and end spreads) − 6),
// so while that exponent is small no entry degrades to a subnormal or zero;
// a chunk whose scores spread further (hundreds of nats, never seen from a
// trained model) takes the exact log-space recursion instead.

import type { ConstrainedCrf } from './crf.js';
import { beginTag, insideTag, isInside } from './labels.js';

export class CrfPosterior {
  readonly #crf: ConstrainedCrf;
  readonly #expTrans: Float64Array; // [from, to] exp(transition − maxTransition), 0 where forbidden
  readonly #expTransByTarget: Float64Array; // [to, from] the same, transposed for the forward pass
  readonly #maxTrans: number;
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
    const T = crf.numTags;
    this.#crf = crf;
    let maxTrans = -Infinity;
    for (const v of crf.transitions) if (v > maxTrans) maxTrans = v;
    this.#maxTrans = maxTrans;
    this.#expTrans = crf.transitions.map((v) => Math.exp(v - maxTrans));
    this.#expTransByTarget = crf.transitionsByTarget.map((v) => Math.exp(v - maxTrans));
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
    const T = this.#crf.numTags;
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
    this.#logMode = !(safe && this.#forwardScaled() && this.#backwardScaled());
    if (this.#logMode) this.#exactLogSpace();
  }

  /** log Z of the last `compute`. */
  get logPartition(): number {
    return this.#logZ;
  }

  /** log α_t(y), log β_t(y) of the last `compute`. */
  logAlpha(t: number, y: number): number {
    const a = this.#alpha[t * this.#crf.numTags + y]!;
    return this.#logMode ? a : Math.log(a) + this.#alphaLog[t]!;
  }

  logBeta(t: number, y: number): number {
    const b = this.#beta[t * this.#crf.numTags + y]!;
    return this.#logMode ? b : Math.log(b) + this.#betaLog[t]!;
  }

  /**
   * P(y_start = B-X, y_start+1..end-1 = I-X, y_end ≠ I-X) for entity type
   * index `typeIndex` (the last factor is dropped when the span ends the
   * chunk), clamped to [0, 1]. `start`/`end` are chunk positions, end exclusive.
   */
  spanConfidence(start: number, end: number, typeIndex: number): number {
    const T = this.#crf.numTags;
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
    if (end < n) {
      // log Σ_{y ≠ I-X} exp(trans[last][y] + e[end][y] + β_end(y))
      let m = -Infinity;
      const w = this.#w;
      for (let y = 0; y < T; y++) {
        w[y] = y === I ? -Infinity : tr[prev * T + y]! + em[end * T + y]! + this.logBeta(end, y);
        if (w[y]! > m) m = w[y]!;
      }
      let sum = 0;
      for (let y = 0; y < T; y++) sum += Math.exp(w[y]! - m);
      logP += m + Math.log(sum);
    } else {
      // The span ends the chunk: its last tag is followed by the end score (β_{n-1}).
      logP += this.logBeta(n - 1, prev);
    }
    const p = Math.exp(logP - this.#logZ);
    return Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
  }

  /**
   * Fills exp(emission − row max) and the row maxima; returns the largest
   * spread (max − min) of a row, NaN/∞ for non-finite emissions.
   */
  #emissionRows(): number {
    const T = this.#crf.numTags;
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
      for (let j = c; j < c + T; j++) expE[j] = Math.exp(em[j]! - hi);
    }
    return spread;
  }

  /** Scaled α; false when a row underflows to all zeros. */
  #forwardScaled(): boolean {
    const T = this.#crf.numTags;
    const n = this.#length;
    const a = this.#alpha;
    const aLog = this.#alphaLog;
    const etT = this.#expTransByTarget; // [to, from]
    const expE = this.#expE;
    const eMax = this.#eMax;
    const { start, end } = this.#crf;
    const em = this.#emissions;

    let m = -Infinity;
    for (let j = 0; j < T; j++) m = Math.max(m, start[j]! + em[j]!);
    for (let j = 0; j < T; j++) a[j] = Math.exp(start[j]! + em[j]! - m);
    aLog[0] = m;

    for (let t = 1; t < n; t++) {
      const p = (t - 1) * T;
      const c = t * T;
      let rowMax = 0;
      for (let j = 0; j < T; j++) {
        const k = j * T;
        let s: number;
        if (isInside(j)) {
          s = a[p + j - 1]! * etT[k + j - 1]! + a[p + j]! * etT[k + j]!; // only B-X, I-X may precede I-X
        } else {
          s = 0;
          for (let i = 0; i < T; i++) s += a[p + i]! * etT[k + i]!;
        }
        const v = s * expE[c + j]!;
        a[c + j] = v;
        if (v > rowMax) rowMax = v;
      }
      if (!(rowMax > 0 && Number.isFinite(rowMax))) return false;
      const inv = 1 / rowMax;
      for (let j = 0; j < T; j++) a[c + j] = a[c + j]! * inv;
      aLog[t] = aLog[t - 1]! + this.#maxTrans + eMax[t]! + Math.log(rowMax);
    }

    const last = (n - 1) * T;
    let zMax = -Infinity;
    for (let j = 0; j < T; j++) zMax = Math.max(zMax, Math.log(a[last + j]!) + end[j]!);
    let sum = 0;
    for (let j = 0; j < T; j++) sum += Math.exp(Math.log(a[last + j]!) + end[j]! - zMax);
    this.#logZ = aLog[n - 1]! + zMax + Math.log(sum);
    return Number.isFinite(this.#logZ);
  }

  /** Scaled β; false when a row underflows to all zeros. */
  #backwardScaled(): boolean {
    const T = this.#crf.numTags;
    const n = this.#length;
    const b = this.#beta;
    const bLog = this.#betaLog;
    const et = this.#expTrans; // [from, to]
    const expE = this.#expE;
    const eMax = this.#eMax;
    const w = this.#w;
    const { end } = this.#crf;

    const last = (n - 1) * T;
    let m = -Infinity;
    for (let j = 0; j < T; j++) m = Math.max(m, end[j]!);
    for (let j = 0; j < T; j++) b[last + j] = Math.exp(end[j]! - m);
    bLog[n - 1] = m;

    for (let t = n - 2; t >= 0; t--) {
      const c = t * T;
      const nx = (t + 1) * T;
      for (let j = 0; j < T; j++) w[j] = b[nx + j]! * expE[nx + j]!;
      let rowMax = 0;
      for (let i = 0; i < T; i++) {
        const k = i * T;
        // Successors: O and every B-Y, plus I-X when i is B-X or I-X.
        let s = et[k]! * w[0]!;
        for (let j = 1; j < T; j += 2) s += et[k + j]! * w[j]!;
        if (i > 0) {
          const inside = isInside(i) ? i : i + 1;
          s += et[k + inside]! * w[inside]!;
        }
        b[c + i] = s;
        if (s > rowMax) rowMax = s;
      }
      if (!(rowMax > 0 && Number.isFinite(rowMax))) return false;
      const inv = 1 / rowMax;
      for (let i = 0; i < T; i++) b[c + i] = b[c + i]! * inv;
      bLog[t] = bLog[t + 1]! + this.#maxTrans + eMax[t + 1]! + Math.log(rowMax);
    }
    return true;
  }

  /** The textbook log-space recursion, for chunks whose scores spread too far to scale. */
  #exactLogSpace(): void {
    const T = this.#crf.numTags;
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

/** Nats the scaled recursion may lose before entries near subnormal range (exp(−700)). */
const SCALING_BUDGET = 600;

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
