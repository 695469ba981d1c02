import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { codePoints } from '../../src/pipeline/chunk.js';
import { TAGS } from '../../src/pipeline/labels.js';
import { spansFromTags, toEntity } from '../../src/pipeline/spans.js';

const tags = (...names: string[]): number[] => names.map((n) => TAGS.indexOf(n));
const read = (...names: string[]): [number, number, number][] => spansFromTags(tags(...names)).map((s) => [s.start, s.end, s.typeIndex]);

describe('spansFromTags (strict IOB2)', () => {
  it('reads B-X followed by I-X as one span, end exclusive', () => {
    assert.deepEqual(read('O', 'B-DIS', 'I-DIS', 'I-DIS', 'O'), [[1, 4, 0]]);
  });

  it('closes a span that runs to the end', () => {
    assert.deepEqual(read('B-ANA', 'I-ANA'), [[0, 2, 5]]);
    assert.deepEqual(read('O', 'B-DRU'), [[1, 2, 4]]);
  });

  it('ignores a stray I-X (no B, or after another type)', () => {
    assert.deepEqual(read('I-DIS', 'I-DIS', 'O'), []);
    assert.deepEqual(read('B-DIS', 'I-ANA', 'I-ANA'), [[0, 1, 0]]);
    assert.deepEqual(read('O', 'I-TES', 'B-TES'), [[2, 3, 2]]);
  });

  it('starts a new span at every B', () => {
    assert.deepEqual(read('B-OPE', 'B-OPE', 'I-OPE', 'B-EXA'), [
      [0, 1, 3],
      [1, 3, 3],
      [3, 4, 1],
    ]);
  });

  it('reads only the first `length` tags', () => {
    assert.deepEqual(
      spansFromTags(Uint8Array.from(tags('B-DIS', 'I-DIS', 'I-DIS')), 2).map((s) => [s.start, s.end]),
      [[0, 2]],
    );
  });
});

describe('toEntity', () => {
  it('moves a chunk span to record offsets and takes the original code points', () => {
    const chars = codePoints('😀患者ＣＴ示𠀀肺炎');
    const e = toEntity(chars, 3, { start: 0, end: 2, typeIndex: 1 }, 0.5);
    assert.deepEqual(e, { code: 'EXA', label: '影像检查', start: 3, end: 5, text: 'ＣＴ', confidence: 0.5 });
    assert.equal(toEntity(chars, 6, { start: 0, end: 3, typeIndex: 0 }, 1).text, '𠀀肺炎');
  });
});
