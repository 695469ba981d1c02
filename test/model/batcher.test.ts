import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { DynamicBatcher } from '../../src/model/batcher.js';
import type { PackedBatch } from '../../src/pipeline/encode.js';
import { CnerError } from '../../src/errors.js';
import { unhandledRejections } from '../helpers.js';

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

/** A runner of zero emissions whose `call`-th run (from 1) fails when `fails(call)`, saying which. */
function failingRunner(fails: (call: number) => boolean): (b: PackedBatch) => Promise<Float32Array> {
  let calls = 0;
  return async (b) => {
    if (fails(++calls)) throw new CnerError('INFERENCE_FAILED', `batch ${calls} failed`);
    return new Float32Array(b.batch * b.seq * T);
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
    const b = new DynamicBatcher({ maxBatchSize: 2, maxWaitMs: 5, run: failingRunner((call) => call === 1) });
    const first = [b.infer([ids(1)]), b.infer([ids(2)])];
    for (const p of first) await assert.rejects(p, /batch 1 failed/);
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

  describe('inferEach', () => {
    it('gives the same rows as infer, in order', async () => {
      const b = new DynamicBatcher({ maxBatchSize: 2, maxWaitMs: 5, run: echoRunner().run });
      const seqs = [5, 100, 6, 90, 7].map((n) => Int32Array.from({ length: n }, (_, t) => n * 1000 + t));
      const each = await Promise.all(b.inferEach(seqs));
      assert.deepEqual(each.map(firstColumn), (await b.infer(seqs)).map(firstColumn));
      assert.deepEqual(each.map(firstColumn), seqs.map((s) => Array.from(s)));
      await b.close();
    });

    it('resolves each row when its own batch is done, before later batches', async () => {
      const gates: (() => void)[] = [];
      const started: number[][] = [];
      const r = echoRunner();
      const b = new DynamicBatcher({
        maxBatchSize: 2,
        maxWaitMs: 10_000,
        run: async (p) => {
          started.push(Array.from(p.lengths));
          await new Promise<void>((open) => gates.push(open)); // each batch runs when the test says
          return r.run(p);
        },
      });
      const rows = b.inferEach([9, 2, 8, 3].map((n) => new Int32Array(n).fill(n)));
      const done = rows.map(() => false);
      rows.forEach((row, k) => void row.then(() => (done[k] = true)));
      await new Promise((resolve) => setImmediate(resolve)); // the full batches go out
      assert.deepEqual(started, [[9, 8], [3, 2]]);
      gates[0]!();
      await Promise.all([rows[0], rows[2]]);
      assert.deepEqual(done, [true, false, true, false]);
      gates[1]!();
      assert.deepEqual((await Promise.all(rows)).map((em) => em.length / T), [9, 2, 8, 3]);
      await b.close();
    });

    it('rejects the rows of a failed batch only, and a caller that stops at the first leaves no unhandled rejection', async () => {
      const b = new DynamicBatcher({ maxBatchSize: 1, maxWaitMs: 5, run: failingRunner((call) => call > 1) });
      const unhandled = await unhandledRejections(async () => {
        const rows = b.inferEach([ids(1, 1, 1), ids(2, 2), ids(3)]); // three batches, the last two fail
        assert.equal((await rows[0]!).length, 3 * T);
        await assert.rejects(rows[1]!, /batch 2 failed/); // rows[2] is never awaited
        await b.close();
      });
      assert.deepEqual(unhandled, []);
    });

    it('rejects every row once closed (MODEL_CLOSED), or with a RangeError for features of another count, never throwing', async () => {
      const b = new DynamicBatcher({ maxBatchSize: 4, maxWaitMs: 1, run: echoRunner().run });
      const unhandled = await unhandledRejections(async () => {
        const mismatched = b.inferEach([ids(1), ids(2)], [new Uint8Array(24)]);
        assert.equal(mismatched.length, 2);
        await assert.rejects(mismatched[0]!, RangeError); // mismatched[1] is never awaited
        await b.close();
        const closed = b.inferEach([ids(1), ids(2)]);
        assert.equal(closed.length, 2);
        await assert.rejects(closed[1]!, (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED'); // closed[0] is never awaited
      });
      assert.deepEqual(unhandled, []);
      assert.deepEqual(b.inferEach([]), []);
      await assert.rejects(b.infer([]), (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED');
    });
  });

  it('validates its options', () => {
    const run = echoRunner().run;
    assert.throws(() => new DynamicBatcher({ maxBatchSize: 0, maxWaitMs: 1, run }), /maxBatchSize/);
    assert.throws(() => new DynamicBatcher({ maxBatchSize: 1, maxWaitMs: -1, run }), /maxWaitMs/);
  });
});
