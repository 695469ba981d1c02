import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DLT_HEADERS, deadLetterMessage, fitDeadLetter, readDeadLetterHeaders, traceHeaders } from '../../src/stream/dead-letter.js';
import { BATCH_OVERHEAD_BYTES, lastHeader, recordBytes } from '../../src/kafka/port.js';
import { message } from '../helpers.js';

describe('deadLetterMessage', () => {
  it('keeps key, value and headers and adds Spring-style headers with Spring\'s encodings', () => {
    const original = message(7, 1234567890123, Buffer.from([1, 2, 3]), { topic: 'emr.records.raw', timestamp: 1700000000000, headers: { traceparent: Buffer.from('tp'), a: Buffer.from('b') } });
    const m = deadLetterMessage(original, { code: 'TEXT_TOO_LONG', message: 'invalid record: text has 9 code points' }, 'emr.records.raw.DLT', 'cner');
    assert.equal(m.topic, 'emr.records.raw.DLT');
    assert.equal(m.key, original.key);
    assert.equal(m.value, original.value);
    assert.equal(m.headers['traceparent']?.toString(), 'tp');
    assert.equal(m.headers['a']?.toString(), 'b');
    assert.equal(m.headers[DLT_HEADERS.originalTopic]?.toString(), 'emr.records.raw');
    assert.deepEqual([...m.headers[DLT_HEADERS.originalPartition]!], [0, 0, 0, 7]);
    assert.equal(lastHeader(m.headers, DLT_HEADERS.originalOffset)!.readBigInt64BE(0), 1234567890123n);
    assert.equal(lastHeader(m.headers, DLT_HEADERS.originalTimestamp)!.readBigInt64BE(0), 1700000000000n);
    assert.equal(m.headers[DLT_HEADERS.originalConsumerGroup]?.toString(), 'cner');
    assert.equal(m.headers[DLT_HEADERS.exceptionFqcn]?.toString(), 'health.cner.DeadLetter');
    assert.equal(m.headers[DLT_HEADERS.exceptionMessage]?.toString(), 'TEXT_TOO_LONG: invalid record: text has 9 code points');
    assert.equal(m.headers[DLT_HEADERS.errorCode]?.toString(), 'TEXT_TOO_LONG');
    assert.deepEqual(readDeadLetterHeaders(m.headers), {
      originalTopic: 'emr.records.raw',
      originalPartition: 7,
      originalOffset: '1234567890123',
      errorCode: 'TEXT_TOO_LONG',
      message: 'TEXT_TOO_LONG: invalid record: text has 9 code points',
    });
  });

  it('keeps every value of a repeated header and null values, in order', () => {
    const headers = { seen: [Buffer.from('a'), null, Buffer.from('c')], empty: null };
    const m = deadLetterMessage(message(0, 1, Buffer.from('x'), { headers }), { code: 'UNDECODABLE_VALUE', message: 'value is empty' }, 'in.DLT', 'g');
    assert.deepEqual(m.headers['seen'], headers.seen);
    assert.equal(m.headers['empty'], null);
    assert.equal(lastHeader(m.headers, 'seen')?.toString(), 'c', 'lastHeader: the last non-null value');
    assert.equal(lastHeader(m.headers, 'empty'), undefined);
  });

  it('fits a dead letter into max.message.bytes: value cut, original size in a header; headers dropped when even they do not fit', () => {
    const original = message(0, 5, Buffer.alloc(5_000, 1), { headers: { 'x-a': Buffer.from('a') } });
    const letter = deadLetterMessage(original, { code: 'UNDECODABLE_VALUE', message: 'm' }, 'in.DLT', 'g');
    assert.equal(fitDeadLetter(letter, 1_048_588), letter, 'unchanged when it fits');
    const fitted = fitDeadLetter(letter, 1_000);
    assert.ok(recordBytes(fitted) <= 1_000 - BATCH_OVERHEAD_BYTES);
    assert.ok(fitted.value!.length > 0 && fitted.value!.length < 5_000);
    assert.equal(lastHeader(fitted.headers, DLT_HEADERS.valueTruncated)?.toString(), '5000');
    assert.equal(lastHeader(fitted.headers, 'x-a')?.toString(), 'a');
    const bare = fitDeadLetter(deadLetterMessage(message(0, 5, Buffer.alloc(10), { headers: { 'x-big': Buffer.alloc(3_000) } }), { code: 'UNDECODABLE_VALUE', message: 'm' }, 'in.DLT', 'g'), 1_000);
    assert.equal(bare.headers['x-big'], undefined);
    assert.equal(lastHeader(bare.headers, DLT_HEADERS.headersDropped)?.toString(), 'true');
    assert.equal(readDeadLetterHeaders(bare.headers)?.errorCode, 'UNDECODABLE_VALUE', 'our headers stay');
    assert.ok(recordBytes(bare) <= 1_000 - BATCH_OVERHEAD_BYTES);
  });

  it('reads nothing from a message without the headers', () => {
    assert.equal(readDeadLetterHeaders({}), null);
  });
});

describe('traceHeaders', () => {
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  it('carries a valid traceparent and its tracestate, nothing else', () => {
    assert.deepEqual(traceHeaders({ traceparent: Buffer.from(tp), tracestate: Buffer.from('k=v'), other: Buffer.from('x') }), {
      traceparent: Buffer.from(tp),
      tracestate: Buffer.from('k=v'),
    });
  });
  it('drops a malformed traceparent (and then its tracestate)', () => {
    assert.deepEqual(traceHeaders({ traceparent: Buffer.from('garbage'), tracestate: Buffer.from('k=v') }), {});
    assert.deepEqual(traceHeaders({}), {});
    assert.deepEqual(traceHeaders({ traceparent: null }), {}, 'a null traceparent is no trace context');
  });
});
