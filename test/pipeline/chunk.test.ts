import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_CHUNK_LEN, WHITESPACE, chunkCodePoints, chunkText, codePoints } from '../../src/pipeline/chunk.js';

const spans = (text: string, maxLen?: number): [number, number][] => chunkText(text, maxLen).map((c) => [c.start, c.end]);

describe('chunkText', () => {
  it('returns no chunks for empty text', () => {
    assert.deepEqual(spans(''), []);
  });

  it('keeps a short text whole', () => {
    assert.deepEqual(spans('患者头痛。'), [[0, 5]]);
  });

  it('packs whole sentences while the chunk stays within the limit', () => {
    const a = `${'甲'.repeat(99)}。`; // 100
    const b = `${'乙'.repeat(27)}。`; // 28 → 128 together
    const c = '丙。'; // 2 → would make 130
    assert.deepEqual(spans(a + b + c), [
      [0, 128],
      [128, 130],
    ]);
  });

  it('keeps the period with its sentence', () => {
    assert.deepEqual(spans('甲甲。乙乙。', 3), [
      [0, 3],
      [3, 6],
    ]);
  });

  it('cuts an over-long sentence after the strongest boundary tier in the window', () => {
    // Window 1 holds '；' (60) and a later '，' (101): '；' wins. Window 2 holds '，' (101)
    // and '；' (162): '；' wins again. Picking the last boundary of any kind would give [0, 102).
    const s = `${'甲'.repeat(60)}；${'乙'.repeat(40)}，${'丙'.repeat(60)}；${'丁'.repeat(100)}`;
    assert.deepEqual(spans(s), [
      [0, 61],
      [61, 163],
      [163, 263],
    ]);
  });

  it('uses the last boundary of the winning tier inside the window', () => {
    const s = `${'甲'.repeat(20)}，${'乙'.repeat(20)}，${'丙'.repeat(150)}`;
    assert.deepEqual(spans(s)[0], [0, 42]);
  });

  it('falls through the tiers: ； then ， then 、 then whitespace', () => {
    const body = (sep: string): string => `${'甲'.repeat(30)}${sep}${'乙'.repeat(200)}`;
    for (const sep of ['；', '，', '、', ' ', '\u3000', '\u00a0', '\t', '\n', '\r', '\u000b', '\u000c']) {
      assert.deepEqual(spans(body(sep))[0], [0, 31], `separator U+${sep.codePointAt(0)!.toString(16)}`);
    }
  });

  it('does not treat other Unicode spaces as whitespace', () => {
    for (const sep of ['\u0085', '\u2028', '\u2003', '\u200b', '\ufeff']) {
      assert.deepEqual(spans(`${'甲'.repeat(30)}${sep}${'乙'.repeat(200)}`)[0], [0, 128]);
    }
  });

  it('ignores a boundary just outside the window', () => {
    const s = `${'甲'.repeat(128)}，${'乙'.repeat(10)}`; // '，' at index 128
    assert.deepEqual(spans(s), [
      [0, 128],
      [128, 139],
    ]);
  });

  it('cuts right after a boundary at the last position of the window', () => {
    const s = `${'甲'.repeat(127)}，${'乙'.repeat(10)}`; // '，' at index 127
    assert.deepEqual(spans(s), [
      [0, 128],
      [128, 138],
    ]);
  });

  it('hard-cuts at the limit when there is no boundary', () => {
    assert.deepEqual(spans('甲'.repeat(300)), [
      [0, 128],
      [128, 256],
      [256, 300],
    ]);
  });

  it('counts astral-plane characters as one code point each', () => {
    const emoji = '😀'.repeat(130);
    assert.deepEqual(spans(emoji), [
      [0, 128],
      [128, 130],
    ]);
    assert.deepEqual(spans('𠀀𠀁。𠀂'), [[0, 4]]);
  });

  it('packs the pieces of a long sentence greedily with what follows', () => {
    // The sentence is cut at '，' (index 100); the 50-code-point rest joins the next short sentence.
    const s = `${'甲'.repeat(100)}，${'乙'.repeat(49)}。丙丙。`;
    assert.deepEqual(spans(s), [
      [0, 101],
      [101, 154],
    ]);
  });

  it('rejects a bad limit', () => {
    assert.throws(() => chunkText('abc', 0), RangeError);
  });
});

const alphabet = ['甲', '乙', 'a', 'Ｚ', '😀', '𠀀', '。', '，', '；', '、', ' ', '\u3000', '\n', '\t', '\u00a0'];
const textArb = fc.array(fc.constantFrom(...alphabet), { maxLength: 600 }).map((cs) => cs.join(''));
const mixedTextArb = fc.oneof(textArb, fc.string({ unit: 'grapheme', maxLength: 400 }), fc.string({ unit: 'binary', maxLength: 300 }));

describe('chunkText properties', () => {
  it('covers the text exactly with contiguous chunks of 1..128 code points', () => {
    fc.assert(
      fc.property(mixedTextArb, (text) => {
        const n = codePoints(text).length;
        const chunks = chunkText(text);
        if (n === 0) return chunks.length === 0;
        assert.equal(chunks[0]!.start, 0);
        assert.equal(chunks.at(-1)!.end, n);
        chunks.forEach((c, k) => {
          assert.ok(c.end - c.start >= 1 && c.end - c.start <= MAX_CHUNK_LEN, `chunk ${k} has ${c.end - c.start} code points`);
          if (k > 0) assert.equal(c.start, chunks[k - 1]!.end);
        });
        return true;
      }),
      { numRuns: 300 },
    );
  });

  it('holds for small limits too', () => {
    fc.assert(
      fc.property(textArb, fc.integer({ min: 1, max: 20 }), (text, maxLen) => {
        const chars = codePoints(text);
        const chunks = chunkCodePoints(chars, maxLen);
        assert.equal(chunks.map((c) => chars.slice(c.start, c.end).join('')).join(''), text);
        for (const c of chunks) assert.ok(c.end - c.start <= maxLen && c.end > c.start);
      }),
      { numRuns: 200 },
    );
  });

  it('ends every chunk but the last after 。, a secondary boundary, or at a hard cut of a full window', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        const chars = codePoints(text);
        const chunks = chunkCodePoints(chars);
        for (const c of chunks.slice(0, -1)) {
          const last = chars[c.end - 1]!;
          const atBoundary = '。；，、'.includes(last) || WHITESPACE.has(last);
          assert.ok(atBoundary || c.end - c.start === MAX_CHUNK_LEN, `chunk [${c.start}, ${c.end}) ends in ${JSON.stringify(last)}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('keeps a text of at most 128 code points without 。 in one chunk', () => {
    fc.assert(
      fc.property(textArb, (text) => {
        const chars = codePoints(text).filter((c) => c !== '。').slice(0, MAX_CHUNK_LEN);
        const chunks = chunkCodePoints(chars);
        assert.equal(chunks.length, chars.length === 0 ? 0 : 1);
      }),
      { numRuns: 100 },
    );
  });
});
