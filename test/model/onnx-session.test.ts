import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createSession } from '../../src/model/onnx-session.js';
import { CnerError } from '../../src/errors.js';
import { packBatch } from '../../src/pipeline/encode.js';
import { TABLE_BUNDLE, TINY_BUNDLE, expectedEmissions, goldenCases } from './helpers.js';

const MODEL = path.join(TABLE_BUNDLE, 'model.onnx');
const cpu = { executionProviders: ['cpu'] as const, intraOpThreads: 1, graphOptimizationLevel: 'all' as const };

describe('createSession (lexicon model)', () => {
  it('returns emissions [batch, seq, 13] equal to the embedding rows, zero on padding', async () => {
    const session = await createSession(MODEL, cpu);
    try {
      assert.equal(session.provider, 'cpu');
      for (const [batch, seq] of [
        [1, 1],
        [2, 3],
        [5, 128],
      ] as const) {
        const ids = BigInt64Array.from({ length: batch * seq }, (_, k) => BigInt((k * 7) % 30));
        const mask = BigInt64Array.from({ length: batch * seq }, (_, k) => (k % seq < seq - (k % 2) ? 1n : 0n));
        const { emissions, dims } = await session.run({ inputIds: ids, attentionMask: mask, lexiconFeatures: null, batch, seq });
        assert.deepEqual(dims, [batch, seq, 13]);
        assert.deepEqual(emissions, expectedEmissions(ids, mask));
        assert.equal(emissions.byteOffset, 0);
        assert.equal(emissions.byteLength, emissions.buffer.byteLength); // transferable as a whole
      }
    } finally {
      await session.release();
    }
  });

  it('falls back to CPU when an accelerator provider cannot load, saying why', async () => {
    const session = await createSession(MODEL, { ...cpu, executionProviders: ['cuda', 'cpu'] });
    try {
      assert.equal(session.provider, 'cpu');
      // Without the CUDA libraries (ONNXRUNTIME_NODE_INSTALL=cuda12) the CUDA attempt fails.
      if (session.fallbacks.length > 0) assert.equal(session.fallbacks[0]!.provider, 'cuda');
    } finally {
      await session.release();
    }
  });

  it('reports an unloadable model as MODEL_LOAD_FAILED', async () => {
    await assert.rejects(createSession(path.join(TABLE_BUNDLE, 'vocab.txt'), cpu), (e: unknown) => e instanceof CnerError && e.code === 'MODEL_LOAD_FAILED');
  });

  it('rejects inputs that do not match the stated shape', async () => {
    const session = await createSession(MODEL, cpu);
    try {
      await assert.rejects(session.run({ inputIds: new BigInt64Array(3), attentionMask: new BigInt64Array(3), lexiconFeatures: null, batch: 2, seq: 2 }), RangeError);
      assert.equal(session.lexiconFeatures, false);
      const features = new Float32Array(4 * 24);
      await assert.rejects(
        session.run({ inputIds: new BigInt64Array(4), attentionMask: new BigInt64Array(4).fill(1n), lexiconFeatures: features, batch: 2, seq: 2 }),
        /has no lexicon_features input/,
      );
    } finally {
      await session.release();
    }
  });
});

describe('createSession (tiny random ALBERT bundle from the Python side)', () => {
  const cases = goldenCases();
  const chunks = cases.flatMap((c) => c.input_ids.map((ids, k) => ({ ids: Int32Array.from(ids), want: c.emissions[k]!.flat() })));
  const maxDiff = (got: Float32Array, want: number[]): number => {
    assert.equal(got.length, want.length);
    let worst = 0;
    got.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - want[i]!))));
    return worst;
  };

  it('reproduces the golden emissions within 1e-4, chunk by chunk', async () => {
    const session = await createSession(path.join(TINY_BUNDLE, 'model.onnx'), cpu);
    try {
      for (const [k, { ids, want }] of chunks.entries()) {
        const p = packBatch([ids]);
        const { emissions, dims } = await session.run(p);
        assert.deepEqual(dims, [1, ids.length, 13]);
        const worst = maxDiff(emissions, want);
        assert.ok(worst <= 1e-4, `chunk ${k}: max |Δ| ${worst}`);
      }
    } finally {
      await session.release();
    }
  });

  it('reproduces them in one padded batch (padding must not change real positions)', async () => {
    const session = await createSession(path.join(TINY_BUNDLE, 'model.onnx'), cpu);
    try {
      const p = packBatch(chunks.map((c) => c.ids));
      const { emissions } = await session.run(p);
      chunks.forEach(({ want }, b) => {
        const worst = maxDiff(emissions.subarray(b * p.seq * 13, b * p.seq * 13 + want.length), want);
        assert.ok(worst <= 1e-4, `chunk ${b} in a batch of ${p.batch}×${p.seq}: max |Δ| ${worst}`);
      });
    } finally {
      await session.release();
    }
  });
});
