import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CnerError, ERROR_CODES, isCnerError, isErrorCode } from '../../src/pipeline/errors.js';

describe('CnerError', () => {
  it('takes retriable from its code', () => {
    for (const code of Object.keys(ERROR_CODES) as (keyof typeof ERROR_CODES)[]) {
      assert.equal(new CnerError(code, 'x').retriable, ERROR_CODES[code].retriable);
    }
    assert.equal(new CnerError('WORKER_CRASHED', 'x').retriable, true);
    assert.equal(new CnerError('INVALID_RECORD', 'x').retriable, false);
  });

  it('keeps cause and context, and logs its fields as JSON', () => {
    const cause = new Error('disk');
    const e = new CnerError('BUNDLE_NOT_FOUND', 'no bundle', { cause, context: { dir: '/m' } });
    assert.equal(e.cause, cause);
    assert.ok(isCnerError(e));
    assert.ok(e instanceof Error);
    assert.deepEqual(JSON.parse(JSON.stringify(e)), { name: 'CnerError', code: 'BUNDLE_NOT_FOUND', retriable: false, context: { dir: '/m' } });
  });

  it('recognizes codes', () => {
    assert.ok(isErrorCode('INFERENCE_FAILED'));
    assert.ok(!isErrorCode('toString'));
    assert.ok(!isErrorCode(3));
  });
});
