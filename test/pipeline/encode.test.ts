import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import fc from 'fast-check';
import { chunkText, codePoints } from '../../src/pipeline/chunk.js';
import {
  PAD_ID,
  SPACE_ID,
  SPECIAL_TOKENS,
  UNK_ID,
  type Vocab,
  encodeChunk,
  normalizeChar,
  packBatch,
  parseVocab,
  planBatches,
  splitEmissions,
  tokenId,
} from '../../src/pipeline/encode.js';

const vocabOf = (tokens: readonly string[]): Vocab => {
  const v = parseVocab([...SPECIAL_TOKENS, ...tokens].join('\n') + '\n');
  if (isLeft(v)) throw new Error(v.left.join('; '));
  return v.right;
};

describe('normalizeChar', () => {
  it('maps every contract whitespace to U+0020', () => {
    for (const ws of ['\u0020', '\u0009', '\u000a', '\u000d', '\u000b', '\u000c', '\u00a0', '\u3000']) assert.equal(normalizeChar(ws), ' ');
  });

  it('leaves other Unicode spaces and separators alone', () => {
    for (const ch of ['\u0085', '\u2028', '\u2029', '\u2003', '\u200b', '\u1680', '\ufeff']) assert.equal(normalizeChar(ch), ch);
  });

  it('maps full-width ASCII forms (U+FF01..U+FF5E) to ASCII', () => {
    assert.equal(normalizeChar('！'), '!');
    assert.equal(normalizeChar('０'), '0');
    assert.equal(normalizeChar('～'), '~');
    assert.equal(normalizeChar('ｂ'), 'b');
    assert.equal(normalizeChar('（'), '(');
    assert.equal(normalizeChar('，'), ','); // U+FF0C is in the range
    assert.equal(normalizeChar('\uff00'), '\uff00'); // just outside
    assert.equal(normalizeChar('\uff5f'), '\uff5f');
    assert.equal(normalizeChar('ｰ'), 'ｰ'); // half-width katakana: not ASCII forms
  });

  it('lower-cases A–Z only, after the full-width mapping', () => {
    assert.equal(normalizeChar('A'), 'a');
    assert.equal(normalizeChar('Z'), 'z');
    assert.equal(normalizeChar('Ａ'), 'a');
    assert.equal(normalizeChar('Ｚ'), 'z');
    assert.equal(normalizeChar('É'), 'É');
    assert.equal(normalizeChar('Ω'), 'Ω');
  });

  it('keeps CJK, punctuation outside the range, and astral characters', () => {
    for (const ch of ['肺', '。', '、', '😀', '𠀀', 'é']) assert.equal(normalizeChar(ch), ch);
  });

  it('maps every code point to exactly one code point', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }).map((s) => codePoints(s)[0]!), (ch) => {
        assert.equal(codePoints(normalizeChar(ch)).length, 1);
      }),
      { numRuns: 300 },
    );
  });
});

