// Strict entity-level precision/recall/F1: a prediction counts only when its
// start, end and type all equal a gold entity's (seqeval strict, per type and
// micro/macro averaged).

export interface LabeledSpan {
  readonly start: number;
  readonly end: number;
  readonly label: string;
}

export interface Counts {
  tp: number;
  fp: number;
  fn: number;
}

export interface Scores extends Readonly<Counts> {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  readonly support: number; // gold entities
}

export interface Report {
  readonly documents: number;
  readonly perType: Readonly<Record<string, Scores>>;
  readonly micro: Scores;
  /** Unweighted mean over the types that occur in gold or predictions. */
  readonly macro: { readonly precision: number; readonly recall: number; readonly f1: number };
}

export class EntityScorer {
  readonly #counts = new Map<string, Counts>();
  #documents = 0;

  constructor(knownLabels: readonly string[] = []) {
    for (const l of knownLabels) this.#counts.set(l, { tp: 0, fp: 0, fn: 0 });
  }

  /** Adds one document; duplicate spans count once. */
  add(gold: readonly LabeledSpan[], predicted: readonly LabeledSpan[]): void {
    this.#documents++;
    const key = (s: LabeledSpan): string => `${s.start}:${s.end}:${s.label}`;
    const goldKeys = new Map(gold.map((s) => [key(s), s.label]));
    const predKeys = new Map(predicted.map((s) => [key(s), s.label]));
    for (const [k, label] of predKeys) {
      if (goldKeys.has(k)) this.#of(label).tp++;
      else this.#of(label).fp++;
    }
    for (const [k, label] of goldKeys) if (!predKeys.has(k)) this.#of(label).fn++;
  }

  report(): Report {
    const perType: Record<string, Scores> = {};
    const total: Counts = { tp: 0, fp: 0, fn: 0 };
    for (const [label, c] of this.#counts) {
      perType[label] = scores(c);
      total.tp += c.tp;
      total.fp += c.fp;
      total.fn += c.fn;
    }
    const active = Object.values(perType).filter((s) => s.tp + s.fp + s.fn > 0);
    const mean = (f: (s: Scores) => number): number => (active.length === 0 ? 0 : active.reduce((a, s) => a + f(s), 0) / active.length);
    return {
      documents: this.#documents,
      perType,
      micro: scores(total),
      macro: { precision: mean((s) => s.precision), recall: mean((s) => s.recall), f1: mean((s) => s.f1) },
    };
  }

  #of(label: string): Counts {
    let c = this.#counts.get(label);
    if (c === undefined) {
      c = { tp: 0, fp: 0, fn: 0 };
      this.#counts.set(label, c);
    }
    return c;
  }
}

export function scores(c: Counts): Scores {
  const precision = c.tp + c.fp === 0 ? 0 : c.tp / (c.tp + c.fp);
  const recall = c.tp + c.fn === 0 ? 0 : c.tp / (c.tp + c.fn);
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { ...c, precision, recall, f1, support: c.tp + c.fn };
}
