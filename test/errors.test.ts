import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { STREAM_ERROR_CODES, StreamError, describeError, isDeadLetterCode, safeMessage, serializeError } from '../src/errors.js';
import { CnerError } from '../src/pipeline/errors.js';

describe('errors', () => {
  it('retriability is data on the code', () => {
    for (const [code, { retriable }] of Object.entries(STREAM_ERROR_CODES)) {
      assert.equal(new StreamError(code as keyof typeof STREAM_ERROR_CODES, 'x').retriable, retriable);
    }
    assert.equal(new StreamError('REGISTRY_UNAVAILABLE', 'x').retriable, true);
    assert.equal(new StreamError('INTERNAL', 'x').retriable, false);
  });

  it('dead-letter codes are never retriable', () => {
    for (const [code, { retriable, deadLetter }] of Object.entries(STREAM_ERROR_CODES)) if (deadLetter) assert.equal(retriable, false, code);
    assert.ok(isDeadLetterCode('TEXT_TOO_LONG'));
    assert.ok(!isDeadLetterCode('BROKER_UNAVAILABLE'));
    assert.ok(!isDeadLetterCode('toString'));
  });

  it('programmer errors are INTERNAL and never retried', () => {
    assert.deepEqual(describeError(new TypeError('x is not a function')), { code: 'INTERNAL', retriable: false, message: 'TypeError: (message withheld: it may quote record data)' });
    assert.deepEqual(describeError(new CnerError('INFERENCE_FAILED', 'oom')), { code: 'INFERENCE_FAILED', retriable: true, message: 'oom' });
  });

  it('keeps messages of network and Kafka errors only', () => {
    const sys = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9092'), { code: 'ECONNREFUSED', syscall: 'connect' });
    assert.equal(safeMessage(sys), 'connect ECONNREFUSED 127.0.0.1:9092');
    assert.match(safeMessage(new Error('Unexpected token in "patient text"')), /withheld/);
    const s = serializeError(new StreamError('UNKNOWN_SCHEMA', 'schema id 5 is not in the registry', { context: { schemaId: 5 } }));
    assert.deepEqual(s, { type: 'StreamError', message: 'schema id 5 is not in the registry', code: 'UNKNOWN_SCHEMA', retriable: false, context: { schemaId: 5 } });
  });
});
