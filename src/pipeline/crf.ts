// CRF parameters (`crf.json`, docs/contract.md "CRF decoding") and the BIO
// constraint applied at decoding time.

import { type Either, left, right } from 'fp-ts/lib/Either.js';
import { NUM_TAGS, isAllowedTransition } from './labels.js';

export interface Crf {
  readonly numTags: number;
  readonly start: Float64Array; // [tags]
  readonly end: Float64Array; // [tags]
  readonly transitions: Float64Array; // [from, to]: transitions[i * T + j] scores tag i followed by tag j
}

/**
 * The trained scores with the forbidden BIO moves set to −∞ (start at I-X,
 * I-X after anything but B-X/I-X). Both decoders work on this.
 */
export interface ConstrainedCrf extends Crf {
  /** Transposed ([to, from]) so the Viterbi inner loop reads memory in order. */
  readonly transitionsByTarget: Float64Array;
}

/** Validates the parsed JSON of `crf.json`; collects every problem. */
export function parseCrf(json: unknown, numTags: number = NUM_TAGS): Either<readonly string[], Crf> {
  const errors: string[] = [];
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    return left(['crf.json must be an object with start, end and transitions']);
  }
  const obj = json as Record<string, unknown>;
  const start = vector(obj['start'], numTags, 'start', errors);
  const end = vector(obj['end'], numTags, 'end', errors);
  const transitions = new Float64Array(numTags * numTags);
  const rows = obj['transitions'];
  if (!Array.isArray(rows) || rows.length !== numTags) {
    errors.push(`transitions must be a ${numTags}×${numTags} array of numbers`);
  } else {
    rows.forEach((row, i) => {
      const v = vector(row, numTags, `transitions[${i}]`, errors);
      transitions.set(v, i * numTags);
    });
  }
  if (errors.length > 0) return left(errors);
  return right(Object.freeze({ numTags, start, end, transitions }));
}

function vector(value: unknown, n: number, name: string, errors: string[]): Float64Array {
  const out = new Float64Array(n);
  if (!Array.isArray(value) || value.length !== n) {
    errors.push(`${name} must be an array of ${n} numbers`);
    return out;
  }
  value.forEach((x, i) => {
    if (typeof x !== 'number' || !Number.isFinite(x)) errors.push(`${name}[${i}] must be a finite number, found ${JSON.stringify(x)}`);
    else out[i] = x;
  });
  return out;
}

export function constrain(crf: Crf): ConstrainedCrf {
  const T = crf.numTags;
  const start = Float64Array.from(crf.start, (s, j) => (isAllowedTransition(-1, j) ? s : -Infinity));
  const transitions = new Float64Array(T * T);
  const transitionsByTarget = new Float64Array(T * T);
  for (let i = 0; i < T; i++) {
    for (let j = 0; j < T; j++) {
      const v = isAllowedTransition(i, j) ? crf.transitions[i * T + j]! : -Infinity;
      transitions[i * T + j] = v;
      transitionsByTarget[j * T + i] = v;
    }
  }
  return Object.freeze({ numTags: T, start, end: Float64Array.from(crf.end), transitions, transitionsByTarget });
}
