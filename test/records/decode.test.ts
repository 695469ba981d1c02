import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import avsc from 'avsc';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import { AvroReader, frame, loadSchema } from '../../src/records/avro.js';
import { decodeMessage, validateRecord } from '../../src/records/decode.js';
import { CnerError } from '../../src/errors.js';

const emr = loadSchema('EmrRecord');
const SCHEMA_ID = 7;

function reader(schemas: Record<number, string | Error> = { [SCHEMA_ID]: emr.text }) {
  return new AvroReader(emr.type, {
    writerType: async (id) => {
      const s = schemas[id];
      if (s === undefined) throw new CnerError('UNKNOWN_SCHEMA', `schema id ${id} is not in the registry`);
      if (s instanceof Error) throw s;
      return avsc.Type.forSchema(JSON.parse(s) as avsc.Schema);
    },
  });
}

const record = { recordId: 'r1', text: '患者咳嗽三天。', sourceSystem: 'his', timestamp: 1_700_000_000_000, metadata: { dept: '呼吸科' } };
const avro = (r: Record<string, unknown> = record): Buffer => frame(SCHEMA_ID, emr.type.toBuffer(r));
const json = (r: Record<string, unknown>): Buffer => Buffer.from(JSON.stringify(r));
const options = (maxTextLength = 100) => ({ maxTextLength, avro: reader() });

async function failure(value: Buffer | null, opts = options(), key: Buffer | null = Buffer.from('r1')) {
  const d = await decodeMessage(key, value, opts);
  assert.ok(isLeft(d), 'expected a decode failure');
  return d.left;
}

