// Lexicon match features, rule for rule as docs/contract.md "Lexicon
// features" and `Lexicon.features` in training/src/cner_train/lexicon.py: for
// each of 8 word lists, which characters of a chunk begin, continue or end an
// occurrence of one of its terms (2–40 characters, every occurrence, overlaps
// included), matched on the normalized characters.

import { type Either, left, right } from 'fp-ts/lib/Either.js';
import type { Chunk } from './chunk.js';
import { normalizeChar } from './normalize.js';

/** The lists, in feature order: the six entity types, mixed checks (CHK), symptoms (SYM). */
export const LEXICON_CATEGORIES = ['DIS', 'EXA', 'TES', 'OPE', 'DRU', 'ANA', 'CHK', 'SYM'] as const;
/** Per category: begin, inside, end; feature index = 3 × category + position. */
export const LEXICON_FEATURES = LEXICON_CATEGORIES.length * 3; // 24
const MIN_TERM = 2;
const MAX_TERM = 40;
/** Set on a key that is a proper prefix of some term: the scan goes on past it. */
const PREFIX = 1 << 30;

export interface Lexicon {
  readonly terms: number;
  readonly maxLength: number;
  /** Normalized term or proper prefix → category bits (bit c: list c) | PREFIX. */
  readonly keys: ReadonlyMap<string, number>;
}

const normalize = (term: string): string => Array.from(term, normalizeChar).join('');

/**
 * `lexicon.tsv`: one `CATEGORY<TAB>term` per line. Terms are normalized here
 * too (the file holds them normalized already); those outside 2–40 characters
 * are skipped, as the training package skips them.
 */
export function parseLexicon(text: string): Either<readonly string[], Lexicon> {
  const errors: string[] = [];
  const keys = new Map<string, number>();
  const categories = new Map<string, number>(LEXICON_CATEGORIES.map((c, i) => [c, i]));
  let terms = 0;
  let maxLength = 0;
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const tab = line.indexOf('\t');
    const category = categories.get(tab < 0 ? line : line.slice(0, tab));
    if (tab < 0 || category === undefined) {
      if (errors.length < 10) errors.push(`line ${i + 1} must be CATEGORY<TAB>term with CATEGORY one of ${LEXICON_CATEGORIES.join(', ')}`);
      return;
    }
    const chars = Array.from(normalize(line.slice(tab + 1).trim()));
    if (chars.length < MIN_TERM || chars.length > MAX_TERM) return;
    const term = chars.join('');
    const had = keys.get(term) ?? 0;
    if ((had & ~PREFIX) === 0) terms++;
    keys.set(term, had | (1 << category));
    maxLength = Math.max(maxLength, chars.length);
    let prefix = '';
    for (let k = 0; k < chars.length - 1; k++) {
      prefix += chars[k];
      keys.set(prefix, (keys.get(prefix) ?? 0) | PREFIX);
    }
  });
  if (errors.length > 0) return left(errors);
  return right(Object.freeze({ terms, maxLength, keys }));
}

/** Features of `chars[chunk.start..chunk.end)`: [length, LEXICON_FEATURES], 0 or 1. */
export function lexiconFeatures(chars: readonly string[], chunk: Chunk, lexicon: Lexicon): Uint8Array {
  const n = chunk.end - chunk.start;
  const out = new Uint8Array(n * LEXICON_FEATURES);
  const norm = new Array<string>(n);
  for (let i = 0; i < n; i++) norm[i] = normalizeChar(chars[chunk.start + i]!);
  for (let s = 0; s < n; s++) {
    let key = '';
    const last = Math.min(n, s + lexicon.maxLength);
    for (let e = s + 1; e <= last; e++) {
      key += norm[e - 1];
      const v = lexicon.keys.get(key);
      if (v === undefined) break;
      const categories = v & ~PREFIX;
      if (categories !== 0 && e - s >= MIN_TERM) mark(out, s, e, categories);
      if ((v & PREFIX) === 0) break;
    }
  }
  return out;
}

function mark(out: Uint8Array, s: number, e: number, categories: number): void {
  const F = LEXICON_FEATURES;
  for (let c = 0; c < LEXICON_CATEGORIES.length; c++) {
    if ((categories & (1 << c)) === 0) continue;
    out[s * F + 3 * c] = 1; // begin
    for (let t = s + 1; t < e - 1; t++) out[t * F + 3 * c + 1] = 1; // inside
    out[(e - 1) * F + 3 * c + 2] = 1; // end
  }
}
