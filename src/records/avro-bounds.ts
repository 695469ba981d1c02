// A bound on the work of decoding one Avro value, checked before avsc decodes
// it. avsc trusts what the bytes declare: a 19-byte EmrRecord whose metadata
// map declares 2^40 entries makes it loop for hours on the event loop
// (heartbeats and /livez stop, the partition moves to the next pod, which
// freezes too). So the value is first walked along its writer schema, reading
// only lengths, counts and indexes, and rejected at the first declaration the
// bytes cannot back:
//
//   - a string, bytes or fixed longer than the bytes that remain;
//   - an array or map block whose count exceeds the bytes that remain, and
//     more array items and map entries in the whole value than it has bytes
//     (only items of a zero-width type, null or an empty record, take no
//     byte; a value made of them is the attack, not data);
//   - a block byte size (a negative count's) other than its entries' size;
//   - a union or enum index out of range, a varint longer than 10 bytes,
//     nesting deeper than MAX_DEPTH, bytes left over at the end;
//   - a string that is not valid UTF-8 (avsc would read it as U+FFFD, so a
//     record would be tagged with text it does not contain; JSON input with
//     invalid UTF-8 is dead-lettered the same way).
//
// The walk is linear in the size of the value, and after it avsc's own
// decoding is too. Messages name positions and sizes, never content.

import { isUtf8 } from 'node:buffer';
import type avro from 'avsc';

/** Nesting of records, arrays, maps and unions a value may have (recursive schemas). */
export const MAX_DEPTH = 256;

class Malformed extends Error {
  override readonly name = 'Malformed';
}

interface Cursor {
  readonly buf: Buffer;
  pos: number;
  /** Array items and map entries still allowed in this value. */
  items: number;
}

/** Null when `payload` is one well-formed value of `writer`, else why not (positions and sizes only). */
export function avroBoundsProblem(writer: avro.Type, payload: Buffer): string | null {
  const c: Cursor = { buf: payload, pos: 0, items: payload.length };
  try {
    walk(writer, c, 0);
  } catch (e) {
    if (e instanceof Malformed) return e.message;
    throw e;
  }
  if (c.pos !== payload.length) return `${payload.length - c.pos} bytes left over after the value`;
  return null;
}

// avsc's type classes, by the parts the walk reads.
interface Shape {
  readonly typeName: string;
  readonly underlyingType?: avro.Type;
  readonly types?: readonly avro.Type[];
  readonly fields?: readonly { readonly type: avro.Type }[];
  readonly itemsType?: avro.Type;
  readonly valuesType?: avro.Type;
  readonly symbols?: readonly string[];
  readonly size?: number;
}

function walk(type: avro.Type, c: Cursor, depth: number): void {
  if (depth > MAX_DEPTH) throw new Malformed(`value nests deeper than ${MAX_DEPTH} levels at byte ${c.pos}`);
  const t = type as unknown as Shape;
  const name = t.typeName;
  if (name.startsWith('logical:')) return walk(t.underlyingType!, c, depth);
  if (name.startsWith('union:')) {
    const types = t.types!;
    const at = c.pos;
    const index = readLong(c);
    const branch = types[index];
    if (branch === undefined) throw new Malformed(`union branch ${index} at byte ${at} does not exist (the writer schema has ${types.length})`);
    return walk(branch, c, depth + 1);
  }
  switch (name) {
    case 'null':
      return;
    case 'boolean':
      return take(c, 1, 'a boolean');
    case 'int':
    case 'long':
      readLong(c);
      return;
    case 'float':
      return take(c, 4, 'a float');
    case 'double':
      return take(c, 8, 'a double');
    case 'bytes':
      take(c, readLength(c, 'bytes'), 'bytes');
      return;
    case 'string':
      return readString(c);
    case 'fixed':
      return take(c, t.size!, `a fixed of ${t.size!} bytes`);
    case 'enum': {
      const at = c.pos;
      const index = readLong(c);
      if (index < 0 || index >= t.symbols!.length) throw new Malformed(`enum index ${index} at byte ${at} does not exist (the writer schema has ${t.symbols!.length} symbols)`);
      return;
    }
    case 'record':
    case 'error':
      for (const f of t.fields!) walk(f.type, c, depth + 1);
      return;
    case 'array':
      return blocks(c, 'an array', () => walk(t.itemsType!, c, depth + 1));
    case 'map':
      return blocks(c, 'a map', () => {
        readString(c);
        walk(t.valuesType!, c, depth + 1);
      });
    default:
      throw new Malformed(`the writer schema has a type this check does not know (${name})`);
  }
}

/** Array and map blocks: count (negative: followed by the block's byte size), items, until a count of 0. */
function blocks(c: Cursor, what: string, item: () => void): void {
  for (;;) {
    const at = c.pos;
    let count = readLong(c);
    if (count === 0) return;
    let size: number | null = null;
    if (count < 0) {
      count = -count;
      size = readLength(c, `the byte size of a block of ${what}`);
    }
    const start = c.pos;
    const remaining = c.buf.length - start;
    if (count > remaining) throw new Malformed(`${what} at byte ${at} declares a block of ${count} entries but only ${remaining} bytes remain`);
    c.items -= count;
    if (c.items < 0) throw new Malformed(`${what} at byte ${at} brings the value to more entries than it has bytes (${c.buf.length})`);
    for (let i = 0; i < count; i++) item();
    // avsc skips a sized block by its size (fields the reader does not
    // have): a size that differs from its items would make it read on from
    // another position than this check did.
    if (size !== null && c.pos - start !== size) throw new Malformed(`${what} at byte ${at} declares a block of ${size} bytes but its entries take ${c.pos - start}`);
  }
}

function readString(c: Cursor): void {
  const at = c.pos;
  const length = readLength(c, 'a string');
  take(c, length, 'a string');
  if (!isUtf8(c.buf.subarray(c.pos - length, c.pos))) throw new Malformed(`the string at byte ${at} is not valid UTF-8`);
}

function readLength(c: Cursor, what: string): number {
  const at = c.pos;
  const n = readLong(c);
  if (n < 0) throw new Malformed(`${what} at byte ${at} has a negative length (${n})`);
  return n;
}

function take(c: Cursor, n: number, what: string): void {
  const remaining = c.buf.length - c.pos;
  if (n > remaining) throw new Malformed(`${what} at byte ${c.pos} needs ${n} bytes but only ${remaining} remain`);
  c.pos += n;
}

/**
 * A zig-zag varint of at most 10 bytes. Returned as a double: exact up to
 * 2^53, and anything larger is rejected by the comparisons with the bytes
 * that remain before it could be used as a count or a length.
 */
function readLong(c: Cursor): number {
  const at = c.pos;
  let n = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    const b = c.buf[c.pos];
    if (b === undefined) throw new Malformed(`a number at byte ${at} is cut off by the end of the value`);
    c.pos++;
    n += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
    scale *= 128;
  }
  throw new Malformed(`a number at byte ${at} is longer than 10 bytes`);
}
