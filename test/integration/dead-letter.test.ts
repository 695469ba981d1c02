// Bad input never stops the stream and is never lost: each kind of bad
// record goes to <input>.DLT with the original key, value and headers and the
// kafka_dlt-* headers, committed with the offsets; good records around them
// are tagged. Every bad record carries a canary string that must never reach
// the logs or the dead-letter headers. W3C trace headers are carried over.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { frame, loadSchema, unframe } from '../../src/records/avro.js';
import { readDeadLetterHeaders } from '../../src/stream/dead-letter.js';
import type { InputMessage } from '../../src/kafka/port.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { type RunningService, startService } from '../../src/service.js';
import { type Services, capturingLogger, getServices, jsonRecord, runEnv, testRun, tools, waitFor } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
const CANARY = 'CANARY-7f3a-患者隐私';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('dead-letter topic', { skip, timeout: 120_000 }, () => {
  const s = services as Services;
  const names = testRun('it.dlt');
  const { input, output, dlt } = names;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const logs: string[] = [];
  let service: RunningService | null = null;
  let dead: InputMessage[] = [];
  let events: InputMessage[] = [];
  const sent = new Map<string, { value: Buffer; code: string | null }>();

  before(async () => {
    const { config } = loadConfig(runEnv(s, names, { KAFKA_TOPIC_PARTITIONS: '1', CNER_MAX_TEXT_LENGTH: '60', CNER_HTTP_PORT: '0', CNER_LOG_LEVEL: 'debug' }));
    const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
    const emr = loadSchema('EmrRecord');
    service = await startService({ config, log: capturingLogger(logs), httpHost: '127.0.0.1', backoff: { initialMs: 50, maxMs: 1_000, multiplier: 2, jitter: 0.2 } });
    const id = await registry.register(`${input}-value`, emr.text);
    const avro = (r: Record<string, unknown>): Buffer => frame(id, emr.type.toBuffer({ sourceSystem: 'it', timestamp: Date.now(), metadata: null, ...r }));

    const records: [key: string, value: Buffer, code: string | null][] = [
      ['good-1', avro({ recordId: 'good-1', text: '患者有高血压病史，口服氨氯地平。' }), null],
      ['bad-json', Buffer.from(`{"recordId":"bad-json","text":"${CANARY} 未闭合`), 'UNDECODABLE_VALUE'],
      ['bad-utf8', Buffer.concat([Buffer.from([0xff, 0xfe, 0xfd]), Buffer.from(CANARY)]), 'UNDECODABLE_VALUE'],
      ['bad-avro', avro({ recordId: 'bad-avro', text: `${CANARY} 截断` }).subarray(0, 20), 'UNDECODABLE_VALUE'],
      ['unknown-schema', frame(2_000_000_000, emr.type.toBuffer({ recordId: 'x', text: CANARY, sourceSystem: 'it', timestamp: 0, metadata: null })), 'UNKNOWN_SCHEMA'],
      ['missing-text', jsonRecord('missing-text', CANARY, { text: undefined, note: CANARY }), 'MISSING_TEXT'],
      ['empty-text', avro({ recordId: 'empty-text', text: '', metadata: { note: CANARY } }), 'MISSING_TEXT'],
      ['too-long', jsonRecord('too-long', `${CANARY}${'长'.repeat(80)}`), 'TEXT_TOO_LONG'],
      ['lone-surrogate', jsonRecord('lone-surrogate', `${CANARY} \ud800 尾`), 'INVALID_UTF16'],
      ['bad-timestamp', jsonRecord('bad-timestamp', CANARY, { timestamp: 'yesterday' }), 'INVALID_RECORD'],
      ['good-2', jsonRecord('good-2', '胸部CT示右肺结节。'), null],
    ];
    for (const [key, value, code] of records) sent.set(key, { value, code });
    await kafka!.produce(
      input,
      records.map(([key, value]) => ({ key: Buffer.from(key), value, headers: { traceparent: Buffer.from(TRACEPARENT), 'x-origin': Buffer.from('it') } })),
    );
    const bad = records.filter((r) => r[2] !== null).length;
    [dead, events] = await Promise.all([
      kafka!.collect(dlt, { timeoutMs: 60_000, until: (m) => m.length >= bad }),
      kafka!.collect(output, { timeoutMs: 60_000, until: (m) => m.length >= records.length - bad }),
    ]);
  });

  after(async () => {
    await service?.stop();
    await kafka?.deleteTopics([input, output, dlt]).catch(() => {});
  });

  const deadLetter = (key: string): InputMessage => {
    const m = dead.find((d) => d.key?.toString() === key);
    assert.ok(m, `${key} is in the dead-letter topic (found ${dead.map((d) => d.key?.toString()).join(', ')})`);
    return m;
  };

  const checkKind = (key: string): void => {
    const m = deadLetter(key);
    const info = readDeadLetterHeaders(m.headers);
    assert.ok(info, 'kafka_dlt-* headers present');
    assert.equal(info.errorCode, sent.get(key)!.code);
    assert.equal(info.originalTopic, input);
    assert.equal(info.originalPartition, 0);
    assert.match(info.originalOffset, /^\d+$/);
    assert.match(info.message, new RegExp(`^${info.errorCode}: `));
    assert.deepEqual(m.value, sent.get(key)!.value, 'original value bytes kept');
    assert.equal(m.headers['kafka_dlt-original-consumer-group']?.toString(), names.group);
    assert.equal(m.headers['traceparent']?.toString(), TRACEPARENT, 'trace context carried');
    assert.equal(m.headers['x-origin']?.toString(), 'it', 'original headers kept');
  };

  it('an undecodable value (broken JSON, invalid UTF-8, truncated Avro) → UNDECODABLE_VALUE', () => {
    checkKind('bad-json');
    checkKind('bad-utf8');
    checkKind('bad-avro');
  });
  it('an unknown schema id → UNKNOWN_SCHEMA', () => checkKind('unknown-schema'));
  it('a missing or empty text → MISSING_TEXT', () => {
    checkKind('missing-text');
    checkKind('empty-text');
  });
  it('a text over CNER_MAX_TEXT_LENGTH → TEXT_TOO_LONG', () => checkKind('too-long'));
  it('invalid UTF-16 (a lone surrogate) → INVALID_UTF16', () => checkKind('lone-surrogate'));
  it('another invalid field → INVALID_RECORD', () => checkKind('bad-timestamp'));

  it('the records around them are tagged, in order, with trace context and no trace data in the payload', () => {
    assert.deepEqual(events.map((e) => e.key?.toString()), ['good-1', 'good-2']);
    const schema = loadSchema('ClinicalEntities');
    for (const e of events) {
      assert.equal(e.headers['traceparent']?.toString(), TRACEPARENT);
      const event = schema.type.fromBuffer(unframe(e.value!)!.payload) as { recordId: string };
      assert.equal(event.recordId, e.key?.toString());
      assert.doesNotMatch(JSON.stringify(event), /4bf92f3577b34da6a3ce929d0e0e4736/);
    }
  });

  it('commits the offsets of dead-lettered records with them (nothing is read twice)', async () => {
    const committed = await waitFor('the committed offset', 10_000, async () => {
      const o = await kafka!.committedOffsets(names.group, input);
      return o[0] === String(sent.size) ? o[0] : undefined;
    });
    assert.equal(committed, String(sent.size));
    assert.equal(dead.length, [...sent.values()].filter((v) => v.code !== null).length, 'each bad record dead-lettered once');
  });

  it('the canary in the bad records never reaches the logs or the headers', () => {
    assert.ok(logs.some((l) => l.includes('record dead-lettered')), 'dead letters are logged');
    for (const line of logs) assert.ok(!line.includes('CANARY') && !line.includes('患者隐私'), `log line leaks record text: ${line.slice(0, 300)}`);
    for (const m of dead) {
      for (const [name, v] of Object.entries(m.headers)) {
        if (name.startsWith('kafka_dlt') || name.startsWith('cner_')) assert.ok(!String(v).includes('CANARY'), `header ${name} leaks record text`);
      }
    }
  });
});
