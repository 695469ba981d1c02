import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { DynamicBatcher } from '../../src/model/batcher.js';
import type { PackedBatch } from '../../src/pipeline/encode.js';
import { CnerError } from '../../src/errors.js';

const T = 13;

/** A runner whose emission at [b, t, 0] is the input id there, so rows can be traced; records batches. */
function echoRunner(delayMs = 0): { run: (b: PackedBatch) => Promise<Float32Array>; batches: { batch: number; seq: number; lengths: number[] }[] } {
  const batches: { batch: number; seq: number; lengths: number[] }[] = [];
  return {
    batches,
    async run(b) {
      batches.push({ batch: b.batch, seq: b.seq, lengths: Array.from(b.lengths) });
      const out = new Float32Array(b.batch * b.seq * T); // [batch, seq, tags]
      b.inputIds.forEach((id, k) => (out[k * T] = Number(id)));
      if (delayMs > 0) await sleep(delayMs);
      return out;
    },
  };
}

const ids = (...xs: number[]): Int32Array => Int32Array.from(xs);
const firstColumn = (em: Float32Array): number[] => Array.from({ length: em.length / T }, (_, t) => em[t * T]!);

describe('DynamicBatcher', () => {
  it('merges concurrent callers into one batch and gives each its own rows', async () => {
    const r = echoRunner();
    const b = new DynamicBatcher({ maxBatchSize: 8, maxWaitMs: 5, run: r.run });
    const [a, c] = await Promise.all([b.infer([ids(1, 2, 3), ids(4)]), b.infer([ids(5, 6)])]);
    assert.deepEqual(a.map(firstColumn), [[1, 2, 3], [4]]);
    assert.deepEqual(c.map(firstColumn), [[5, 6]]);
    assert.equal(r.batches.length, 1);
    assert.deepEqual(r.batches[0], { batch: 3, seq: 3, lengths: [3, 2, 1] }); // longest first
    await b.close();
  });

  it('sends a full batch at once, without waiting', async () => {
    const r = echoRunner();
    const b = new DynamicBatcher({ maxBatchSize: 2, maxWaitMs: 10_000, run: r.run });
    const started = Date.now();
    await b.infer([ids(1), ids(2)]);
    assert.ok(Date.now() - started < 1_000);
    await b.close();
  });

  it('sends a partial batch after maxWaitMs', async () => {
    const r = echoRunner();
    const b = new DynamicBatcher({ maxBatchSize: 100, maxWaitMs: 30, run: r.run });
    const started = performance.now();
    await b.infer([ids(1)]);
    const waited = performance.now() - started;
    assert.ok(waited >= 25, `waited ${waited} ms`);
    await b.close();
  });

  it('splits by length into batches of at most maxBatchSize', async () => {
    const r = echoRunner();
    const b = new DynamicBatcher({ maxBatchSize: 2, maxWaitMs: 5, run: r.run });
    const seqs = [5, 100, 6, 90, 7].map((n) => new Int32Array(n).fill(n));
    const out = await b.infer(seqs);
    assert.deepEqual(out.map((em) => em.length / T), [5, 100, 6, 90, 7]);
    assert.deepEqual(out.map((em) => em[0]), [5, 100, 6, 90, 7]);
    assert.deepEqual(
      r.batches.map((x) => x.lengths),
      [[100, 90], [7, 6], [5]],
    );
    await b.close();
  });

  it('cuts full batches from everything a burst of callers queued, sorted by length', async () => {
    const r = echoRunner();
    const b = new DynamicBatcher({ maxBatchSize: 2, maxWaitMs: 10_000, run: r.run });
    // Four callers in one synchronous burst, as the processor tags a slice: the
    // first two alone would fill a batch with lengths 9 and 2.
    const lengths = [9, 2, 8, 3];
    const out = await Promise.all(lengths.map((n) => b.infer([new Int32Array(n).fill(n)])));
    assert.deepEqual(out.map(([em]) => em!.length / T), lengths);
    assert.deepEqual(r.batches.map((x) => x.lengths), [[9, 8], [3, 2]]);
    await b.close();
  });

  it('fails every caller of a failed batch, and only those', async () => {
    let calls = 0;
    const b = new DynamicBatcher({
      maxBatchSize: 2,
      maxWaitMs: 5,
      run: async (p) => {
        if (calls++ === 0) throw new CnerError('INFERENCE_FAILED', 'boom');
        return new Float32Array(p.batch * p.seq * T);
      },
    });
    const first = [b.infer([ids(1)]), b.infer([ids(2)])];
    for (const p of first) await assert.rejects(p, /boom/);
    assert.equal((await b.infer([ids(3)])).length, 1);
    await b.close();
  });

  it('flushes pending work on close, waits for it, then refuses new work', async () => {
    const r = echoRunner(20);
    const b = new DynamicBatcher({ maxBatchSize: 100, maxWaitMs: 60_000, run: r.run });
    const pending = b.infer([ids(9)]);
    await b.close();
    assert.deepEqual((await pending).map(firstColumn), [[9]]);
    await assert.rejects(b.infer([ids(1)]), (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED');
  });

  it('answers an empty request without running', async () => {
    const r = echoRunner();
    const b = new DynamicBatcher({ maxBatchSize: 4, maxWaitMs: 1, run: r.run });
    assert.deepEqual(await b.infer([]), []);
    assert.equal(r.batches.length, 0);
    await b.close();
  });

  it('validates its options', () => {
    const run = echoRunner().run;
    assert.throws(() => new DynamicBatcher({ maxBatchSize: 0, maxWaitMs: 1, run }), /maxBatchSize/);
    assert.throws(() => new DynamicBatcher({ maxBatchSize: 1, maxWaitMs: -1, run }), /maxWaitMs/);
  });
});
