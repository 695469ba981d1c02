// Micro-benchmark of the per-chunk decoding cost: `npm run bench:viterbi`.
// Not a test (not *.test.ts); numbers depend on the machine and its load.

import { readFileSync } from 'node:fs';
import { isLeft } from 'fp-ts/lib/Either.js';
import { type ConstrainedCrf, constrain, parseCrf } from '../../src/pipeline/crf.js';
import { NUM_TAGS } from '../../src/pipeline/labels.js';
import { CrfPosterior } from '../../src/pipeline/marginals.js';
import { spansFromTags } from '../../src/pipeline/spans.js';
import { ViterbiDecoder } from '../../src/pipeline/viterbi.js';

const T = NUM_TAGS;
const N = 128;
let seed = 12345;
const random = (): number => ((seed = (seed * 48271) % 2147483647) / 2147483647) * 2 - 1;

const crf = constrain({
  numTags: T,
  start: Float64Array.from({ length: T }, random),
  end: Float64Array.from({ length: T }, random),
  transitions: Float64Array.from({ length: T * T }, () => 3 * random()),
});
// The shipped model's CRF: its transitions into O and B-X spread over about
// 1.7 nats where the random one above spreads over 6, and that spread decides
// how often a Viterbi step can leave predecessors out.
const shipped: ConstrainedCrf = (() => {
  const parsed = parseCrf(JSON.parse(readFileSync(new URL('../../models/default/crf.json', import.meta.url), 'utf8')));
  if (isLeft(parsed)) throw new Error(parsed.left.join('\n'));
  return constrain(parsed.right);
})();
// Uniform noise (worst case for branch prediction and for pruning) and peaked rows like a trained model's.
const uniform = Array.from({ length: 64 }, () => Float32Array.from({ length: N * T }, () => 5 * random()));
const peaked = Array.from({ length: 64 }, () => {
  const em = Float32Array.from({ length: N * T }, random);
  for (let t = 0; t < N; t++) em[t * T + Math.floor(((random() + 1) / 2) * 3)]! += 8;
  return em;
});

function bench(name: string, fn: (k: number) => void, iterations: number): void {
  for (let k = 0; k < iterations / 5; k++) fn(k); // warm-up (JIT)
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < iterations; k++) fn(k);
    runs.push(Number(process.hrtime.bigint() - t0) / 1e3 / iterations);
  }
  runs.sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} best ${runs[0]!.toFixed(2)} µs   median ${runs[2]!.toFixed(2)} µs`);
}

const viterbi = new ViterbiDecoder(crf);
const posterior = new CrfPosterior(crf);
const shippedViterbi = new ViterbiDecoder(shipped);
const shippedPosterior = new CrfPosterior(shipped);
const out = new Uint8Array(N);
console.log(`per ${N}×${T} chunk, node ${process.version}`);
bench('viterbi (uniform noise)', (k) => viterbi.decode(uniform[k & 63]!, N, out), 50_000);
bench('viterbi (peaked)', (k) => viterbi.decode(peaked[k & 63]!, N, out), 50_000);
bench('viterbi (peaked, shipped CRF)', (k) => shippedViterbi.decode(peaked[k & 63]!, N, out), 50_000);
bench('forward-backward (peaked)', (k) => posterior.compute(peaked[k & 63]!, N), 10_000);
bench('forward-backward (peaked, shipped CRF)', (k) => shippedPosterior.compute(peaked[k & 63]!, N), 10_000);
bench('viterbi + spans + confidences (peaked)', (k) => {
  const em = peaked[k & 63]!;
  const spans = spansFromTags(viterbi.decode(em, N, out), N);
  posterior.compute(em, N);
  for (const s of spans) posterior.spanConfidence(s.start, s.end, s.typeIndex);
}, 10_000);
