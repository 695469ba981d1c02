import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLeft } from 'fp-ts/lib/Either.js';
import fc from 'fast-check';
import { chunkText, codePoints } from '../../src/pipeline/chunk.js';
import { heldModel, unhandledRejections } from '../helpers.js';
import type { Crf } from '../../src/pipeline/crf.js';
import { SPECIAL_TOKENS, type Vocab, parseVocab } from '../../src/pipeline/encode.js';
import { NUM_TAGS, TAGS } from '../../src/pipeline/labels.js';
import { type TaggingModel, tagChunks, tagRecord } from '../../src/pipeline/tag.js';

const T = NUM_TAGS;
const flatCrf: Crf = { numTags: T, start: new Float64Array(T), end: new Float64Array(T), transitions: new Float64Array(T * T) };

const LEXICON: Record<string, string> = { 肺: 'B-DIS', 炎: 'I-DIS', 头: 'B-ANA', 部: 'I-ANA', c: 'B-EXA', t: 'I-EXA' };
const vocab: Vocab = (() => {
  const v = parseVocab([...SPECIAL_TOKENS, ...Object.keys(LEXICON)].join('\n'));
  if (isLeft(v)) throw new Error('bad test vocab');
  return v.right;
})();
const tagOfId = new Map(Object.entries(LEXICON).map(([ch, tag]) => [vocab.idOf(ch), TAGS.indexOf(tag)]));

/** A model whose emissions favour the lexicon tag of each token (O otherwise); records its calls. */
function tableModel(): TaggingModel & { calls: Int32Array[][] } {
  const calls: Int32Array[][] = [];
  return {
    version: 'test-1',
    vocab,
    crf: flatCrf,
    calls,
    inferEach(sequences) {
      calls.push([...sequences]);
      return sequences.map(async (ids) => {
        const em = new Float32Array(ids.length * T); // [length, tags]
        ids.forEach((id, t) => (em[t * T + (tagOfId.get(id) ?? 0)] = 8));
        return em;
      });
    },
  };
}

