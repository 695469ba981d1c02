import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { AvroReader, EventEncoder, loadSchema, unframe } from '../../src/records/avro.js';
import { DLT_HEADERS, readDeadLetterHeaders } from '../../src/stream/dead-letter.js';
import { BATCH_OVERHEAD_BYTES, lastHeader, recordBytes } from '../../src/kafka/port.js';
import { fixedModel } from '../../src/versions/leases.js';
import { type ProcessorOptions, type TransactionPlan, planTransaction } from '../../src/stream/plan.js';
import { CnerError } from '../../src/errors.js';
import type { TaggingModel } from '../../src/pipeline/tag.js';
import { openLinker } from '../../src/model/linker.js';
import type { EntityLinker } from '../../src/pipeline/link.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { fakeModel, heldModel, message, processorOptions, recordingLinker, until } from '../helpers.js';

const CANARY = 'CANARY-9c1e-张三';
const emr = loadSchema('EmrRecord');
const out = loadSchema('ClinicalEntities');
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

/** `linker`: lent with the model (the lease's linker links the slice). */
const options = (model: TaggingModel, lines: string[], { linker = null, ...overrides }: Partial<ProcessorOptions> & { linker?: EntityLinker | null } = {}): ProcessorOptions =>
  processorOptions(fixedModel(model, linker), lines, { now: () => 1_700_000_000_000, ...overrides });

const deadLetters = (plan: TransactionPlan) => plan.records.flatMap((r) => (r.kind === 'dead' ? [r] : []));

const json = (r: Record<string, unknown>): string => JSON.stringify({ recordId: 'r', sourceSystem: 's', timestamp: 1, ...r });

