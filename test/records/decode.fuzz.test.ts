// A structure-aware fuzz test of the input decoder (decodeMessage: framing,
// the Avro bounds check, avsc with schema resolution, UTF-8 and JSON, field
// validation). Fixed seed, so a failure names a case that can be replayed.
//
// Cases are built along the writer schemas, lying where lies hurt: frames of
// every length and schema id, varints of every width (up to over-long ones),
// block counts and byte sizes (huge, negative, off by one), union and enum
// indexes out of range, string lengths past the end, invalid UTF-8, recursive
// nesting; plus valid values, byte-level mutations of them, and raw bytes.
//
// Asserted: the decoder never throws (every bad input is a decode failure,
// which dead-letters the record), never loops (the cases run in a worker
// thread under a watchdog: one still running after 5 s fails the test, where
// a synchronous loop would otherwise hang it), and no one message takes more
// than 10 ms.
// The time is a bound on pathological work (a block count of 2^40 costs
// hours, not milliseconds), so a case over it is timed again: a garbage
// collection or a busy machine delays one run, while work the input causes
// is there every time; the best of five runs must be under the bound.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import avro from 'avsc';
import { AvroReader, frame, loadSchema } from '../../src/records/avro.js';
import { decodeMessage } from '../../src/records/decode.js';
import { CnerError } from '../../src/errors.js';
import { avroVarint, seededRandom as rng } from '../helpers.js';

const SEED = 0x5eed14;
const CASES = 100_000;
const MAX_MS = 10;

const emr = loadSchema('EmrRecord');
const EMR_FIELDS = (JSON.parse(emr.text) as avro.schema.RecordType).fields;

/** Writer schemas by id: EmrRecord, and an evolved writer with every kind of type (the reader skips what it does not know). */
const WRITERS = new Map<number, avro.Type>([
  [1, emr.type],
  [
    2,
    avro.Type.forSchema({
      type: 'record',
      name: 'EmrRecord',
      namespace: 'health.cner',
      fields: [
        ...EMR_FIELDS,
        { name: 'tags', type: { type: 'array', items: ['null', 'int', 'string', { type: 'fixed', name: 'F4', size: 4 }] }, default: [] },
        { name: 'scores', type: { type: 'map', values: { type: 'array', items: 'double' } }, default: {} },
        { name: 'kind', type: { type: 'enum', name: 'Kind', symbols: ['A', 'B', 'C'] }, default: 'A' },
        { name: 'extra', type: ['null', 'bytes', 'float', 'boolean', 'long'], default: null },
        { name: 'tree', type: ['null', { type: 'record', name: 'Node', fields: [{ name: 'kids', type: { type: 'array', items: ['null', 'Node'] } }] }], default: null },
        { name: 'flags', type: { type: 'array', items: 'null' }, default: [] },
      ],
    }),
  ],
  // Cannot be read as EmrRecord (no text field): INCOMPATIBLE_SCHEMA.
  [3, avro.Type.forSchema({ type: 'record', name: 'Other', fields: [{ name: 'x', type: 'int' }] })],
]);

const reader = new AvroReader(emr.type, {
  writerType: async (id) => {
    const type = WRITERS.get(id);
    if (type === undefined) throw new CnerError('UNKNOWN_SCHEMA', `schema id ${id} is not in the registry`);
    return type;
  },
});

const HOSTILE_NUMBERS = [0, 1, -1, 2, 127, 128, 255, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 40, 2 ** 53 - 1, -(2 ** 40)];

/** Builds one payload along `type`, lying at each length, count or index with probability `lie`. */
class Builder {
  readonly parts: Buffer[] = [];
  readonly #r: () => number;
  readonly #lie: number;
  #budget = 400;

  constructor(r: () => number, lie: number) {
    this.#r = r;
    this.#lie = lie;
  }

