import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import avro from 'avsc';
import { EventEncoder, frame, isAvroFramed, loadSchema, unframe } from '../../src/records/avro.js';
import { CnerError } from '../../src/errors.js';
import { ENTITY_TYPES } from '../../src/pipeline/labels.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

/** Earlier versions of the published schemas, kept to prove each change compatible. */
const HISTORY = path.join(PACKAGE_ROOT, 'schemas', 'history');

interface Field {
  readonly name: string;
  readonly doc?: string;
  readonly default?: unknown;
  readonly type: unknown;
}

function fields(schema: { fields: Field[] }): Field[] {
  const out: Field[] = [];
  for (const f of schema.fields) {
    out.push(f);
    const t = f.type as { type?: string; items?: { fields?: Field[] } };
    if (t.type === 'array' && t.items?.fields) out.push(...fields(t.items as { fields: Field[] }));
  }
  return out;
}

describe('schemas', () => {
  for (const name of ['EmrRecord', 'ClinicalEntities'] as const) {
    it(`${name}.avsc: namespace health.cner, every field documented`, () => {
      const schema = JSON.parse(loadSchema(name).text) as { namespace: string; doc: string; fields: Field[] };
      assert.equal(schema.namespace, 'health.cner');
      assert.ok(schema.doc.length > 0);
      for (const f of fields(schema)) assert.ok(f.doc !== undefined && f.doc.length > 0, `${name}.${f.name} has a doc`);
    });
  }

  it('EmrRecord: recordId, text, sourceSystem, timestamp-millis, optional metadata with a default', () => {
    const schema = JSON.parse(loadSchema('EmrRecord').text) as { fields: Field[] };
    assert.deepEqual(schema.fields.map((f) => f.name), ['recordId', 'text', 'sourceSystem', 'timestamp', 'metadata']);
    assert.deepEqual(schema.fields[3]!.type, { type: 'long', logicalType: 'timestamp-millis' });
    assert.equal(schema.fields[4]!.default, null);
  });

  it('ClinicalEntities: the entity types are the contract codes, in order', () => {
    const schema = JSON.parse(loadSchema('ClinicalEntities').text) as { fields: Field[] };
    const entity = (schema.fields[3]!.type as { items: { fields: Field[] } }).items;
    const type = entity.fields[0]!.type as { symbols: string[] };
    assert.deepEqual(type.symbols, ENTITY_TYPES.map((t) => t.code));
    assert.deepEqual(entity.fields.map((f) => f.name), ['type', 'label', 'start', 'end', 'text', 'confidence', 'codes']);
  });

  it('ClinicalEntities evolves compatibly both ways: today\'s reader reads every earlier version\'s events, and an earlier reader reads today\'s', () => {
    const now = loadSchema('ClinicalEntities').type;
    const history = readdirSync(HISTORY).filter((f) => f.startsWith('ClinicalEntities.')).sort();
    assert.ok(history.length >= 1);
    const linked = {
      recordId: 'r', modelVersion: 'v2', processedAt: 1, linkerVersion: 'link-1',
      entities: [{ type: 'DIS', label: '疾病和诊断', start: 0, end: 4, text: '右肺MT', confidence: 0.9, codes: [{ system: 'ICD-10-BJ-v601', code: 'C34.900', name: '肺恶性肿瘤', score: 0.93 }] }],
    };
    for (const file of history) {
      const old = avro.Type.forSchema(JSON.parse(readFileSync(path.join(HISTORY, file), 'utf8')) as avro.Schema);
      const written = { recordId: 'r', modelVersion: 'v1', processedAt: 1, entities: [{ type: 'DIS', label: '疾病和诊断', start: 0, end: 2, text: '肺癌', confidence: 0.5 }] };
      const read = now.fromBuffer(old.toBuffer(written), now.createResolver(old)) as { linkerVersion: unknown; entities: { codes: unknown }[] };
      assert.equal(read.linkerVersion, null, `${file} → today: default linkerVersion`);
      assert.deepEqual(read.entities[0]!.codes, [], `${file} → today: default codes`);
      const back = old.fromBuffer(now.toBuffer(linked), old.createResolver(now)) as { entities: Record<string, unknown>[] };
      assert.equal(back.entities[0]!['text'], '右肺MT', `today → ${file}`);
      assert.equal(back.entities[0]!['codes'], undefined, `today → ${file}: the new field is skipped`);
    }
  });
});

describe('Confluent wire format', () => {
  it('frames and unframes: magic byte 0, 4-byte big-endian schema id', () => {
    const f = frame(0x01020304, Buffer.from([9, 8]));
    assert.deepEqual([...f], [0, 1, 2, 3, 4, 9, 8]);
    assert.deepEqual(unframe(f), { schemaId: 0x01020304, payload: Buffer.from([9, 8]) });
    assert.equal(unframe(Buffer.from([0, 1, 2])), null);
    assert.equal(isAvroFramed(Buffer.from('{')), false);
    assert.equal(isAvroFramed(f), true);
  });
});

describe('EventEncoder', () => {
  const out = loadSchema('ClinicalEntities');
  it('encodes an event that round-trips', () => {
    const event = {
      recordId: 'r', modelVersion: 'v1', processedAt: 1, linkerVersion: null,
      entities: [{ type: 'DRU', label: '药物', start: 0, end: 2, text: '阿司', confidence: 0.5, codes: [] }, { type: 'DIS', label: '疾病和诊断', start: 3, end: 5, text: '肺癌', confidence: 0.7, codes: [{ system: 'ICD-10-BJ-v601', code: 'C34.900', name: '肺恶性肿瘤', score: 0.9 }] }],
    };
    const buf = new EventEncoder(out.type, 3).encode(event as never);
    assert.deepEqual(JSON.parse(JSON.stringify(out.type.fromBuffer(unframe(buf)!.payload))), event);
  });

  it('reports invalid events by path, without quoting values', () => {
    const bad = { recordId: 'r', modelVersion: 'v1', processedAt: 1, linkerVersion: null, entities: [{ type: 'XXX', label: '药物', start: 0, end: 2, text: 'SECRET-TEXT', confidence: 0.5, codes: [] }] };
    assert.throws(
      () => new EventEncoder(out.type, 3).encode(bad as never),
      (e: unknown) => e instanceof CnerError && e.code === 'PROCESSING_FAILED' && /entities\.0\.type/.test(e.message) && !/SECRET/.test(e.message),
    );
  });
});
