import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import { constrain, parseCrf } from '../../src/pipeline/crf.js';
import { NUM_TAGS, TAGS, isAllowedTransition } from '../../src/pipeline/labels.js';

const T = NUM_TAGS;
const zeros = (n: number): number[] => new Array<number>(n).fill(0);
const matrix = (f: (i: number, j: number) => number): number[][] => Array.from({ length: T }, (_, i) => Array.from({ length: T }, (_, j) => f(i, j)));

describe('parseCrf', () => {
  it('reads start, end and row-major transitions[from][to]', () => {
    const crf = parseCrf({ start: zeros(T).map((_, i) => i), end: zeros(T), transitions: matrix((i, j) => 100 * i + j) });
    assert.ok(isRight(crf));
    assert.equal(crf.right.start[3], 3);
    assert.equal(crf.right.transitions[2 * T + 5], 205);
  });

  it('collects every shape and value problem', () => {
    const crf = parseCrf({ start: zeros(12), end: [...zeros(12), 'x'], transitions: [...matrix(() => 0).slice(1), [Number.NaN]] });
    assert.ok(isLeft(crf));
    const text = crf.left.join('\n');
    assert.match(text, /start must be an array of 13 numbers/);
    assert.match(text, /end\[12\] must be a finite number/);
    assert.match(text, /transitions\[12\] must be an array of 13 numbers/);
    assert.ok(isLeft(parseCrf([1, 2])));
    assert.ok(isLeft(parseCrf({ start: zeros(T), end: zeros(T) })));
  });
});

describe('constrain', () => {
  it('sets exactly the forbidden BIO moves to −∞ and keeps the trained scores', () => {
    const crf = parseCrf({ start: zeros(T).fill(1), end: zeros(T).fill(2), transitions: matrix((i, j) => i - j) });
    assert.ok(isRight(crf));
    const c = constrain(crf.right);
    TAGS.forEach((to, j) => {
      assert.equal(c.start[j], to.startsWith('I-') ? -Infinity : 1);
      assert.equal(c.end[j], 2);
      for (let i = 0; i < T; i++) {
        const expected = isAllowedTransition(i, j) ? i - j : -Infinity;
        assert.equal(c.transitions[i * T + j], expected);
        assert.equal(c.transitionsByTarget[j * T + i], expected);
      }
    });
    assert.equal(crf.right.start[2], 1, 'the input is not modified');
  });
});
