// One record, top to bottom: text → chunks → token ids → (model) emissions →
// tags → spans → entities, chunk by chunk as each chunk's emissions arrive.
// Everything but `model.inferEach` is synchronous and pure; the model is an
// interface so this folder never sees onnxruntime.

import { type Chunk, codePoints, chunkCodePoints } from './chunk.js';
import { type Crf, constrain } from './crf.js';
import { type Vocab, encodeChunk } from './encode.js';
import { type Lexicon, lexiconFeatures } from './lexicon.js';
import { NUM_TAGS } from './labels.js';
import { CrfPosterior } from './marginals.js';
import { type Entity, spansFromTags, toEntity } from './spans.js';
import { ViterbiDecoder } from './viterbi.js';

export interface TaggingModel {
  readonly version: string;
  readonly vocab: Vocab;
  readonly crf: Crf;
  /** Set when the model reads lexicon match features as well as token ids. */
  readonly lexicon?: Lexicon | null;
  /**
   * Emissions for each token-id sequence, one promise per sequence, in order,
   * each resolved as soon as its own row is ready (rows of one call may land
   * in different batches): result[k] is [sequences[k].length, 13] row-major.
   * `features[k]` ([length, 24]) go with sequences[k] when the model has a
   * lexicon. Failures reject the rows, never throw; a row nobody awaits must
   * not become an unhandled rejection (see `observed`).
   */
  inferEach(sequences: readonly Int32Array[], features?: readonly Uint8Array[] | null): readonly Promise<Float32Array>[];
}

/** A record's entities, in order: every chunk's (`tagChunks`) once all are decoded. */
export async function tagRecord(text: string, model: TaggingModel): Promise<Entity[]> {
  return (await Promise.all(tagChunks(text, model))).flat();
}

/**
 * One promise per chunk of the record, in chunk order, each resolved with that
 * chunk's entities (record offsets) as soon as its emissions arrive, so a
 * caller can use the first chunks' entities while later ones are inferred.
 */
export function tagChunks(text: string, model: TaggingModel): Promise<Entity[]>[] {
  const chars = codePoints(text);
  const chunks = chunkCodePoints(chars);
  if (chunks.length === 0) return [];
  const ids = chunks.map((chunk) => encodeChunk(chars, chunk, model.vocab));
  const lexicon = model.lexicon ?? null;
  const features = lexicon === null ? null : chunks.map((chunk) => lexiconFeatures(chars, chunk, lexicon));

  const rows = model.inferEach(ids, features);
  return chunks.map((chunk, k) => {
    const row = rows[k] ?? Promise.reject(new RangeError(`model returned ${rows.length} rows for ${chunks.length} chunks`));
    // No await inside: the shared decoder buffers cannot be used by two chunks at once.
    return observed(row.then((em) => decodeChunk(chars, chunk, k, em, model.crf)));
  });
}

/** One chunk's entities from its emissions [length, tags], synchronously. */
function decodeChunk(chars: readonly string[], chunk: Chunk, k: number, em: Float32Array, crf: Crf): Entity[] {
  const length = chunk.end - chunk.start;
  if (em.length !== length * NUM_TAGS) {
    throw new RangeError(`model returned ${em.length} emissions for chunk ${k}, expected ${length}×${NUM_TAGS}`);
  }
  const { viterbi, posterior } = decodersFor(crf);
  const spans = spansFromTags(viterbi.decode(em, length));
  if (spans.length === 0) return [];
  posterior.compute(em, length);
  return spans.map((span) => toEntity(chars, chunk.start, span, posterior.spanConfidence(span.start, span.end, span.typeIndex)));
}

/**
 * The promise itself, with a no-op rejection handler attached on purpose: a
 * caller that stops waiting at the first failure (Promise.all, or awaiting
 * one by one) never looks at the promises that fail after it, and those must
 * not surface as unhandled rejections (which end the process). Whoever awaits
 * the promise still gets its rejection.
 */
export function observed<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

interface Decoders {
  readonly viterbi: ViterbiDecoder;
  readonly posterior: CrfPosterior;
}

const decoders = new WeakMap<Crf, Decoders>();

/** One set of (buffer-owning) decoders per CRF, built on first use. */
function decodersFor(crf: Crf): Decoders {
  let d = decoders.get(crf);
  if (d === undefined) {
    const constrained = constrain(crf);
    d = { viterbi: new ViterbiDecoder(constrained), posterior: new CrfPosterior(constrained) };
    decoders.set(crf, d);
  }
  return d;
}