  #pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#r() * xs.length)]!;
  }

  /** A varint: the true value, or (lying) a hostile one, an over-long encoding or a cut-off one. */
  number(truth: number): void {
    if (this.#r() >= this.#lie) {
      this.parts.push(avroVarint(truth));
      return;
    }
    const r = this.#r();
    if (r < 0.6) this.parts.push(avroVarint(this.#pick(HOSTILE_NUMBERS) + (this.#r() < 0.3 ? this.#pick([-1, 1]) : 0)));
    else if (r < 0.75) this.parts.push(Buffer.alloc(1 + Math.floor(this.#r() * 12), 0xff)); // never-ending continuation bits
    else if (r < 0.9) this.parts.push(Buffer.from([...Buffer.alloc(9, 0x80), 0x01])); // 10 bytes, 2^63 before zig-zag
    else this.parts.push(Buffer.from([0x80])); // cut off
  }

  bytes(b: Buffer): void {
    this.number(b.length);
    this.parts.push(b);
  }

  string(): void {
    const r = this.#r();
    let b: Buffer;
    if (r < 0.1 * (1 + this.#lie * 5)) b = this.#pick([Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xe6, 0x82]), Buffer.from([0xc0, 0x80])]);
    else b = Buffer.from(this.#pick(['', 'a', '患者', '胸部CT示右肺结节。', 'x'.repeat(1 + Math.floor(this.#r() * 40))]));
    this.bytes(b);
  }

  value(type: avro.Type, depth: number): void {
    this.#budget--;
    const t = type as unknown as { typeName: string; types?: avro.Type[]; fields?: { type: avro.Type }[]; itemsType?: avro.Type; valuesType?: avro.Type; symbols?: string[]; size?: number; underlyingType?: avro.Type };
    if (t.typeName.startsWith('logical:')) return this.value(t.underlyingType!, depth);
    if (t.typeName.startsWith('union:')) {
      const types = t.types!;
      // Deep trees stop at the null branch (0), unless the lie says otherwise.
      const i = depth > 6 || this.#budget < 0 ? 0 : Math.floor(this.#r() * types.length);
      this.number(i);
      return this.value(types[i] ?? types[0]!, depth + 1);
    }
    switch (t.typeName) {
      case 'null':
        return;
      case 'boolean':
        this.parts.push(Buffer.from([this.#r() < 0.5 ? 0 : 1]));
        return;
      case 'int':
      case 'long':
        this.number(Math.floor(this.#r() * 2e6) - 1e6);
        return;
      case 'float':
        this.parts.push(Buffer.alloc(4, 0x41));
        return;
      case 'double':
        this.parts.push(Buffer.alloc(8, 0x40));
        return;
      case 'bytes':
        this.bytes(Buffer.alloc(Math.floor(this.#r() * 8), 7));
        return;
      case 'string':
        return this.string();
      case 'fixed':
        this.parts.push(Buffer.alloc(t.size!, 1));
        return;
      case 'enum':
        this.number(Math.floor(this.#r() * t.symbols!.length));
        return;
      case 'record':
        for (const f of t.fields!) this.value(f.type, depth + 1);
        return;
      case 'array':
      case 'map': {
        const blocks = this.#budget < 0 ? 0 : Math.floor(this.#r() * 3);
        for (let b = 0; b < blocks; b++) {
          const n = 1 + Math.floor(this.#r() * 4);
          const sized = this.#r() < 0.2;
          this.number(sized ? -n : n);
          if (sized) this.number(Math.floor(this.#r() * 64));
          for (let i = 0; i < n; i++) {
            if (t.typeName === 'map') this.string();
            this.value(t.typeName === 'map' ? t.valuesType! : t.itemsType!, depth + 1);
          }
        }
        this.number(0);
        return;
      }
      default:
        throw new Error(`unknown type ${t.typeName}`);
    }
  }
}

type Case = { readonly key: Buffer | null; readonly value: Buffer | null };

function makeCase(r: () => number): Case {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const key = r() < 0.5 ? Buffer.from(`k${Math.floor(r() * 1000)}`) : r() < 0.5 ? null : Buffer.from([0xff, 0xfe]);
  const kind = r();
  if (kind < 0.05) {
    // Frames: empty, shorter than the header, unknown or incompatible ids.
    const n = Math.floor(r() * 7);
    const bytes = Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));
    if (n > 0 && r() < 0.7) bytes[0] = 0;
    return { key, value: r() < 0.1 ? null : bytes };
  }
  if (kind < 0.1) {
    // Raw bytes and JSON-looking text.
    const text = pick(['{', '{"recordId":"a","text":"患者","sourceSystem":"s","timestamp":1}', '[]', 'null', '{"text":1e309}', '{"metadata":{"a":1}}', '\u0000\u0001']);
    const bytes = r() < 0.5 ? Buffer.from(text) : Buffer.from(Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256)));
    return { key, value: bytes };
  }
  const id = r() < 0.03 ? pick([3, 4, 2 ** 31, 0xffffffff]) : r() < 0.5 ? 1 : 2;
  const writer = WRITERS.get(id) ?? emr.type;
  let payload: Buffer;
  if (kind < 0.35) {
    // A valid value, then byte-level mutations: flips, cuts, insertions, a varint spliced in.
    // (avsc's random() recurses without bound on the recursive Node type: the builder, truthful, instead.)
    if (writer === emr.type) payload = writer.toBuffer(writer.random());
    else {
      const b = new Builder(r, 0);
      b.value(writer, 0);
      payload = Buffer.concat(b.parts);
    }
    const mutations = Math.floor(r() * 4);
    for (let m = 0; m < mutations && payload.length > 0; m++) {
      const at = Math.floor(r() * payload.length);
      const op = r();
      if (op < 0.3) payload[at] = Math.floor(r() * 256);
      else if (op < 0.5) payload = payload.subarray(0, at);
      else if (op < 0.75) payload = Buffer.concat([payload.subarray(0, at), avroVarint(pick(HOSTILE_NUMBERS)), payload.subarray(at)]);
      else payload = Buffer.concat([payload.subarray(0, at), payload.subarray(at, at + Math.floor(r() * 8)), payload.subarray(at)]);
    }
  } else {
    // Built along the writer schema, lying at lengths, counts and indexes.
    const b = new Builder(r, pick([0, 0.01, 0.05, 0.2]));
    b.value(writer, 0);
    if (r() < 0.1) b.parts.push(Buffer.from([Math.floor(r() * 256)])); // trailing byte
    payload = Buffer.concat(b.parts);
  }
  return { key, value: frame(id, payload) };
}

const options = { maxTextLength: 1_000, avro: reader };

async function timed(c: Case): Promise<{ ms: number; result: Awaited<ReturnType<typeof decodeMessage>> }> {
  const t = performance.now();
  const result = await decodeMessage(c.key, c.value, options);
  return { ms: performance.now() - t, result };
}

interface Report {
  readonly max: number;
  /** Cases over MAX_MS on their first run, with their best of five. */
  readonly slow: readonly { readonly index: number; readonly best: number; readonly hex: string }[];
  readonly outcomes: Readonly<Record<string, number>>;
  /** Why a case threw, if one did. */
  readonly threw: string | null;
}

/** Runs every case; `progress[0]` is the index of the case being decoded (for the watchdog). */
async function runCases(progress: Int32Array): Promise<Report> {
  const r = rng(SEED);
  const outcomes: Record<string, number> = {};
  const slow: { index: number; case: Case }[] = [];
  let max = 0;
  for (let i = 0; i < CASES; i++) {
    const c = makeCase(r);
    Atomics.store(progress, 0, i);
    let run: Awaited<ReturnType<typeof timed>>;
    try {
      run = await timed(c);
    } catch (e) {
      const why = `case ${i} (seed ${SEED}) threw instead of returning a decode failure: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}; value ${c.value?.toString('hex').slice(0, 200)}`;
      return { max, slow: [], outcomes, threw: why };
    }
    max = Math.max(max, run.ms);
    if (run.ms > MAX_MS) slow.push({ index: i, case: c });
    const outcome = run.result._tag === 'Right' ? `ok:${run.result.right.format}` : run.result.left.code;
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  // Timed again: noise passes, work the input causes stays.
  const retimed = [];
  for (const s of slow) {
    Atomics.store(progress, 0, s.index);
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < 5; k++) best = Math.min(best, (await timed(s.case)).ms);
    retimed.push({ index: s.index, best, hex: s.case.value?.toString('hex').slice(0, 200) ?? '' });
  }
  return { max, slow: retimed, outcomes, threw: null };
}

/** How long one case may run before the watchdog calls it endless (a block count avsc would loop on for hours). */
const STUCK_MS = 5_000;

if (!isMainThread) {
  // The cases run in a worker, so that a case that never ends (a synchronous
  // loop no test timeout can interrupt) is stopped by the watchdog below and
  // fails the test instead of hanging it.
  parentPort!.postMessage(await runCases(new Int32Array((workerData as { progress: SharedArrayBuffer }).progress)));
} else {
  describe('decodeMessage, fuzzed', { timeout: 180_000 }, () => {
    it(`${CASES} structure-aware cases (seed ${SEED}): never throws, never loops, no message over ${MAX_MS} ms`, async () => {
      const shared = new SharedArrayBuffer(4);
      const progress = new Int32Array(shared);
      Atomics.store(progress, 0, -1); // not started (loading the worker takes a while)
      // The worker loads this file as TypeScript through tsx (loader hooks of the main thread do not reach workers in Node 20).
      const tsx = import.meta.resolve('tsx/esm/api');
      const boot = `import(${JSON.stringify(tsx)}).then(({ tsImport }) => tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`;
      const worker = new Worker(boot, { eval: true, workerData: { progress: shared } });
      const report = await new Promise<Report>((resolve, reject) => {
        let last = -1;
        let since = Date.now();
        const watchdog = setInterval(() => {
          const now = Atomics.load(progress, 0);
          if (now !== last || now < 0) {
            last = now;
            since = Date.now();
          } else if (Date.now() - since > STUCK_MS) {
            clearInterval(watchdog);
            void worker.terminate();
            reject(new Error(`case ${now} (seed ${SEED}) has been decoding for over ${STUCK_MS / 1000} s: decoding does not end`));
          }
        }, 100);
        worker.once('message', (m: Report) => {
          clearInterval(watchdog);
          resolve(m);
        });
        worker.once('error', (e) => {
          clearInterval(watchdog);
          reject(e);
        });
      });
      await worker.terminate();
      assert.equal(report.threw, null);
      for (const s of report.slow) assert.ok(s.best <= MAX_MS, `case ${s.index} (seed ${SEED}) takes ${s.best.toFixed(1)} ms at best, more than ${MAX_MS} ms: value ${s.hex}`);
      // The generator reaches every kind of outcome (else the cases prove little).
      const seen = report.outcomes;
      for (const kind of ['ok:avro', 'ok:json', 'UNDECODABLE_VALUE', 'UNKNOWN_SCHEMA', 'INCOMPATIBLE_SCHEMA', 'INVALID_RECORD', 'MISSING_TEXT']) {
        assert.ok((seen[kind] ?? 0) > 0, `no case ended as ${kind}: ${JSON.stringify(seen)}`);
      }
      assert.ok((seen['ok:avro'] ?? 0) > CASES / 50, `few valid Avro records: ${JSON.stringify(seen)}`);
      assert.ok((seen['UNDECODABLE_VALUE'] ?? 0) > CASES / 10, `few undecodable values: ${JSON.stringify(seen)}`);
      console.log(`# fuzz: max ${report.max.toFixed(2)} ms per message before retiming, ${report.slow.length} retimed; outcomes ${JSON.stringify(seen)}`);
    });
  });
}
