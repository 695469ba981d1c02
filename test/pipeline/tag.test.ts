import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLeft } from 'fp-ts/lib/Either.js';
import fc from 'fast-check';
import { codePoints } from '../../src/pipeline/chunk.js';
import type { Crf } from '../../src/pipeline/crf.js';
import { SPECIAL_TOKENS, type Vocab, parseVocab } from '../../src/pipeline/encode.js';
import { NUM_TAGS, TAGS } from '../../src/pipeline/labels.js';
import { type TaggingModel, tagRecord } from '../../src/pipeline/tag.js';

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
    async infer(sequences) {
      calls.push([...sequences]);
      return sequences.map((ids) => {
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
    const model: TaggingModel = { ...tableModel(), infer: async (seqs) => seqs.map(() => new Float32Array(3)) };
    await assert.rejects(tagRecord('肺炎', model), RangeError);
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
          const model: TaggingModel = {
            ...tableModel(),
            infer: async (seqs) => seqs.map((ids) => Float32Array.from({ length: ids.length * T }, random)),
          };
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
