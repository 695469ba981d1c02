import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import avro from 'avsc';
import { MAX_DEPTH, avroBoundsProblem } from '../../src/records/avro-bounds.js';
import { loadSchema } from '../../src/records/avro.js';
import { avroVarint } from '../helpers.js';

const emr = loadSchema('EmrRecord').type;

const varint = avroVarint;

const str = (s: string | Buffer): Buffer => {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([varint(b.length), b]);
};

/** recordId, text, sourceSystem, timestamp, then the metadata union. */
const head = (text: Buffer | string = 'x'): Buffer => Buffer.concat([str('r1'), str(text), str('s'), varint(0)]);

describe('avroBoundsProblem', () => {
  it('accepts every well-formed value (random values of several schemas)', () => {
    const schemas: avro.Type[] = [
      emr,
      avro.Type.forSchema({
        type: 'record',
        name: 'W',
        fields: [
          { name: 'a', type: { type: 'array', items: ['null', 'int', 'string', { type: 'fixed', name: 'F', size: 3 }] } },
          { name: 'b', type: { type: 'map', values: { type: 'array', items: 'double' } } },
          { name: 'c', type: { type: 'enum', name: 'E', symbols: ['X', 'Y', 'Z'] } },
          { name: 'd', type: ['null', 'bytes', 'float', 'boolean', 'long'] },
        ],
      }),
    ];
    for (const type of schemas) {
      for (let i = 0; i < 500; i++) assert.equal(avroBoundsProblem(type, type.toBuffer(type.random())), null);
    }
    // Blocks written with byte sizes (negative counts), as some writers do.
    const arrays = avro.Type.forSchema({ type: 'array', items: 'string' });
    const sized = Buffer.concat([varint(-2), varint(5), str('a'), str('bc'), varint(0)]);
    assert.deepEqual(arrays.fromBuffer(sized), ['a', 'bc']);
    assert.equal(avroBoundsProblem(arrays, sized), null);
  });

  it('rejects the 19-byte EmrRecord whose metadata map declares 2^40 entries, at once', () => {
    const value = Buffer.concat([head(''), varint(1), varint(2 ** 40), str(''), str('')]);
    assert.ok(value.length < 20);
    const t = performance.now();
    assert.match(avroBoundsProblem(emr, value) ?? '', /a map at byte \d+ declares a block of 1099511627776 entries but only \d+ bytes remain/);
    assert.ok(performance.now() - t < 50);
  });

  it('rejects lengths longer than what remains, negative lengths and sizes, and over-long varints', () => {
    assert.match(avroBoundsProblem(emr, Buffer.concat([str('r'), varint(2 ** 40)])) ?? '', /a string at byte \d+ needs 1099511627776 bytes but only 0 remain/);
    assert.match(avroBoundsProblem(emr, Buffer.concat([str('r'), varint(-3)])) ?? '', /negative length/);
    assert.match(avroBoundsProblem(emr, Buffer.concat([str('r'), Buffer.alloc(11, 0xff)])) ?? '', /longer than 10 bytes/);
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(), varint(1), varint(-1), varint(-5), str('k'), str('v'), varint(0)])) ?? '', /negative length/);
  });

  it('rejects a block byte size other than the size of its entries (avsc skips unread fields by it)', () => {
    const arrays = avro.Type.forSchema({ type: 'array', items: 'string' });
    assert.match(avroBoundsProblem(arrays, Buffer.concat([varint(-2), varint(4), str('a'), str('bc'), varint(0)])) ?? '', /declares a block of 4 bytes but its entries take 5/);
  });

  it('rejects union and enum indexes that do not exist', () => {
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(), varint(2)])) ?? '', /union branch 2 at byte \d+ does not exist \(the writer schema has 2\)/);
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(), varint(-1)])) ?? '', /union branch -1/);
    const e = avro.Type.forSchema({ type: 'enum', name: 'E', symbols: ['A'] });
    assert.match(avroBoundsProblem(e, varint(1)) ?? '', /enum index 1 at byte 0 does not exist/);
  });

  it('rejects more array items than the value has bytes (items of a zero-width type)', () => {
    const nulls = avro.Type.forSchema({ type: 'array', items: 'null' });
    assert.equal(avroBoundsProblem(nulls, Buffer.concat([varint(1), varint(0)])), null, 'one null in 2 bytes');
    assert.match(avroBoundsProblem(nulls, Buffer.concat([varint(2), varint(0)])) ?? '', /declares a block of 2 entries but only 1 bytes remain/);
    // Each block fits what remains, but together they declare far more than the bytes.
    const many = Buffer.concat([...Array.from({ length: 40 }, () => varint(60)), Buffer.alloc(60), varint(0)]);
    assert.match(avroBoundsProblem(nulls, many) ?? '', /more entries than it has bytes/);
  });

  it('rejects nesting deeper than MAX_DEPTH (a recursive schema) instead of overflowing the stack', () => {
    const list = avro.Type.forSchema({ type: 'record', name: 'L', fields: [{ name: 'next', type: ['null', 'L'] }] });
    assert.equal(avroBoundsProblem(list, Buffer.concat([Buffer.alloc(50, 2), varint(0)])), null);
    assert.match(avroBoundsProblem(list, Buffer.concat([Buffer.alloc(100_000, 2), varint(0)])) ?? '', new RegExp(`deeper than ${MAX_DEPTH}`));
  });

  it('rejects strings (text, ids, map keys and values) that are not valid UTF-8, and bytes left over', () => {
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(Buffer.from([0xe6, 0x82, 0x28])), varint(0)])) ?? '', /string at byte 3 is not valid UTF-8/);
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(), varint(1), varint(1), str(Buffer.from([0xc0, 0x80])), str('v'), varint(0)])) ?? '', /not valid UTF-8/, 'an overlong encoding');
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(), varint(1), varint(1), str('k'), str(Buffer.from([0xed, 0xa0, 0x80])), varint(0)])) ?? '', /not valid UTF-8/, 'an encoded surrogate');
    assert.equal(avroBoundsProblem(emr, Buffer.concat([head('患者'), varint(0)])), null);
    assert.match(avroBoundsProblem(emr, Buffer.concat([head(), varint(0), Buffer.from([1, 2])])) ?? '', /2 bytes left over/);
  });
});
