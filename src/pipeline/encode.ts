// Normalization, vocabulary lookup and batch packing (docs/contract.md,
// "Normalization and encoding"). One code point in, one token out, so chunk
// offsets are token offsets.

import { type Either, left, right } from 'fp-ts/lib/Either.js';
import type { Chunk } from './chunk.js';
import { NUM_TAGS } from './labels.js';
import { LEXICON_FEATURES } from './lexicon.js';
import { normalizeChar } from './normalize.js';

export { normalizeChar };

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[SPACE]'] as const;
export const PAD_ID = 0;
export const UNK_ID = 1;
export const CLS_ID = 2;
export const SEP_ID = 3;
export const SPACE_ID = 5;

export interface Vocab {
  readonly size: number;
  /** Id of an already normalized character (or special token); UNK when absent. */
  idOf(token: string): number;
}


/**
 * `vocab.txt`: one token per line, line number = id. Lines are split on "\n"
 * only: tokens are single characters and some characters (U+2028, U+0085)
 * would be eaten by a "universal newline" split.
 */
export function parseVocab(text: string): Either<readonly string[], Vocab> {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const errors: string[] = [];
  SPECIAL_TOKENS.forEach((tok, id) => {
    if (lines[id] !== tok) errors.push(`vocab line ${id + 1} must be ${tok}, found ${JSON.stringify(lines[id] ?? null)}`);
  });
  const ids = new Map<string, number>();
  lines.forEach((tok, id) => {
    if (tok === '') errors.push(`vocab line ${id + 1} is empty`);
    else if (ids.has(tok)) errors.push(`vocab line ${id + 1} repeats token ${JSON.stringify(tok)} (first on line ${ids.get(tok)! + 1})`);
    else ids.set(tok, id);
  });
  if (errors.length > 0) return left(errors);
  return right(vocabFromMap(ids));
}

function vocabFromMap(ids: ReadonlyMap<string, number>): Vocab {
  return Object.freeze({ size: ids.size, idOf: (token: string) => ids.get(token) ?? UNK_ID });
}

/** Token id of one original code point. */
export function tokenId(ch: string, vocab: Vocab): number {
  const n = normalizeChar(ch);
  return n === ' ' ? SPACE_ID : vocab.idOf(n);
}

/** Ids of the code points `chars[chunk.start..chunk.end)`: [length]. */
export function encodeChunk(chars: readonly string[], chunk: Chunk, vocab: Vocab): Int32Array {
  const ids = new Int32Array(chunk.end - chunk.start);
  for (let i = 0; i < ids.length; i++) ids[i] = tokenId(chars[chunk.start + i]!, vocab);
  return ids;
}

/** Model inputs for several sequences, right-padded to the longest. */
export interface PackedBatch {
  readonly batch: number;
  readonly seq: number;
  readonly inputIds: BigInt64Array; // [batch, seq]
  readonly attentionMask: BigInt64Array; // [batch, seq]
  /** [batch, seq, LEXICON_FEATURES], 0 on padding; null for a model without lexicon features. */
  readonly lexiconFeatures: Float32Array | null;
  readonly lengths: Int32Array; // [batch]
}

/** `features[k]` ([rows[k].length, LEXICON_FEATURES]) go with `rows[k]`; all rows have them or none. */
export function packBatch(rows: readonly Int32Array[], features: readonly Uint8Array[] | null = null): PackedBatch {
  const batch = rows.length;
  let seq = 0;
  for (const r of rows) seq = Math.max(seq, r.length);
  const inputIds = new BigInt64Array(batch * seq); // zero = [PAD]
  const attentionMask = new BigInt64Array(batch * seq);
  const lengths = new Int32Array(batch);
  const F = LEXICON_FEATURES;
  if (features !== null && features.length !== batch) throw new RangeError(`${features.length} feature rows for ${batch} sequences`);
  const lexiconFeatures = features === null ? null : new Float32Array(batch * seq * F);
  rows.forEach((row, b) => {
    const f = features?.[b];
    if (f !== undefined) {
      if (f.length !== row.length * F) throw new RangeError(`row ${b}: ${f.length} lexicon features, expected ${row.length}×${F}`);
      lexiconFeatures!.set(f, b * seq * F);
    }
    lengths[b] = row.length;
    const base = b * seq;
    for (let t = 0; t < row.length; t++) {
      inputIds[base + t] = BigInt(row[t]!);
      attentionMask[base + t] = 1n;
    }
  });
  return { batch, seq, inputIds, attentionMask, lexiconFeatures, lengths };
}

/**
 * Groups sequence indices into batches of at most `maxBatchSize`, longest
 * first, so each batch holds similar lengths and padding stays small.
 */
export function planBatches(lengths: readonly number[], maxBatchSize: number): number[][] {
  if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) {
    throw new RangeError(`maxBatchSize must be an integer >= 1, got ${maxBatchSize}`);
  }
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += maxBatchSize) batches.push(order.slice(i, i + maxBatchSize));
  return batches;
}

/**
 * Per-row views (no copy) into a batch's emissions [batch, seq, tags], each
 * cut to the row's real length: [length, tags].
 */
export function splitEmissions(emissions: Float32Array, packed: PackedBatch, tags: number = NUM_TAGS): Float32Array[] {
  const expected = packed.batch * packed.seq * tags;
  if (emissions.length !== expected) {
    throw new RangeError(`emissions have ${emissions.length} values, expected ${expected} = [${packed.batch}, ${packed.seq}, ${tags}]`);
  }
  const out: Float32Array[] = [];
  for (let b = 0; b < packed.batch; b++) {
    const base = b * packed.seq * tags;
    out.push(emissions.subarray(base, base + packed.lengths[b]! * tags));
  }
  return out;
}
