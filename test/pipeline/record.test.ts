import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import { codePointLength, decodeRecord, firstLoneSurrogate, invalidRecordError, parseRecord } from '../../src/pipeline/record.js';

const ok = { id: 'r-1', text: '患者头痛。', source: 'emr', timestamp: 1_700_000_000_000 };

const issues = (json: unknown, limits?: Parameters<typeof decodeRecord>[1]): string[] => {
  const r = decodeRecord(json, limits);
  assert.ok(isLeft(r), 'expected a validation failure');
  return r.left.map((i) => `${i.field} ${i.problem}`);
};

describe('decodeRecord', () => {
  it('accepts a valid record', () => {
    const r = decodeRecord(ok);
    assert.ok(isRight(r));
    assert.deepEqual(r.right, ok);
  });

  it('treats source and timestamp as optional and reads ISO timestamps', () => {
    const r = decodeRecord({ id: 'a', text: 'x', timestamp: '2024-01-02T03:04:05.678Z' });
    assert.ok(isRight(r));
    assert.deepEqual(r.right, { id: 'a', text: 'x', source: null, timestamp: Date.UTC(2024, 0, 2, 3, 4, 5, 678) });
  });

  it('rejects missing, non-string and empty text', () => {
    assert.deepEqual(issues({ id: 'a' }), ['text is missing']);
    assert.deepEqual(issues({ id: 'a', text: 3 }), ['text must be a string']);
    assert.deepEqual(issues({ id: 'a', text: '' }), ['text must not be empty']);
  });

  it('measures the length limit in code points', () => {
    const limits = { maxTextLength: 3, maxIdLength: 10 };
    assert.ok(isRight(decodeRecord({ id: 'a', text: '😀😀😀' }, limits))); // 6 UTF-16 units, 3 code points
    assert.deepEqual(issues({ id: 'a', text: '😀😀😀😀' }, limits), ['text has 4 code points, more than the limit of 3']);
  });

  it('rejects lone surrogates and says where, without quoting the text', () => {
    for (const text of ['ab\ud800', '\udc00ab', 'a\udc00\ud800b', '😀\ud83d']) {
      const [problem] = issues({ id: 'a', text });
      assert.match(problem!, /^text is not well-formed UTF-16: lone surrogate at code point \d+$/);
    }
    assert.deepEqual(issues({ id: 'a', text: '😀\ud83d' }), ['text is not well-formed UTF-16: lone surrogate at code point 1']);
  });

  it('collects every problem at once', () => {
    assert.deepEqual(issues({ id: '', text: '', source: 5, timestamp: 'yesterday' }), [
      'id must not be empty',
      'text must not be empty',
      'source must be a string or null',
      'timestamp must be an ISO-8601 date-time with a time zone',
    ]);
    assert.deepEqual(issues({ text: 'x', timestamp: -1 }), ['id must be a string', 'timestamp must be non-negative epoch milliseconds']);
  });

  it('rejects non-objects', () => {
    assert.deepEqual(issues(null), ['$ must be a JSON object']);
    assert.deepEqual(issues([ok]), ['$ must be a JSON object']);
  });
});

describe('parseRecord', () => {
  it('parses JSON, including escaped lone surrogates', () => {
    assert.ok(isRight(parseRecord(JSON.stringify(ok))));
    assert.ok(isLeft(parseRecord('{"id":"a","text":"\\ud800"}')));
    const bad = parseRecord('{"id":');
    assert.ok(isLeft(bad));
    assert.equal(bad.left[0].problem, 'is not valid JSON');
  });
});

describe('invalidRecordError', () => {
  it('is a non-retriable INVALID_RECORD carrying the issues and no text', () => {
    const secret = '患者张三头痛';
    const r = decodeRecord({ id: 'a', text: `${secret}\ud800` });
    assert.ok(isLeft(r));
    const e = invalidRecordError(r.left, { offset: 7 });
    assert.equal(e.code, 'INVALID_RECORD');
    assert.equal(e.retriable, false);
    assert.deepEqual(e.context['offset'], 7);
    assert.ok(!JSON.stringify({ ...e, message: e.message }).includes(secret));
  });
});

describe('UTF-16 helpers', () => {
  it('find lone surrogates and count code points', () => {
    assert.equal(firstLoneSurrogate('ok😀'), -1);
    assert.equal(firstLoneSurrogate('a\udbff'), 1);
    assert.equal(codePointLength('a😀𠀀'), 3);
    assert.equal(codePointLength('\ud800\ud800'), 2);
  });
});