describe('decodeMessage', () => {
  it('decodes Confluent-framed Avro and JSON with the same fields', async () => {
    const a = await decodeMessage(Buffer.from('r1'), avro(), options());
    assert.ok(isRight(a));
    assert.deepEqual(a.right, { record, format: 'avro' });
    const j = await decodeMessage(Buffer.from('r1'), json({ ...record, timestamp: '2023-11-14T22:13:20Z' }), options());
    assert.ok(isRight(j));
    assert.deepEqual(j.right, { record, format: 'json' });
  });

  it('reads Avro written with an older writer schema (schema resolution, defaults)', async () => {
    const old = JSON.parse(emr.text) as { fields: { name: string }[] };
    old.fields = old.fields.filter((f) => f.name !== 'metadata');
    const oldType = avsc.Type.forSchema(old as never);
    const value = frame(3, oldType.toBuffer({ recordId: 'r1', text: '发热。', sourceSystem: 's', timestamp: 5 }));
    const d = await decodeMessage(null, value, { maxTextLength: 100, avro: reader({ 3: JSON.stringify(old) }) });
    assert.ok(isRight(d));
    assert.equal(d.right.record.metadata, null);
  });

  it('uses the key when a JSON value has no recordId', async () => {
    const d = await decodeMessage(Buffer.from('from-key'), json({ text: '头痛。', sourceSystem: 's', timestamp: 1 }), options());
    assert.ok(isRight(d));
    assert.equal(d.right.record.recordId, 'from-key');
  });

  it('UNDECODABLE_VALUE: empty, not UTF-8, not JSON, not an object, truncated Avro', async () => {
    assert.equal((await failure(null)).code, 'UNDECODABLE_VALUE');
    assert.equal((await failure(Buffer.alloc(0))).code, 'UNDECODABLE_VALUE');
    assert.equal((await failure(Buffer.from([0xff, 0xfe, 0x41]))).code, 'UNDECODABLE_VALUE');
    assert.equal((await failure(Buffer.from('{"text": "abc'))).code, 'UNDECODABLE_VALUE');
    assert.equal((await failure(Buffer.from('[1,2]'))).code, 'UNDECODABLE_VALUE');
    assert.equal((await failure(avro().subarray(0, 12))).code, 'UNDECODABLE_VALUE');
    assert.equal((await failure(Buffer.from([0, 0, 0]))).code, 'UNDECODABLE_VALUE');
    const trailing = await failure(Buffer.concat([avro(), Buffer.from([1, 2, 3])]));
    assert.equal(trailing.code, 'UNDECODABLE_VALUE');
  });

  it('UNKNOWN_SCHEMA and INCOMPATIBLE_SCHEMA come from the writer schema', async () => {
    assert.equal((await failure(frame(99, emr.type.toBuffer(record)))).code, 'UNKNOWN_SCHEMA');
    const other = JSON.stringify({ type: 'record', name: 'Other', fields: [{ name: 'x', type: 'int' }] });
    const f = await failure(frame(5, Buffer.from([2])), { maxTextLength: 100, avro: reader({ 5: other }) });
    assert.equal(f.code, 'INCOMPATIBLE_SCHEMA');
  });

  it('throws (not a dead letter) when the registry is unavailable', async () => {
    const opts = { maxTextLength: 100, avro: reader({ [SCHEMA_ID]: new CnerError('REGISTRY_UNAVAILABLE', 'down') }) };
    await assert.rejects(decodeMessage(null, avro(), opts), (e: unknown) => e instanceof CnerError && e.code === 'REGISTRY_UNAVAILABLE');
  });

  it('MISSING_TEXT, TEXT_TOO_LONG, INVALID_UTF16, INVALID_RECORD', async () => {
    assert.equal((await failure(json({ ...record, text: undefined }))).code, 'MISSING_TEXT');
    assert.equal((await failure(json({ ...record, text: null }))).code, 'MISSING_TEXT');
    assert.equal((await failure(avro({ ...record, text: '' }))).code, 'MISSING_TEXT');
    const long = await failure(json({ ...record, text: '痛'.repeat(11) }), options(10));
    assert.equal(long.code, 'TEXT_TOO_LONG');
    assert.match(long.message, /has 11 code points, more than CNER_MAX_TEXT_LENGTH=10/);
    // code points, not UTF-16 units: 10 astral characters are 20 units but fit
    assert.ok(isRight(await decodeMessage(null, json({ ...record, text: '𠀀'.repeat(10) }), options(10))));
    const lone = await failure(json({ ...record, text: 'ab\ud800c' }));
    assert.equal(lone.code, 'INVALID_UTF16');
    assert.match(lone.message, /lone surrogate at code point 2/);
    assert.equal((await failure(json({ ...record, timestamp: 'yesterday' }))).code, 'INVALID_RECORD');
    assert.equal((await failure(json({ ...record, metadata: { a: 1 } }))).code, 'INVALID_RECORD');
    assert.equal((await failure(json({ ...record, recordId: undefined }), options(), null)).code, 'INVALID_RECORD');
  });

  it('collects every field problem; the code follows a fixed priority', () => {
    const r = validateRecord({ recordId: 5, text: '', sourceSystem: 3, timestamp: -1, metadata: [] }, null, 10);
    assert.ok(isLeft(r));
    assert.deepEqual(
      r.left.map((i) => i.field),
      ['recordId', 'text', 'sourceSystem', 'timestamp', 'metadata'],
    );
  });

  it('never quotes the text in a failure message', async () => {
    const canary = 'CANARY-病历原文';
    const cases = [
      Buffer.from(`{"recordId":"x","text":"${canary}`),
      json({ ...record, text: `${canary}${'x'.repeat(200)}` }),
      json({ ...record, text: `${canary}\udc00` }),
      json({ ...record, text: canary, timestamp: canary }),
      avro({ ...record, text: canary }).subarray(0, 20),
      frame(12345, emr.type.toBuffer({ ...record, text: canary })),
    ];
    for (const value of cases) {
      const f = await failure(value);
      assert.doesNotMatch(f.message, /CANARY|病历原文/, f.message);
    }
  });
});