describe('parseVocab', () => {
  it('numbers tokens by line and looks up normalized characters', () => {
    const v = vocabOf(['肺', 'a', '!']);
    assert.equal(v.size, 9);
    assert.equal(v.idOf('[PAD]'), PAD_ID);
    assert.equal(v.idOf('肺'), 6);
    assert.equal(v.idOf('a'), 7);
    assert.equal(v.idOf('不在'), UNK_ID);
  });

  it('splits on \\n only, so U+2028 and U+0085 can be tokens', () => {
    const v = vocabOf(['\u2028', '\u0085', 'x']);
    assert.equal(v.idOf('\u2028'), 6);
    assert.equal(v.idOf('\u0085'), 7);
    assert.equal(v.idOf('x'), 8);
  });

  it('collects every problem: wrong specials, duplicates, empty lines', () => {
    const v = parseVocab(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[SPC]', 'a', '', 'a'].join('\n'));
    assert.ok(isLeft(v));
    assert.equal(v.left.length, 3);
    assert.match(v.left[0]!, /line 6 must be \[SPACE\]/);
    assert.match(v.left.join('\n'), /line 8 is empty/);
    assert.match(v.left.join('\n'), /line 9 repeats token "a" \(first on line 7\)/);
  });

  it('accepts a file without a trailing newline', () => {
    assert.ok(isRight(parseVocab([...SPECIAL_TOKENS, 'x'].join('\n'))));
  });
});

describe('tokenId / encodeChunk', () => {
  const v = vocabOf(['肺', 'a', 'b', '!', '0']);

  it('looks whitespace up as [SPACE] and unknown characters as [UNK]', () => {
    assert.equal(tokenId(' ', v), SPACE_ID);
    assert.equal(tokenId('\u3000', v), SPACE_ID);
    assert.equal(tokenId('\n', v), SPACE_ID);
    assert.equal(tokenId('炎', v), UNK_ID);
    assert.equal(tokenId('😀', v), UNK_ID);
  });

  it('normalizes before the lookup', () => {
    assert.equal(tokenId('A', v), v.idOf('a'));
    assert.equal(tokenId('Ａ', v), v.idOf('a'));
    assert.equal(tokenId('！', v), v.idOf('!'));
    assert.equal(tokenId('０', v), v.idOf('0'));
  });

  it('encodes one id per code point of the chunk', () => {
    const chars = codePoints('😀肺Ａ　b');
    assert.deepEqual(Array.from(encodeChunk(chars, { start: 0, end: 5 }, v)), [UNK_ID, 6, 7, SPACE_ID, 8]);
    assert.deepEqual(Array.from(encodeChunk(chars, { start: 1, end: 3 }, v)), [6, 7]);
  });

  it('gives chunks of the same lengths as the chunker', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 500 }), (text) => {
        const chars = codePoints(text);
        for (const c of chunkText(text)) assert.equal(encodeChunk(chars, c, v).length, c.end - c.start);
      }),
      { numRuns: 100 },
    );
  });
});

describe('packBatch / planBatches / splitEmissions', () => {
  it('right-pads with [PAD] and masks the padding', () => {
    const p = packBatch([Int32Array.of(7, 8, 9), Int32Array.of(5)]);
    assert.equal(p.batch, 2);
    assert.equal(p.seq, 3);
    assert.deepEqual(Array.from(p.inputIds), [7n, 8n, 9n, 5n, 0n, 0n]);
    assert.deepEqual(Array.from(p.attentionMask), [1n, 1n, 1n, 1n, 0n, 0n]);
    assert.deepEqual(Array.from(p.lengths), [3, 1]);
  });

  it('groups longest first into batches of at most maxBatchSize', () => {
    assert.deepEqual(planBatches([5, 100, 6, 90, 7], 2), [[1, 3], [4, 2], [0]]);
    assert.deepEqual(planBatches([], 4), []);
    assert.throws(() => planBatches([1], 0), RangeError);
  });

  it('plans every index exactly once, each batch sorted by length', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 128 }), { maxLength: 100 }), fc.integer({ min: 1, max: 16 }), (lengths, size) => {
        const plan = planBatches(lengths, size);
        assert.deepEqual(plan.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
        for (const g of plan) assert.ok(g.length >= 1 && g.length <= size);
        const flat = plan.flat().map((i) => lengths[i]!);
        for (let k = 1; k < flat.length; k++) assert.ok(flat[k - 1]! >= flat[k]!);
      }),
      { numRuns: 100 },
    );
  });

  it('splits emissions [batch, seq, tags] into views cut to each row length', () => {
    const p = packBatch([Int32Array.of(1, 1), Int32Array.of(1)]);
    const em = Float32Array.from({ length: 2 * 2 * 3 }, (_, i) => i); // tags = 3 here
    const rows = splitEmissions(em, p, 3);
    assert.deepEqual(Array.from(rows[0]!), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(Array.from(rows[1]!), [6, 7, 8]);
    assert.equal(rows[1]!.buffer, em.buffer); // a view, not a copy
    assert.throws(() => splitEmissions(new Float32Array(5), p, 3), RangeError);
  });
});
