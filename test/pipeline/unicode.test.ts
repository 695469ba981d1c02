import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { codePointLength, firstLoneSurrogate } from '../../src/pipeline/unicode.js';

/** Whether `s` is well-formed UTF-16 (encodeURIComponent throws on a lone surrogate). */
function encodeURIComponentSafe(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

describe('UTF-16 helpers', () => {
  it('find lone surrogates and count code points', () => {
    assert.equal(firstLoneSurrogate('ok😀'), -1);
    assert.equal(firstLoneSurrogate('a\udbff'), 1);
    assert.equal(firstLoneSurrogate('\udc00a'), 0);
    assert.equal(codePointLength('a😀𠀀'), 3);
    assert.equal(codePointLength('\ud800\ud800'), 2);
  });

  it('agree with the platform on any string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        assert.equal(codePointLength(s), [...s].length);
        assert.equal(firstLoneSurrogate(s) === -1, encodeURIComponentSafe(s));
      }),
      { numRuns: 2_000, seed: 11 },
    );
  });
});
