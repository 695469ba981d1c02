// One record, top to bottom: text → chunks → token ids → (model) emissions →
// tags → spans → entities. Everything but `model.infer` is synchronous and
// pure; the model is an interface so this folder never sees onnxruntime.

import { codePoints, chunkCodePoints } from './chunk.js';
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
   * Emissions for each token-id sequence, in order: result[k] is
   * [sequences[k].length, 13] row-major. `features[k]` ([length, 24]) go with
   * sequences[k] when the model has a lexicon.
   */
  infer(sequences: readonly Int32Array[], features?: readonly Uint8Array[] | null): Promise<readonly Float32Array[]>;
}

export async function tagRecord(text: string, model: TaggingModel): Promise<Entity[]> {
  const chars = codePoints(text);
  const chunks = chunkCodePoints(chars);
  if (chunks.length === 0) return [];
  const ids = chunks.map((chunk) => encodeChunk(chars, chunk, model.vocab));
  const lexicon = model.lexicon ?? null;
  const features = lexicon === null ? null : chunks.map((chunk) => lexiconFeatures(chars, chunk, lexicon));

  const emissions = await model.infer(ids, features);

  // No await below: the shared decoder buffers cannot be used by two records at once.
  const { viterbi, posterior } = decodersFor(model.crf);
  const entities: Entity[] = [];
  chunks.forEach((chunk, k) => {
    const length = chunk.end - chunk.start;
    const em = emissions[k]; // [length, tags]
    if (em === undefined || em.length !== length * NUM_TAGS) {
      throw new RangeError(`model returned ${em?.length ?? 'no'} emissions for chunk ${k}, expected ${length}×${NUM_TAGS}`);
    }
    const spans = spansFromTags(viterbi.decode(em, length));
    if (spans.length === 0) return;
    posterior.compute(em, length);
    for (const span of spans) {
      entities.push(toEntity(chars, chunk.start, span, posterior.spanConfidence(span.start, span.end, span.typeIndex)));
    }
  });
  return entities;
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