describe('planTransaction', () => {
  it('turns each record into an event or a dead letter, in input order', async () => {
    const lines: string[] = [];
    const model = await fakeModel();
    const messages = [
      message(0, 0, json({ recordId: 'a', text: '咳嗽。发热。' }), { headers: { traceparent: Buffer.from(TRACEPARENT), other: Buffer.from('x') } }),
      message(0, 1, json({ recordId: 'b', text: '' })),
      message(0, 2, json({ recordId: 'c', text: '头痛' })),
    ];
    const plan = await planTransaction(messages, 1, options(model, lines));
    assert.deepEqual(plan.messages.map((m) => m.topic), ['out', 'in.DLT', 'out']);
    assert.deepEqual(plan.records.map((r) => r.kind), ['event', 'dead', 'event']);
    assert.deepEqual(deadLetters(plan).map((d) => d.code), ['MISSING_TEXT']);
    assert.deepEqual(plan.records.map((r) => r.format), ['json', 'json', 'json']);
    assert.deepEqual(plan.records.map((r) => r.kind === 'event' && r.timestamp), [messages[0]!.timestamp, false, messages[2]!.timestamp]);

    const first = plan.messages[0]!;
    assert.deepEqual(first.key, messages[0]!.key, 'same key as the input');
    assert.deepEqual(first.headers, { traceparent: Buffer.from(TRACEPARENT) }, 'trace context only');
    const framed = unframe(first.value!)!;
    assert.equal(framed.schemaId, 42);
    const event = out.type.fromBuffer(framed.payload) as { recordId: string; modelVersion: string; processedAt: number; entities: { type: string; label: string; start: number; end: number; text: string }[] };
    assert.equal(event.recordId, 'a');
    assert.equal(event.modelVersion, 'fake-1');
    assert.equal(event.processedAt, 1_700_000_000_000);
    // the fake model puts B-DIS on the first code point of each chunk
    assert.deepEqual(event.entities.map((e) => [e.type, e.label, e.start, e.end, e.text]), [['DIS', '疾病和诊断', 0, 1, '咳']]);
    assert.deepEqual(plan.records.flatMap((r) => (r.kind === 'event' ? r.entityTypes : [])), ['DIS', 'DIS']);

    const dead = plan.messages[1]!;
    assert.deepEqual(dead.value, messages[1]!.value, 'original bytes');
    assert.equal(readDeadLetterHeaders(dead.headers)?.errorCode, 'MISSING_TEXT');
  });

  it('dead-letters an event larger than the output topic accepts (EVENT_TOO_LARGE), and truncates a dead letter larger than the dead-letter topic accepts', async () => {
    const model = await fakeModel();
    const messages = [
      message(0, 0, json({ recordId: `big-${'x'.repeat(250)}`, text: '咳嗽。'.repeat(16) })), // a long id: in the key and the event
      message(0, 1, json({ recordId: 'small', text: '头痛' })),
    ];
    const plan = await planTransaction(messages, 1, options(model, [], { maxMessageBytes: { output: 400, dlt: 900 } }));
    assert.deepEqual(plan.messages.map((m) => m.topic), ['in.DLT', 'out']);
    const dead = plan.messages[0]!;
    const info = readDeadLetterHeaders(dead.headers);
    assert.equal(info?.errorCode, 'EVENT_TOO_LARGE');
    assert.match(info?.message ?? '', /the event has 1 entities and takes \d+ bytes, more than the output topic accepts \(max.message.bytes 400\)/);
    assert.equal(lastHeader(dead.headers, DLT_HEADERS.valueTruncated)?.toString(), String(messages[0]!.value!.length), 'original size in a header');
    assert.ok(recordBytes(dead) <= 900 - BATCH_OVERHEAD_BYTES, 'fits the dead-letter topic');
    assert.deepEqual(dead.value, messages[0]!.value!.subarray(0, dead.value!.length), 'a prefix of the original value');
    assert.match(deadLetters(plan)[0]!.reason, /truncated/);
  });

  it('tags the records of a slice concurrently (one inference call per record, all in flight together)', async () => {
    let inFlight = 0;
    let peak = 0;
    const base = await fakeModel();
    const model: TaggingModel = {
      ...base,
      inferEach: (seqs) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        const done = new Promise((r) => setTimeout(r, 5)).then(() => inFlight--);
        return base.inferEach(seqs).map((row) => done.then(() => row));
      },
    };
    const messages = Array.from({ length: 8 }, (_, i) => message(0, i, json({ recordId: `r${i}`, text: '胸痛。' })));
    await planTransaction(messages, 1, options(model, []));
    assert.equal(peak, 8);
  });

  it('throws a retriable inference failure so the slice is read again, then dead-letters it after maxAttempts', async () => {
    const model = await fakeModel({ fail: () => new CnerError('INFERENCE_FAILED', 'device out of memory') });
    const messages = [message(0, 0, json({ recordId: 'a', text: '腹痛' }))];
    await assert.rejects(planTransaction(messages, 1, options(model, [])), (e: unknown) => e instanceof CnerError && e.code === 'INFERENCE_FAILED');
    await assert.rejects(planTransaction(messages, 2, options(model, [])), CnerError);
    const plan = await planTransaction(messages, 3, options(model, []));
    assert.equal(deadLetters(plan)[0]?.code, 'PROCESSING_FAILED');
    assert.match(readDeadLetterHeaders(plan.messages[0]!.headers)!.message, /INFERENCE_FAILED after 3 attempts/);
  });

  it('dead-letters a record whose tagging fails for good (a bug), and goes on', async () => {
    const model = await fakeModel({ fail: (seqs) => (seqs[0]!.length === 2 ? new RangeError('index out of range') : undefined) });
    const messages = [message(0, 0, json({ recordId: 'a', text: '腹痛' })), message(0, 1, json({ recordId: 'b', text: '腹泻三天' }))];
    const plan = await planTransaction(messages, 1, options(model, []));
    assert.deepEqual(plan.messages.map((m) => m.topic), ['in.DLT', 'out']);
    assert.equal(deadLetters(plan)[0]?.code, 'PROCESSING_FAILED');
  });

  it('does not dead-letter anything while the model is closing', async () => {
    const model = await fakeModel({ fail: () => new CnerError('MODEL_CLOSED', 'the batcher is closed') });
    await assert.rejects(planTransaction([message(0, 0, json({ text: '咳' }))], 99, options(model, [])), (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED');
  });

  it('throws when the registry is unavailable (nothing is dead-lettered)', async () => {
    const reader = new AvroReader(emr.type, {
      writerType: async () => {
        throw new CnerError('REGISTRY_UNAVAILABLE', 'down');
      },
    });
    const value = Buffer.concat([Buffer.from([0, 0, 0, 0, 9]), emr.type.toBuffer({ recordId: 'a', text: 't', sourceSystem: 's', timestamp: 1, metadata: null })]);
    const o = options(await fakeModel(), [], { records: { maxTextLength: 50, avro: reader } });
    await assert.rejects(planTransaction([message(0, 0, value)], 1, o), (e: unknown) => e instanceof CnerError && e.code === 'REGISTRY_UNAVAILABLE');
  });

  it('a canary in the record, and its record id (patient data), never reach the logs or the dead-letter headers, on any error path', async () => {
    const lines: string[] = [];
    const ID = 'MRN-20931-7'; // a record id: logs name topic, partition and offset instead
    // A model that fails with messages of its own for some records.
    const model = await fakeModel({
      fail: (seqs) => {
        if (seqs[0]!.length === 16) return new RangeError('bad shape'); // a bug
        if (seqs[0]!.length === 17) return new CnerError('WORKER_CRASHED', 'inference worker exited'); // retriable, last attempt
        return undefined;
      },
    });
    const encoderFails = new EventEncoder(out.type, 1);
    const messages = [
      message(0, 0, `{"recordId":"x","text":"${CANARY}`),
      message(0, 1, Buffer.concat([Buffer.from([0xc3, 0x28]), Buffer.from(CANARY)])),
      message(0, 2, Buffer.concat([Buffer.from([0, 0, 0, 0, 1]), Buffer.from(CANARY)])),
      message(0, 3, json({ recordId: ID, text: `${CANARY}${'长'.repeat(60)}` })),
      message(0, 4, json({ recordId: ID, text: `${CANARY}\ud800` })),
      message(0, 5, json({ recordId: ID, text: CANARY, timestamp: CANARY, metadata: { x: CANARY } })),
      message(0, 6, json({ recordId: ID, text: `${CANARY}12` })), // 16 code points: RangeError
      message(0, 7, json({ recordId: ID, text: `${CANARY}123` })), // 17: WORKER_CRASHED on the last attempt
      message(0, 8, json({ recordId: 'enc-fail', text: CANARY, metadata: { note: CANARY } })), // tagged: its event must not be logged either
    ];
    const o = options(model, lines, {
      encoder: {
        encode: (e) => {
          if (e.recordId === 'enc-fail') throw new Error(`cannot encode ${JSON.stringify(e)}`); // a third-party message quoting the value
          return encoderFails.encode(e);
        },
      },
    });
    const plan = await planTransaction(messages, 3, o);
    assert.equal(deadLetters(plan).length, messages.length);
    for (const m of plan.messages) {
      for (const [name, value] of Object.entries(m.headers)) assert.doesNotMatch(String(value), /CANARY|张三/, `header ${name}`);
    }
    assert.ok(lines.length > 0);
    for (const line of lines) assert.doesNotMatch(line, /CANARY|张三|MRN-20931-7|enc-fail/, line);
    assert.ok(lines.some((l) => l.includes('"offset":"6"')), 'the failing record is named by its offset');
  });

  describe('with a linker', () => {
    type Linked = { linkerVersion: string | null; entities: { type: string; text: string; codes: { system: string; code: string; name: string; score: number }[] }[] };
    const decode = (plan: TransactionPlan, i: number): Linked => out.type.fromBuffer(unframe(plan.messages[i]!.value!)!.payload) as Linked;
    const TINY_LINKER = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');

    it('gives every entity of a linked type its concepts, the others none, and stamps the linker version', async () => {
      const linker = await openLinker(TINY_LINKER, { workers: 0 });
      try {
        const model = await fakeModel(); // B-DIS on the first code point of each chunk
        const messages = [message(0, 0, json({ recordId: 'a', text: '癌。高血压。' })), message(0, 1, json({ recordId: 'b', text: '胃痛' }))];
        const plan = await planTransaction(messages, 1, options(model, [], { linker }));
        for (const i of [0, 1]) {
          const event = decode(plan, i);
          assert.equal(event.linkerVersion, linker.version);
          assert.ok(event.entities.length > 0);
          for (const e of event.entities) {
            assert.deepEqual(e.codes.map((c) => ({ ...c })), (await linker.link([e.text]))[0]!.map((c) => ({ ...c, score: Math.fround(c.score) })), e.text);
            assert.ok(e.codes.length > 0 && e.codes.every((c) => c.system === 'ICD-10-BJ-v601'));
          }
        }
        // A linker of other types leaves DIS unlinked (but still says it ran).
        const exaOnly: EntityLinker = { version: 'exa-1', entityTypes: ['EXA'], link: (texts) => linker.link(texts) };
        const unlinked = decode(await planTransaction(messages.slice(0, 1), 1, options(model, [], { linker: exaOnly })), 0);
        assert.equal(unlinked.linkerVersion, 'exa-1');
        assert.ok(unlinked.entities.every((e) => e.codes.length === 0));
      } finally {
        await linker.close();
      }
    });

    it('links each chunk\'s entities while the record\'s later chunks are still being inferred, and times the record\'s linking once', async () => {
      const model = heldModel(await fakeModel());
      const linker = recordingLinker();
      const o = options(model, [], { linker });
      const text = ['癌', '痛', '炎'].map((first) => `${first}${'咳'.repeat(98)}。`).join(''); // three chunks
      const planned = planTransaction([message(0, 0, json({ recordId: 'a', text }))], 1, { ...o, records: { ...o.records, maxTextLength: 1000 } });
      await until('the record\'s chunks are asked for', () => model.held === 3);
      await model.release();
      assert.deepEqual(linker.calls, [['癌']]);
      assert.equal(model.held, 2, 'linked before the later chunks\' emissions were released');
      await model.release(2);
      const event = decode(await planned, 0);
      assert.deepEqual(event.entities.map((e) => [e.text, e.codes.map((c) => c.code)]), [['癌', ['C-癌']], ['痛', ['C-痛']], ['炎', ['C-炎']]]);
      assert.equal(event.linkerVersion, 'recording-1');
      const linking = await o.metrics.linkingSeconds.get();
      assert.equal(linking.values.find((v) => v.metricName === 'cner_linking_duration_seconds_count')?.value, 1, 'one observation for the record');
    });

    it('says when the slice is tagged, while its linking is still under way', async () => {
      const model = heldModel(await fakeModel());
      const linker = recordingLinker();
      let answer: () => void = () => {};
      const held: EntityLinker = { ...linker, link: (texts) => new Promise<void>((r) => (answer = r)).then(() => linker.link(texts)) };
      let tagged = 0;
      const planned = planTransaction([message(0, 0, json({ recordId: 'a', text: '癌。' })), message(0, 1, 'not json')], 1, options(model, [], { linker: held }), () => tagged++);
      await until('the chunk is asked for', () => model.held === 1);
      assert.equal(tagged, 0);
      await model.release();
      await until('tagged', () => tagged === 1);
      let settled = false;
      void planned.then(() => (settled = true));
      await new Promise((r) => setImmediate(r));
      assert.equal(settled, false, 'the plan waits for the linker');
      answer();
      const plan = await planned;
      assert.equal(tagged, 1, 'once');
      assert.deepEqual(plan.records.map((r) => r.kind), ['event', 'dead']);
    });

    it('does not say a tagging failure is the linker\'s', async () => {
      const linker = recordingLinker();
      const o = options(await fakeModel({ fail: () => new CnerError('INFERENCE_FAILED', 'device out of memory') }), [], { linker });
      const messages = [message(0, 0, json({ recordId: 'a', text: '腹痛' }))];
      await assert.rejects(planTransaction(messages, 1, o), (e: unknown) => e instanceof CnerError && e.message === 'device out of memory');
      const plan = await planTransaction(messages, 3, o);
      assert.match(readDeadLetterHeaders(plan.messages[0]!.headers)!.message, /INFERENCE_FAILED after 3 attempts\): device out of memory/);
      assert.deepEqual(linker.calls, []);
    });

    it('without a linker: empty codes and linkerVersion null', async () => {
      const plan = await planTransaction([message(0, 0, json({ recordId: 'a', text: '癌' }))], 1, options(await fakeModel(), []));
      const event = decode(plan, 0);
      assert.equal(event.linkerVersion, null);
      assert.deepEqual(event.entities.map((e) => e.codes), [[]]);
    });

    it('reads the slice again while linking fails retriably, then dead-letters it saying the linker failed', async () => {
      const failing: EntityLinker = {
        version: 'broken-1',
        entityTypes: ['DIS'],
        link: () => Promise.reject(new CnerError('WORKER_CRASHED', 'inference worker exited')),
      };
      const messages = [message(0, 0, json({ recordId: 'a', text: '腹痛' }))];
      const o = options(await fakeModel(), [], { linker: failing });
      await assert.rejects(planTransaction(messages, 1, o), (e: unknown) => e instanceof CnerError && e.code === 'WORKER_CRASHED' && /^linking: /.test(e.message));
      const plan = await planTransaction(messages, 3, o);
      assert.equal(deadLetters(plan)[0]?.code, 'PROCESSING_FAILED');
      assert.match(readDeadLetterHeaders(plan.messages[0]!.headers)!.message, /WORKER_CRASHED after 3 attempts\): linking: inference worker exited/);
    });
  });
});