describe('tagRecord', () => {
  it('finds entities with code-point offsets and the original text', async () => {
    const text = '😀患者ＣＴ示肺炎，头部正常。';
    const entities = await tagRecord(text, tableModel());
    assert.deepEqual(
      entities.map((e) => [e.code, e.label, e.start, e.end, e.text]),
      [
        ['EXA', '影像检查', 3, 5, 'ＣＴ'], // full-width in the text, normalized to "ct" for the model
        ['DIS', '疾病和诊断', 6, 8, '肺炎'],
        ['ANA', '解剖部位', 9, 11, '头部'],
      ],
    );
    for (const e of entities) assert.ok(e.confidence > 0.99 && e.confidence <= 1);
  });

  it('sends one sequence per chunk and maps later chunks to record offsets', async () => {
    const model = tableModel();
    const text = `${'无'.repeat(127)}。${'无'.repeat(10)}肺炎。`;
    const entities = await tagRecord(text, model);
    assert.equal(model.calls.length, 1);
    assert.deepEqual(model.calls[0]!.map((s) => s.length), [128, 13]);
    assert.deepEqual(entities.map((e) => [e.start, e.end, e.text]), [[138, 140, '肺炎']]);
  });

  it('does not call the model for empty text', async () => {
    const model = tableModel();
    assert.deepEqual(await tagRecord('', model), []);
    assert.equal(model.calls.length, 0);
  });

  it('rejects emissions of the wrong size', async () => {
    const model: TaggingModel = { ...tableModel(), inferEach: (seqs) => seqs.map(async () => new Float32Array(3)) };
    await assert.rejects(tagRecord('肺炎', model), RangeError);
    const missingRow: TaggingModel = { ...tableModel(), inferEach: () => [] };
    await assert.rejects(tagRecord('肺炎', missingRow), /0 rows for 1 chunks/);
  });

  it('returns entities whose text is the original code points at their offsets (random texts and emissions)', async () => {
    const alphabet = ['肺', '炎', '😀', '𠀀', 'Ａ', ' ', '\u3000', '。', '，', '、', '；', 'x'];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...alphabet), { maxLength: 400 }).map((cs) => cs.join('')),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        async (text, seed) => {
          let s = seed;
          const random = (): number => ((s = (s * 48271) % 2147483647) / 2147483647) * 8 - 4;
          const model: TaggingModel = { ...tableModel(), inferEach: (seqs) => seqs.map(async (ids) => Float32Array.from({ length: ids.length * T }, random)) };
          const chars = codePoints(text);
          const entities = await tagRecord(text, model);
          let prevEnd = 0;
          for (const e of entities) {
            assert.equal(e.text, chars.slice(e.start, e.end).join(''));
            assert.ok(e.start >= prevEnd && e.end > e.start && e.end <= chars.length);
            assert.ok(e.confidence >= 0 && e.confidence <= 1);
            prevEnd = e.end;
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('tagChunks', () => {
  const alphabet = ['肺', '炎', '头', '部', 'c', 't', '😀', '。', '，', ' ', 'x'];
  /** Emissions that depend only on the ids and the seed: two models of one seed agree, whatever order they are asked in. */
  const seededModel = (seed: number, order: 'in order' | 'last first'): TaggingModel => ({
    ...tableModel(),
    inferEach(seqs) {
      const rows = seqs.map((ids) => Float32Array.from({ length: ids.length * T }, (_, i) => Math.sin(seed + i * 7 + ids[Math.floor(i / T)]! * 13) * 6));
      // 'last first': each row resolves one turn of the event loop after the row that follows it.
      return rows.map((em, k) => new Promise<Float32Array>((resolve) => setTimeout(() => resolve(em), order === 'in order' ? 0 : rows.length - k)));
    },
  });

  it('gives one promise per chunk, in chunk order, whose entities flattened are tagRecord\'s (random texts, rows resolving in any order)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...alphabet), { maxLength: 600 }).map((cs) => cs.join('')),
        fc.integer(),
        fc.constantFrom('in order' as const, 'last first' as const),
        async (text, seed, order) => {
          const perChunk = await Promise.all(tagChunks(text, seededModel(seed, order)));
          assert.equal(perChunk.length, chunkText(text).length);
          perChunk.forEach((entities, k) => {
            const chunk = chunkText(text)[k]!;
            for (const e of entities) assert.ok(e.start >= chunk.start && e.end <= chunk.end, `entity ${e.start}-${e.end} of chunk ${k}`);
          });
          assert.deepEqual(perChunk.flat(), await tagRecord(text, seededModel(seed, 'in order')));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('resolves a chunk as soon as its row arrives, before later rows', async () => {
    const model = heldModel(tableModel());
    const chunks = tagChunks(`${'无'.repeat(100)}肺炎。${'无'.repeat(100)}头部。`, model);
    assert.equal(chunks.length, 2);
    const done = chunks.map(() => false);
    chunks.forEach((c, k) => void c.then(() => (done[k] = true)));
    await model.release();
    assert.deepEqual(done, [true, false]);
    assert.deepEqual((await chunks[0]!).map((e) => e.text), ['肺炎']);
    await model.release();
    assert.deepEqual((await chunks[1]!).map((e) => [e.start, e.text]), [[203, '头部']]);
  });

  it('fails only the chunks whose rows failed, and leaves no unhandled rejection when the caller stops at the first', async () => {
    const model: TaggingModel = {
      ...tableModel(),
      inferEach: (seqs) => seqs.map(async (ids, k) => (k === 0 ? new Float32Array(ids.length * T) : Promise.reject(new Error(`row ${k} failed`)))),
    };
    const text = `${'无'.repeat(120)}。${'无'.repeat(120)}。${'无'.repeat(120)}。`;
    const unhandled = await unhandledRejections(async () => {
      const chunks = tagChunks(text, model);
      assert.equal(chunks.length, 3);
      assert.deepEqual(await chunks[0], []);
      await assert.rejects(chunks[1]!, /row 1 failed/); // chunks[2] is never awaited
    });
    assert.deepEqual(unhandled, []);
  });
});
