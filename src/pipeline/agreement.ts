// How far two taggings of the same records agree, entity by entity (exact
// offsets and type): 2·|A ∩ B| / (|A| + |B|). This is the F1 of one against
// the other, symmetric, and 1 when both found nothing: two models that agree
// there is nothing to find agree fully. (Strict F1 against gold, where no gold
// and no prediction scores 0 as in the training package, is cli/metrics.ts.)

/** `common` entities found by both, `a` by the first, `b` by the second (each counted once per record). */
export function agreementF1(common: number, a: number, b: number): number {
  if (common < 0 || common > a || common > b) throw new RangeError(`common (${common}) must be between 0 and both counts (${a}, ${b})`);
  return a + b === 0 ? 1 : (2 * common) / (a + b);
}
