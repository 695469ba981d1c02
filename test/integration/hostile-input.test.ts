// Hostile input on the real broker and registry: each kind is dead-lettered
// (or read) without stopping its partition, and the records after it still
// get their events. One partition, so "after" is Kafka order:
//
//   - batches compressed with gzip, snappy, lz4 and zstd (kafkajs reads only
//     gzip by itself: the others crash-looped the consumer);
//   - an Avro EmrRecord of 19 bytes whose metadata map declares 2^40 entries
//     (avsc trusted the count and blocked the event loop for hours);
//   - invalid UTF-8 inside an Avro string (was tagged as U+FFFD text);
//   - repeated headers (were collapsed to the last value in the dead letter);
//   - a transient 404 from the registry for a schema id (was remembered until
//     restart, dead-lettering every later record with that id).

import assert from 'node:assert/strict';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { frame, loadSchema } from '../../src/records/avro.js';
import { readDeadLetterHeaders } from '../../src/stream/dead-letter.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { type RunningService, startService } from '../../src/service.js';
import type { InputMessage } from '../../src/kafka/port.js';
import { HUGE_MAP_EMR_BODY, emrBodyWithInvalidUtf8 } from '../helpers.js';
import { type Services, capturingLogger, getServices, runEnv, testRun, tools } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
const BACKOFF = { initialMs: 50, maxMs: 1_000, multiplier: 2, jitter: 0.2 };

const emr = loadSchema('EmrRecord');
const record = (recordId: string, extra: Record<string, unknown> = {}): Buffer =>
  emr.type.toBuffer({ recordId, text: '患者有高血压病史，口服氨氯地平。', sourceSystem: 'it', timestamp: Date.now(), metadata: null, ...extra });


const keysOf = (ms: readonly InputMessage[]): string[] => ms.map((m) => m.key?.toString() ?? '');

