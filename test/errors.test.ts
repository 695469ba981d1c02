import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CnerError, ERROR_CODES, type ErrorCode, describeError, isCnerError, isDeadLetterCode, isErrorCode, safeMessage, serializeError } from '../src/errors.js';

describe('errors', () => {
  it('the retry scope is data on the code; retriable means slice or session', () => {
    for (const [code, { retry }] of Object.entries(ERROR_CODES)) {
      assert.equal(new CnerError(code as ErrorCode, 'x').retriable, retry === 'slice' || retry === 'session', code);
      assert.equal(describeError(new CnerError(code as ErrorCode, 'x')).retry, retry);
    }
    assert.equal(ERROR_CODES.PRODUCER_FENCED.retry, 'slice');
    assert.equal(ERROR_CODES.BROKER_UNAVAILABLE.retry, 'session');
    assert.equal(describeError(new TypeError('bug')).retry, 'none');
    assert.equal(new CnerError('REGISTRY_UNAVAILABLE', 'x').retriable, true);
    assert.equal(new CnerError('WORKER_CRASHED', 'x').retriable, true);
    assert.equal(new CnerError('INTERNAL', 'x').retriable, false);
    assert.equal(new CnerError('INVALID_RECORD', 'x').retriable, false);
  });

  it('dead-letter codes are exactly the record-scoped ones, never retriable', () => {
    for (const [code, { retry }] of Object.entries(ERROR_CODES)) {
      assert.equal(isDeadLetterCode(code), retry === 'record', code);
      if (retry === 'record') assert.equal(new CnerError(code as ErrorCode, 'x').retriable, false, code);
    }
    assert.ok(isDeadLetterCode('TEXT_TOO_LONG'));
    assert.ok(isDeadLetterCode('INVALID_RECORD'));
    assert.ok(!isDeadLetterCode('BROKER_UNAVAILABLE'));
    assert.ok(!isDeadLetterCode('INFERENCE_FAILED'));
    assert.ok(!isDeadLetterCode('toString'));
  });

  it('recognizes codes', () => {
    assert.ok(isErrorCode('INFERENCE_FAILED'));
    assert.ok(isErrorCode('PRODUCER_FENCED'));
    assert.ok(!isErrorCode('toString'));
    assert.ok(!isErrorCode(3));
  });

  it('keeps cause and context, and logs its fields as JSON', () => {
    const cause = new Error('disk');
    const e = new CnerError('BUNDLE_NOT_FOUND', 'no bundle', { cause, context: { dir: '/m' } });
    assert.equal(e.cause, cause);
    assert.ok(isCnerError(e));
    assert.ok(e instanceof Error);
    assert.deepEqual(JSON.parse(JSON.stringify(e)), { name: 'CnerError', code: 'BUNDLE_NOT_FOUND', retriable: false, context: { dir: '/m' } });
  });

  it('programmer errors are INTERNAL and never retried', () => {
    assert.deepEqual(describeError(new TypeError('x is not a function')), { code: 'INTERNAL', retriable: false, retry: 'none', message: 'TypeError: (message withheld: it may quote record data)' });
    assert.deepEqual(describeError(new CnerError('INFERENCE_FAILED', 'oom')), { code: 'INFERENCE_FAILED', retriable: true, retry: 'slice', message: 'oom' });
  });

  it('keeps messages of network and Kafka errors only', () => {
    const sys = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9092'), { code: 'ECONNREFUSED', syscall: 'connect' });
    assert.equal(safeMessage(sys), 'connect ECONNREFUSED 127.0.0.1:9092');
    assert.match(safeMessage(new Error('Unexpected token in "patient text"')), /withheld/);
    const s = serializeError(new CnerError('UNKNOWN_SCHEMA', 'schema id 5 is not in the registry', { context: { schemaId: 5 } }));
    assert.deepEqual(s, { type: 'CnerError', message: 'schema id 5 is not in the registry', code: 'UNKNOWN_SCHEMA', retriable: false, context: { schemaId: 5 } });
  });
});
