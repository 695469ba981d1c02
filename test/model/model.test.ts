import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openModel } from '../../src/model/model.js';
import { CnerError } from '../../src/errors.js';
import { codePoints } from '../../src/pipeline/chunk.js';
import { lexiconFeatures } from '../../src/pipeline/lexicon.js';
import { tagRecord } from '../../src/pipeline/tag.js';
import {
  TABLE_BUNDLE,
  TINY_BERT_BUNDLE,
  TINY_BUNDLE,
  TINY_LEXICON_BUNDLE,
  assertGoldenEntities,
  goldenBertCases,
  goldenCases,
  goldenLexiconCases,
} from './helpers.js';

const TEXT = '患者查ＣＴ示肺炎，服用阿司匹林后头部疼。行切除术后查血常规。';
const EXPECTED = [
  ['EXA', 3, 5, 'ＣＴ'],
  ['DIS', 6, 8, '肺炎'],
  ['DRU', 11, 15, '阿司匹林'],
  ['ANA', 16, 18, '头部'],
  ['OPE', 21, 23, '切除'],
  ['TES', 26, 29, '血常规'],
];

describe('openModel + tagRecord (table bundle)', () => {
  for (const workers of [1, 0]) {
    it(`tags a record end to end with ${workers === 0 ? 'in-process inference' : `${workers} worker`}`, async () => {
      const model = await openModel(TABLE_BUNDLE, { workers, maxWaitMs: 1 });
      try {
        assert.equal(model.version, '0.0.1-test');
        assert.equal(model.provider, 'cpu');
        const entities = await tagRecord(TEXT, model);
        assert.deepEqual(entities.map((e) => [e.code, e.start, e.end, e.text]), EXPECTED);
        for (const e of entities) assert.ok(e.confidence > 0.9, `${e.text}: ${e.confidence}`);
      } finally {
        await model.close();
      }
    });
  }

  it('batches concurrent records and gives each its own entities', async () => {
    const model = await openModel(TABLE_BUNDLE, { workers: 2, maxBatchSize: 8, maxWaitMs: 2 });
    try {
      const texts = Array.from({ length: 40 }, (_, i) => `${'患'.repeat(i % 7)}肺炎${'者'.repeat(i % 5)}头部`);
      const results = await Promise.all(texts.map((t) => tagRecord(t, model)));
      results.forEach((entities, i) => {
        const k = i % 7;
        assert.deepEqual(
          entities.map((e) => [e.code, e.start, e.end]),
          [
            ['DIS', k, k + 2],
            ['ANA', k + 2 + (i % 5), k + 4 + (i % 5)],
          ],
        );
      });
    } finally {
      await model.close();
    }
  });

  it('gives an ambiguous character its posterior as confidence', async () => {
    const model = await openModel(TABLE_BUNDLE, { workers: 0 });
    try {
      // 痛's row wins B-DIS narrowly; with a flat CRF the posterior is a softmax
      // over the tags allowed at a start (O and the B-X): 0.2922 here.
      const [e, ...rest] = await tagRecord('痛', model);
      assert.ok(e !== undefined && rest.length === 0);
      assert.equal(e.code, 'DIS');
      assert.ok(Math.abs(e.confidence - 0.29220084) < 1e-6, String(e.confidence));
    } finally {
      await model.close();
    }
  });

  it('rejects a bad worker count', async () => {
    await assert.rejects(openModel(TABLE_BUNDLE, { workers: -1 }), (e: unknown) => e instanceof CnerError && e.code === 'INVALID_CONFIG');
  });

  for (const [name, maxBatchSize] of [
    ['one chunk per batch', 1],
    ['chunks batched with padding', 32],
  ] as const) {
    it(
      `reproduces the golden entities with the tiny bundle in a worker (${name})`,
      async () => {
        const model = await openModel(TINY_BUNDLE, { workers: 1, maxBatchSize, maxWaitMs: 1 });
        try {
          await assertGoldenEntities(goldenCases(), (text) => tagRecord(text, model));
        } finally {
          await model.close();
        }
      },
    );
  }
});

describe('openModel + tagRecord (tiny lexicon bundle from the Python side)', () => {
  for (const workers of [1, 0]) {
    it(`reproduces the golden entities, features computed here (${workers === 0 ? 'in process' : 'in a worker'}, batched with padding)`, async () => {
      const model = await openModel(TINY_LEXICON_BUNDLE, { workers, maxBatchSize: 8, maxWaitMs: 1 });
      try {
        assert.ok(model.lexicon !== null && model.lexicon !== undefined && model.lexicon.terms > 0);
        await assertGoldenEntities(goldenLexiconCases(), (text) => tagRecord(text, model));
      } finally {
        await model.close();
      }
    });
  }

  it('cannot run a lexicon model without its features', async () => {
    const model = await openModel(TINY_LEXICON_BUNDLE, { workers: 0, maxWaitMs: 0 });
    try {
      await assert.rejects(model.infer([Int32Array.from([7, 8, 9])]), /needs lexicon_features/);
    } finally {
      await model.close();
    }
  });
});

describe('openModel + tagRecord (tiny BERT bundle from the Python side)', () => {
  // [CLS]/[SEP] are placed inside the graph from the attention mask, so padding
  // a short chunk in a batch with long ones must not move its [SEP]: batched and
  // one-by-one runs both reproduce the Python side's unpadded emissions.
  for (const [workers, maxBatchSize] of [[1, 1], [1, 8], [0, 8]] as const) {
    it(`reproduces the golden entities (${workers === 0 ? 'in process' : 'in a worker'}, batches of ${maxBatchSize})`, async () => {
      const model = await openModel(TINY_BERT_BUNDLE, { workers, maxBatchSize, maxWaitMs: 1 });
      try {
        await assertGoldenEntities(goldenBertCases(), (text) => tagRecord(text, model));
      } finally {
        await model.close();
      }
    });
  }

  it('gives the golden emissions through onnxruntime-node within 1e-4', async () => {
    const model = await openModel(TINY_BERT_BUNDLE, { workers: 0, maxWaitMs: 0 });
    try {
      for (const c of goldenBertCases()) {
        const chars = codePoints(c.text);
        for (const [k, [start, end]] of c.chunks.entries()) {
          const features = lexiconFeatures(chars, { start, end }, model.lexicon!);
          const [got] = await model.infer([Int32Array.from(c.input_ids[k]!)], [features]);
          const want = c.emissions[k]!.flat();
          assert.equal(got!.length, want.length);
          want.forEach((v, i) => assert.ok(Math.abs(got![i]! - v) <= 1e-4, `chunk ${k} value ${i}: ${got![i]} vs ${v}`));
        }
      }
    } finally {
      await model.close();
    }
  });
});
