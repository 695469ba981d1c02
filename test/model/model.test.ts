import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BUNDLE_LINKER, NO_LINKER, openLinkerOf, openModel } from '../../src/model/model.js';
import { openLinker } from '../../src/model/linker.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { TINY, TINY_LINKER, TINY_RERANKED_LINKER, withLinker } from './variants.js';
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

describe('openModel with a linker (CNER_LINKER_DIR)', () => {
  const DIAGNOSIS = '胃癌伴幽门梗阻';
  const INLINE = { workers: 0, maxWaitMs: 0, linkerOptions: { workers: 0 } } as const;
  const expected = async (dir: string): Promise<unknown> => {
    const linker = await openLinker(dir, { workers: 0 });
    try {
      return (await linker.link([DIAGNOSIS]))[0];
    } finally {
      await linker.close();
    }
  };

  it('bundle: opens the linker the bundle carries, links as that linker does, and closes it with the model', async () => {
    const model = await openModel(await withLinker('with-linker'), { ...INLINE, linker: BUNDLE_LINKER });
    const linker = model.linker!;
    assert.equal(linker.version, 'tiny-linker-0');
    assert.deepEqual((await linker.link([DIAGNOSIS]))[0], await expected(TINY_LINKER));
    await model.close();
    await assert.rejects(linker.link(['肺炎']), (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED');
  });

  it('bundle without a linker, or none: no linker', async () => {
    for (const [dir, linker] of [[TINY, BUNDLE_LINKER], [await withLinker('with-linker'), NO_LINKER]] as const) {
      const model = await openModel(dir, { ...INLINE, linker });
      assert.equal(model.linker, null);
      await model.close();
    }
    const model = await openModel(await withLinker('with-linker'), INLINE); // the default: none
    assert.equal(model.linker, null);
    await model.close();
  });

  it('a linker directory serves every model, whatever it carries; a shared one is not closed with a model', async () => {
    const model = await openModel(await withLinker('with-linker'), { ...INLINE, linker: { kind: 'dir', dir: TINY_RERANKED_LINKER } });
    assert.equal(model.linker!.version, 'tiny-reranked-linker-0');
    await model.close();
    const shared = await openLinker(TINY_LINKER, { workers: 0 });
    try {
      for (const dir of [TINY, await withLinker('other')]) {
        const m = await openModel(dir, { ...INLINE, linker: { kind: 'shared', linker: shared } });
        assert.equal(m.linker, shared);
        await m.close();
      }
      assert.deepEqual((await shared.link([DIAGNOSIS]))[0], await expected(TINY_LINKER), 'still open');
    } finally {
      await shared.close();
    }
  });

  it('refuses a carried linker that differs from the tagger\'s manifest (version, a file it does not list)', async () => {
    const edit = async (linker: string, f: (m: { files: Record<string, string>; linker: { version: string } }) => void): Promise<string> => {
      const dir = await withLinker('with-linker', linker);
      const file = path.join(dir, 'manifest.json');
      const m = JSON.parse(await readFile(file, 'utf8')) as { files: Record<string, string>; linker: { version: string } };
      f(m);
      await writeFile(file, JSON.stringify(m));
      return dir;
    };
    const version = await edit(TINY_LINKER, (m) => void (m.linker.version = 'tiny-linker-9'));
    await assert.rejects(openModel(version, { ...INLINE, linker: BUNDLE_LINKER }), (e: unknown) => e instanceof CnerError && e.code === 'BUNDLE_INVALID' && /linker entry tiny-linker-9/.test(e.message));
    const unlisted = await edit(TINY_RERANKED_LINKER, (m) => delete m.files['linker/reranker.onnx']);
    await assert.rejects(openModel(unlisted, { ...INLINE, linker: BUNDLE_LINKER }), (e: unknown) => e instanceof CnerError && e.code === 'BUNDLE_INVALID' && /linker\/reranker\.onnx is not listed in manifest\.json/.test(e.message));
  });

  it('openLinkerOf (cner link): the linker the source names for a model bundle', async () => {
    const attached = await withLinker('with-linker');
    const carried = await openLinkerOf(BUNDLE_LINKER, attached, { workers: 0 });
    assert.equal(carried!.version, 'tiny-linker-0');
    await carried!.close();
    assert.equal(await openLinkerOf(BUNDLE_LINKER, TINY, { workers: 0 }), null);
    assert.equal(await openLinkerOf(NO_LINKER, attached, { workers: 0 }), null);
    const own = await openLinkerOf({ kind: 'dir', dir: TINY_RERANKED_LINKER }, attached, { workers: 0 });
    assert.equal(own!.version, 'tiny-reranked-linker-0');
    await own!.close();
  });

  const python = path.join(PACKAGE_ROOT, '.venv', 'bin', 'python');
  it('opens a bundle written by cner-train link-attach', { skip: existsSync(python) ? false : 'no .venv (scripts/setup.sh)' }, async () => {
    const out = path.join(await mkdtemp(path.join(tmpdir(), 'cner-attached-')), 'b');
    execFileSync(python, ['-m', 'cner_train.cli', 'link-attach', TINY, '--linker', TINY_RERANKED_LINKER, '--out', out], { stdio: 'pipe', env: { ...process.env, PYTHONPATH: path.join(PACKAGE_ROOT, 'training', 'src') } });
    const model = await openModel(out, { ...INLINE, linker: BUNDLE_LINKER });
    try {
      assert.equal(model.version, 'tiny-0+tiny-reranked-linker-0');
      assert.equal(model.linker!.version, 'tiny-reranked-linker-0');
      assert.deepEqual((await model.linker!.link([DIAGNOSIS]))[0], await expected(TINY_RERANKED_LINKER));
    } finally {
      await model.close();
    }
  });
});
