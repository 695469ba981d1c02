// Viterbi alone, cner's TypeScript decoder against the numpy peer's, on the
// same emissions: real ones, from the bundle's model over consecutive
// 128-code-point windows of the benchmark's texts (joined, so short records
// still give full windows). Both sides decode the same windows and must
// return the same tag paths.

import { writeFile } from 'node:fs/promises';
import { codePoints } from '../src/pipeline/chunk.js';
import { constrain } from '../src/pipeline/crf.js';
import { encodeChunk } from '../src/pipeline/encode.js';
import { lexiconFeatures } from '../src/pipeline/lexicon.js';
import { NUM_TAGS } from '../src/pipeline/labels.js';
import { ViterbiDecoder } from '../src/pipeline/viterbi.js';
import type { LoadedModel } from '../src/model/model.js';
import type { Peer } from './peers.js';
import { median } from './stats.js';

export const WINDOW = 128;

export interface ViterbiResult {
  readonly chunks: number;
  readonly length: number;
  readonly tags: number;
  readonly typescriptUs: readonly number[];
  readonly numpyUs: readonly number[];
  readonly numpyBatchedUs: readonly number[];
  readonly medianTypescriptUs: number;
  readonly medianNumpyUs: number;
  readonly medianNumpyBatchedUs: number;
  /** Windows whose TypeScript and numpy paths differ (must be 0). */
  readonly differentPaths: number;
  /** Whether numpy's batched decoder found the same paths as its per-chunk one. */
  readonly numpyBatchedSamePaths: boolean;
}

/** Emissions [count][128 × 13] of `count` windows (fewer if the texts are short). */
export async function windowEmissions(model: LoadedModel, texts: readonly string[], count: number): Promise<Float32Array[]> {
  const chars = codePoints(texts.join(''));
  const ids: Int32Array[] = [];
  const features: Uint8Array[] = [];
  const lexicon = model.lexicon ?? null;
  for (let start = 0; start + WINDOW <= chars.length && ids.length < count; start += WINDOW) {
    ids.push(encodeChunk(chars, { start, end: start + WINDOW }, model.vocab));
    if (lexicon !== null) features.push(lexiconFeatures(chars, { start, end: start + WINDOW }, lexicon));
  }
  return (await model.infer(ids, lexicon === null ? null : features)).map((em) => em.slice()); // own buffers, not views of a batch
}

export async function compareViterbi(model: LoadedModel, emissions: readonly Float32Array[], peer: Peer, file: string, repeat: number): Promise<ViterbiResult> {
  const all = new Float32Array(emissions.length * WINDOW * NUM_TAGS);
  emissions.forEach((em, k) => all.set(em, k * WINDOW * NUM_TAGS));
  await writeFile(file, new Uint8Array(all.buffer)); // little-endian float32, as numpy reads it

  const decoder = new ViterbiDecoder(constrain(model.crf));
  const paths = emissions.map((em) => Array.from(decoder.decode(em, WINDOW)));
  // Enough decodes per timed run to dwarf the clock's resolution; several passes of warm-up for the JIT.
  const passes = Math.max(1, Math.ceil(20_000 / emissions.length));
  const pass = (): void => {
    for (const em of emissions) decoder.decode(em, WINDOW);
  };
  for (let i = 0; i < passes; i++) pass();
  const typescriptUs: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < passes; i++) pass();
    typescriptUs.push(Number(process.hrtime.bigint() - t0) / 1e3 / (passes * emissions.length));
  }

  const numpy = await peer.viterbi(file, emissions.length, WINDOW, NUM_TAGS, repeat);
  const differentPaths = paths.filter((p, k) => p.join() !== numpy.paths[k]?.join()).length;
  return {
    chunks: emissions.length,
    length: WINDOW,
    tags: NUM_TAGS,
    typescriptUs,
    numpyUs: numpy.per_chunk_us,
    numpyBatchedUs: numpy.batched_per_chunk_us,
    medianTypescriptUs: median(typescriptUs),
    medianNumpyUs: median(numpy.per_chunk_us),
    medianNumpyBatchedUs: median(numpy.batched_per_chunk_us),
    differentPaths,
    numpyBatchedSamePaths: numpy.batched_same_paths,
  };
}