describe('hostile input on the real broker and registry', { skip, timeout: 180_000 }, () => {
  const s = services as Services;
  const names = testRun('it.hostile');
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const logs: string[] = [];
  let service: RunningService | null = null;
  let events: InputMessage[] = [];
  let dead: InputMessage[] = [];
  const goodKeys: string[] = [];

  before(async () => {
    const { config } = loadConfig(runEnv(s, names, { KAFKA_TOPIC_PARTITIONS: '1', CNER_HTTP_PORT: '0', KAFKA_COMPRESSION: 'zstd' }));
    service = await startService({ config, log: capturingLogger(logs), httpHost: '127.0.0.1', backoff: BACKOFF });
    const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
    const id = await registry.register(`${names.input}-value`, emr.text);
    const send = async (key: string, value: Buffer, options: { compression?: 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd'; headers?: Record<string, Buffer | Buffer[]> } = {}): Promise<void> => {
      await kafka!.produce(names.input, [{ key: Buffer.from(key), value, headers: options.headers ?? {} }], options.compression === undefined ? {} : { compression: options.compression });
    };
    const good = async (key: string, compression?: 'gzip' | 'snappy' | 'lz4' | 'zstd'): Promise<void> => {
      goodKeys.push(key);
      await send(key, frame(id, record(key)), compression === undefined ? {} : { compression });
    };

    // Every codec, one batch each (several records, so the batch really is compressed).
    for (const codec of ['gzip', 'snappy', 'lz4', 'zstd'] as const) {
      const keys = [1, 2, 3].map((i) => `${codec}-${i}`);
      goodKeys.push(...keys);
      await kafka!.produce(names.input, keys.map((k) => ({ key: Buffer.from(k), value: frame(id, record(k, { text: '胸部CT示右肺结节。'.repeat(20) })), headers: {} })), { compression: codec });
    }
    // recordId "", text "", sourceSystem "", timestamp 0, metadata: branch 1, a map block of 2^40 entries, one key and value.
    await send('huge-map', frame(id, HUGE_MAP_EMR_BODY));
    await good('after-huge-map');
    await send('bad-utf8', frame(id, emrBodyWithInvalidUtf8('bad-utf8')));
    await good('after-bad-utf8');
    await send('repeated-headers', Buffer.alloc(0), { headers: { 'x-hop': [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')], 'x-one': Buffer.from('1') } });
    await good('after-repeated-headers');

    const expectedDead = 3;
    [events, dead] = await Promise.all([
      kafka!.collect(names.output, { timeoutMs: 90_000, until: (m) => m.length >= goodKeys.length }),
      kafka!.collect(names.dlt, { timeoutMs: 90_000, until: (m) => m.length >= expectedDead }),
    ]);
  });

  after(async () => {
    await service?.stop();
    await kafka?.deleteTopics([names.input, names.output, names.dlt]).catch(() => {});
  });

  const deadLetter = (key: string): InputMessage => {
    const m = dead.find((d) => d.key?.toString() === key);
    assert.ok(m, `${key} is in the dead-letter topic (found ${keysOf(dead).join(', ')})`);
    return m;
  };

  it('reads batches compressed with gzip, snappy, lz4 and zstd, and writes zstd events (KAFKA_COMPRESSION)', () => {
    for (const codec of ['gzip', 'snappy', 'lz4', 'zstd']) {
      for (const i of [1, 2, 3]) assert.ok(keysOf(events).includes(`${codec}-${i}`), `an event for ${codec}-${i}`);
    }
    assert.ok(!logs.some((l) => l.includes('not implemented')), 'no codec is missing');
  });

  it('a map declaring 2^40 entries in 19 bytes is dead-lettered at once, and the records after it are tagged', () => {
    const info = readDeadLetterHeaders(deadLetter('huge-map').headers);
    assert.equal(info?.errorCode, 'UNDECODABLE_VALUE');
    assert.match(info?.message ?? '', /declares a block of 1099511627776 entries/);
    assert.ok(keysOf(events).includes('after-huge-map'));
  });

  it('invalid UTF-8 in an Avro string is dead-lettered, not tagged as U+FFFD', () => {
    const info = readDeadLetterHeaders(deadLetter('bad-utf8').headers);
    assert.equal(info?.errorCode, 'UNDECODABLE_VALUE');
    assert.match(info?.message ?? '', /not valid UTF-8/);
    assert.ok(!keysOf(events).includes('bad-utf8'));
    assert.ok(keysOf(events).includes('after-bad-utf8'));
  });

  it('a dead letter keeps every value of a repeated header, in order', () => {
    const m = deadLetter('repeated-headers');
    assert.deepEqual((m.headers['x-hop'] as Buffer[]).map(String), ['a', 'b', 'c']);
    assert.equal(String(m.headers['x-one']), '1');
    assert.ok(keysOf(events).includes('after-repeated-headers'));
  });

  it('every good record has exactly one event, in order, and nothing else is dead-lettered', () => {
    assert.deepEqual(keysOf(events), goodKeys);
    assert.deepEqual(keysOf(dead).sort(), ['bad-utf8', 'huge-map', 'repeated-headers']);
  });

  it('logs name topic, partition and offset, never record ids', () => {
    assert.ok(logs.some((l) => l.includes('record dead-lettered')));
    for (const line of logs) assert.ok(!/huge-map|bad-utf8|repeated-headers|after-/.test(line), `a log line names a record id: ${line.slice(0, 300)}`);
  });
});

describe('a transient 404 for a schema id', { skip, timeout: 120_000 }, () => {
  const s = services as Services;
  const names = testRun('it.404');
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  let service: RunningService | null = null;
  let notFoundOnce: string | null = null;
  let answered404 = 0;
  // An HTTP proxy in front of the real registry that answers 404 once for one schema id (a registry restarting, a proxy hiccup).
  const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (notFoundOnce !== null && req.url?.endsWith(notFoundOnce) === true) {
      notFoundOnce = null;
      answered404++;
      res.writeHead(404, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
      res.end(JSON.stringify({ error_code: 40403, message: 'Schema not found' }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const target = `${s.registryUrl.replace(/\/apis\/ccompat\/v7$/, '')}${req.url ?? ''}`;
      const body = chunks.length > 0 ? Buffer.concat(chunks) : undefined;
      const headers: Record<string, string> = {};
      for (const h of ['content-type', 'accept', 'authorization']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
      fetch(target, { method: req.method ?? 'GET', headers, ...(body === undefined ? {} : { body }) })
        .then(async (up) => {
          res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await up.arrayBuffer()));
        })
        .catch(() => {
          res.writeHead(502);
          res.end();
        });
    });
  });

  before(async () => {
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  });

  after(async () => {
    await service?.stop();
    proxy.closeAllConnections();
    await new Promise<void>((r) => proxy.close(() => r()));
    await kafka?.deleteTopics([names.input, names.output, names.dlt]).catch(() => {});
  });

  it('dead-letters the record it hit, and tags the next record with that id', async () => {
    const registryUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/apis/ccompat/v7`;
    // The writer schema: EmrRecord with one more optional field, under a subject of its own, so its id is new to the processor.
    const schema = JSON.parse(emr.text) as { fields: unknown[] };
    const writer = JSON.stringify({ ...schema, fields: [...schema.fields, { name: 'ward', type: ['null', 'string'], default: null, doc: 'x' }] });
    const id = await new SchemaRegistry({ url: s.registryUrl, auth: null }).register(`${names.run}.writer-value`, writer);
    const { config } = loadConfig(runEnv({ ...s, registryUrl }, names, { KAFKA_TOPIC_PARTITIONS: '1', CNER_HTTP_PORT: '0' }));
    service = await startService({ config, log: capturingLogger([]), httpHost: '127.0.0.1', backoff: BACKOFF });
    const writerType = (await new SchemaRegistry({ url: s.registryUrl, auth: null }).writerType(id));
    const value = (key: string): Buffer => frame(id, writerType.toBuffer({ recordId: key, text: '胸部CT示右肺结节。', sourceSystem: 'it', timestamp: Date.now(), metadata: null, ward: null }));

    notFoundOnce = `/schemas/ids/${id}`;
    await kafka!.produce(names.input, [{ key: Buffer.from('first'), value: value('first'), headers: {} }]);
    const dead = await kafka!.collect(names.dlt, { timeoutMs: 60_000, until: (m) => m.length >= 1 });
    assert.equal(answered404, 1);
    assert.equal(readDeadLetterHeaders(dead[0]!.headers)?.errorCode, 'UNKNOWN_SCHEMA');

    await kafka!.produce(names.input, [{ key: Buffer.from('second'), value: value('second'), headers: {} }]);
    const events = await kafka!.collect(names.output, { timeoutMs: 60_000, until: (m) => m.length >= 1 });
    assert.deepEqual(keysOf(events), ['second'], 'the id is asked for again, and found');
    const deadAfter = await kafka!.collect(names.dlt, { timeoutMs: 3_000 });
    assert.equal(deadAfter.length, 1, 'only the record that hit the 404 is dead-lettered');
  });
});

describe('outputs larger than the topics accept (max.message.bytes)', { skip, timeout: 180_000 }, () => {
  const s = services as Services;
  const names = testRun('it.oversize');
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  let service: RunningService | null = null;
  const LIMIT = 4_096;

  after(async () => {
    await service?.stop();
    await kafka?.deleteTopics([names.input, names.output, names.dlt]).catch(() => {});
  });

  it('an event too large is dead-lettered (EVENT_TOO_LARGE), a dead letter too large is truncated, a slice too large is sent in parts; the records after them get their events', async () => {
    const limited = { 'max.message.bytes': String(LIMIT) };
    await kafka!.createTopics([
      { topic: names.input, partitions: 1, replicationFactor: 1 },
      { topic: names.output, partitions: 1, replicationFactor: 1, config: limited },
      { topic: names.dlt, partitions: 1, replicationFactor: 1, config: limited },
    ]);
    const { config } = loadConfig(runEnv(s, names, { KAFKA_TOPIC_PARTITIONS: '1', CNER_HTTP_PORT: '0' }));
    service = await startService({ config, log: capturingLogger([]), httpHost: '127.0.0.1', backoff: BACKOFF });
    const id = await new SchemaRegistry({ url: s.registryUrl, auth: null }).register(`${names.input}-value`, emr.text);
    const sentences = '患者3月前因直肠癌行直肠癌根治术。胸部CT示右肺结节。患者有高血压病史，口服氨氯地平。';
    const small = Array.from({ length: 30 }, (_, i) => `small-${i}`);
    await kafka!.produce(names.input, [
      { key: Buffer.from('big-event'), value: frame(id, record('big-event', { text: sentences.repeat(40) })), headers: {} },
      { key: Buffer.from('big-junk'), value: Buffer.alloc(20_000, 0xff), headers: { 'x-origin': Buffer.from('it') } },
      ...small.map((k) => ({ key: Buffer.from(k), value: frame(id, record(k, { text: sentences })), headers: {} })),
    ]);
    const [events, dead] = await Promise.all([
      kafka!.collect(names.output, { timeoutMs: 90_000, until: (m) => m.length >= small.length }),
      kafka!.collect(names.dlt, { timeoutMs: 90_000, until: (m) => m.length >= 2 }),
    ]);
    assert.deepEqual(keysOf(events), small, 'every small record has its event, though together they exceed the limit');
    const bigEvent = dead.find((m) => m.key?.toString() === 'big-event');
    assert.equal(readDeadLetterHeaders(bigEvent!.headers)?.errorCode, 'EVENT_TOO_LARGE');
    assert.ok(Number(String(bigEvent!.headers['cner_dlt-value-truncated'])) > LIMIT, 'its value was cut, and the header gives the original size');
    const junk = dead.find((m) => m.key?.toString() === 'big-junk');
    assert.equal(readDeadLetterHeaders(junk!.headers)?.errorCode, 'UNDECODABLE_VALUE');
    assert.equal(String(junk!.headers['cner_dlt-value-truncated']), '20000');
    assert.equal(String(junk!.headers['x-origin']), 'it', 'original headers kept');
    assert.ok(junk!.value!.length < LIMIT && junk!.value!.every((b) => b === 0xff), 'a prefix of the value');
  });
});
