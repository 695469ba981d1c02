// Small statistics for the benchmark: medians of repeated runs, percentiles
// of latencies, and per-pair ratios (each ratio from two runs made back to
// back, so load noise that hits one run of a pair mostly hits the other).

export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

/** Linear interpolation between closest ranks (numpy's default); NaN for no data. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/** The item with the median key (the lower middle one of an even count); undefined for none. */
export function medianItem<T>(items: readonly T[], key: (item: T) => number): T | undefined {
  return [...items].sort((a, b) => key(a) - key(b))[(items.length - 1) >> 1];
}

/** a[i] / b[i] for each pair. */
export function pairRatios(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`pairs need equal lengths, got ${a.length} and ${b.length}`);
  return a.map((x, i) => x / b[i]!);
}
