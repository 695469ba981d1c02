import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createWorkerPool, workerExecArgv } from '../../src/model/worker-pool.js';
import { packBatch } from '../../src/pipeline/encode.js';
import { CnerError } from '../../src/errors.js';
import { TABLE_BUNDLE, expectedEmissions } from './helpers.js';

const MODEL = path.join(TABLE_BUNDLE, 'model.onnx');
const session = { executionProviders: ['cpu'] as const, intraOpThreads: 1, graphOptimizationLevel: 'all' as const };

const randomRows = (n: number, maxLen: number, seed: number): Int32Array[] =>
  Array.from({ length: n }, (_, i) => Int32Array.from({ length: 1 + ((i * 37 + seed) % maxLen) }, (_, t) => (i + t + seed) % 30));

describe('worker pool (lexicon model, onnxruntime in worker threads)', () => {
  it('runs many batches on several workers concurrently with the right results', async () => {
    const pool = await createWorkerPool({ kind: 'tagger', modelPath: MODEL, size: 2, session });
    try {
      assert.equal(pool.size, 2);
      assert.equal(pool.provider, 'cpu');
      const batches = Array.from({ length: 24 }, (_, k) => packBatch(randomRows(1 + (k % 5), 40, k)));
      const expected = batches.map((b) => expectedEmissions(b.inputIds, b.attentionMask));
      const results = await Promise.all(batches.map((b) => pool.run(b)));
      results.forEach((out, k) => assert.deepEqual(out, { kind: 'emissions', emissions: expected[k], dims: [batches[k]!.batch, batches[k]!.seq, 13] }));
      // The inputs were transferred to the workers, not copied.
      assert.equal(batches[0]!.inputIds.length, 0);
      assert.equal(batches[0]!.attentionMask.length, 0);
    } finally {
      await pool.close();
    }
  });

  it('finishes queued work on close and refuses work afterwards', async () => {
    const pool = await createWorkerPool({ kind: 'tagger', modelPath: MODEL, size: 1, session });
    const runs = Array.from({ length: 5 }, (_, k) => pool.run(packBatch(randomRows(3, 20, k))));
    await pool.close();
    assert.equal((await Promise.all(runs)).length, 5);
    await assert.rejects(pool.run(packBatch(randomRows(1, 5, 0))), (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED');
  });

  it('fails to start with MODEL_LOAD_FAILED when the model cannot load', async () => {
    await assert.rejects(
      createWorkerPool({ kind: 'tagger', modelPath: path.join(TABLE_BUNDLE, 'vocab.txt'), size: 2, session }),
      (e: unknown) => e instanceof CnerError && e.code === 'MODEL_LOAD_FAILED',
    );
  });

  it('fails the batch of a crashed worker as retriable WORKER_CRASHED and replaces the worker', async () => {
    const pool = await createWorkerPool({ kind: 'tagger', modelPath: MODEL, size: 1, session, workerUrl: new URL('./fixtures/crashing-worker.ts', import.meta.url) });
    try {
      const crash = pool.run(packBatch([new Int32Array(7)])); // seq 7 kills the worker
      await assert.rejects(crash, (e: unknown) => e instanceof CnerError && e.code === 'WORKER_CRASHED' && e.retriable);
      const out = await pool.run(packBatch([new Int32Array(3)]));
      assert.equal(out.kind === 'emissions' ? out.emissions.length : -1, 3 * 13);
      assert.equal(pool.size, 1);
    } finally {
      await pool.close();
    }
  });

  it('rejects a bad size', async () => {
    await assert.rejects(createWorkerPool({ kind: 'tagger', modelPath: MODEL, size: 0, session }), /size must be an integer >= 1/);
  });

  it("drops the parent's entry options from the workers' Node options", () => {
    assert.deepEqual(workerExecArgv(['--input-type=module', '-e', 'code', '--enable-source-maps']), ['--enable-source-maps']);
    assert.deepEqual(workerExecArgv(['--input-type', 'module', '--print', 'x', '--max-old-space-size=512']), ['--max-old-space-size=512']);
    assert.deepEqual(workerExecArgv(['--eval=1', '--conditions=dev']), ['--conditions=dev']);
  });
});
