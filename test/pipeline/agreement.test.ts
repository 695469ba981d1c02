import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { agreementF1 } from '../../src/pipeline/agreement.js';

describe('agreementF1', () => {
  it('is the F1 of one tagging against the other, symmetric', () => {
    assert.equal(agreementF1(3, 4, 5), 6 / 9);
    assert.equal(agreementF1(3, 5, 4), agreementF1(3, 4, 5));
    assert.equal(agreementF1(4, 4, 4), 1);
    assert.equal(agreementF1(0, 2, 3), 0);
  });

  it('is 1 when both found nothing, 0 when only one did', () => {
    assert.equal(agreementF1(0, 0, 0), 1);
    assert.equal(agreementF1(0, 0, 3), 0);
  });

  it('refuses impossible counts', () => {
    assert.throws(() => agreementF1(5, 4, 6), RangeError);
    assert.throws(() => agreementF1(-1, 4, 6), RangeError);
  });
});
