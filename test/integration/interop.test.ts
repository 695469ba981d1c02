// Interop with a client from another ecosystem, on the real broker and
// registry: Confluent's librdkafka-based Python client with its Avro
// serializer (test/integration/interop/confluent_roundtrip.py, in its own
// small environment: scripts/interop-venv.sh) produces EmrRecords with each
// codec, gzip, snappy, lz4 and zstd; the processor writes its events and dead
// letters with the same codec (KAFKA_COMPRESSION); the Python client reads the
// events back with isolation.level=read_committed and Confluent's Avro
// deserializer. Also: a null-valued and a repeated header from librdkafka.
// The processor links its DIS entities with the tiny re-ranked linker: Confluent's
// deserializer reads the codes (and a consumer on the first schema reads the
// events without them).

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { COMPRESSIONS, loadConfig } from '../../src/config.js';
import { openLinker } from '../../src/model/linker.js';
import { SCHEMA_DIR } from '../../src/records/avro.js';
import { NULL_HEADERS } from '../../src/kafka/adapter.js';
import { type RunningService, startService } from '../../src/service.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { ROOT, type Services, getServices, runEnv, silentLogger, testRun, tools } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
const run = promisify(execFile);
const RECORDS = 6;
const V1_SCHEMA = path.join(ROOT, 'schemas', 'history', 'ClinicalEntities.v1.avsc');
// The tiny linker with a re-ranker: retrieval and re-ranking both on the processor's inference workers.
const TINY_LINKER = path.join(ROOT, 'fixtures', 'tiny-reranked-linker-bundle');

interface Read {
  readonly key: string | null;
  readonly value: {
    recordId: string;
    modelVersion: string;
    linkerVersion?: string | null;
    entities: { type: string; start: number; end: number; text: string; codes?: { system: string; code: string; name: string; score: number }[] }[];
  } | null;
  readonly headers: [string, string | null][];
}

describe('interop with Confluent\'s Python client (librdkafka, Avro serializer)', { skip, timeout: 600_000 }, () => {
  const s = services as Services;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const topics: string[] = [];
  let service: RunningService | null = null;

  after(async () => {
    await service?.stop();
    await kafka?.deleteTopics(topics).catch(() => {});
  });

  // Created on first use (pip, from PyPI), then cached under ~/.cache/cner.
  const python = typeof services === 'string' ? '' : execFileSync('bash', [path.join(ROOT, 'scripts', 'interop-venv.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();

  for (const [i, codec] of COMPRESSIONS.filter((c) => c !== 'none').entries()) {
    // The first run also plays a consumer that has not upgraded: the output subject already holds
    // ClinicalEntities v1, the processor registers today's version over it (the registry checks
    // BACKWARD compatibility), and the Python client reads the events with v1 as its reader schema.
    const oldReader = i === 0;
    const title = oldReader ? ', read with the first ClinicalEntities schema by a consumer that has not upgraded' : '';
    it(`${codec}: records in, one event each for a read_committed reader, dead letters with every header${title}`, async () => {
      const names = testRun(`it.interop.${codec}`);
      topics.push(names.input, names.output, names.dlt);
      const { config } = loadConfig(runEnv(s, names, { KAFKA_TOPIC_PARTITIONS: '1', CNER_HTTP_PORT: '0', KAFKA_COMPRESSION: codec, CNER_LINKER_DIR: TINY_LINKER }));
      const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
      const v1 = readFileSync(V1_SCHEMA, 'utf8');
      const v1Id = oldReader ? await registry.register(`${names.output}-value`, JSON.stringify(JSON.parse(v1))) : null;
      service = await startService({ config, log: silentLogger(), httpHost: '127.0.0.1', backoff: { initialMs: 50, maxMs: 1_000, multiplier: 2, jitter: 0.2 } });
      const script = path.join(ROOT, 'test', 'integration', 'interop', 'confluent_roundtrip.py');
      const args = [script, s.brokers, s.registryUrl, names.input, names.output, names.dlt, codec, String(RECORDS), path.join(SCHEMA_DIR, 'EmrRecord.avsc')];
      const { stdout } = await run(python, oldReader ? [...args, V1_SCHEMA] : args, {
        timeout: 240_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      await service.stop();
      service = null;
      const result = JSON.parse(stdout) as { sent: string[]; events: Read[]; dead: Read[] };

      assert.deepEqual(result.events.map((e) => e.key), result.sent, 'one event per record, in order');
      const linker = await openLinker(TINY_LINKER, { workers: 0 });
      try {
        for (const e of result.events) {
          assert.equal(e.value?.recordId, e.key, 'decoded by Confluent\'s Avro deserializer');
          assert.equal(typeof e.value?.modelVersion, 'string');
          assert.ok(e.value.entities.some((x) => x.type === 'DIS'), `entities found in ${e.key}`);
          const fields = Object.keys(e.value.entities[0]!).sort();
          if (oldReader) {
            assert.deepEqual(fields, ['confidence', 'end', 'label', 'start', 'text', 'type'], 'the v1 reader sees v1 fields only');
            assert.ok(!('linkerVersion' in e.value));
            continue;
          }
          assert.deepEqual(fields, ['codes', 'confidence', 'end', 'label', 'start', 'text', 'type']);
          assert.equal(e.value.linkerVersion, linker.version);
          for (const x of e.value.entities) {
            // What the linker gives the entity's text, to float32 (the schema's score).
            const expected = x.type === 'DIS' ? (await linker.link([x.text]))[0]! : [];
            assert.deepEqual(x.codes?.map((c) => [c.system, c.code, c.name]), expected.map((c) => [c.system, c.code, c.name]), x.text);
            x.codes?.forEach((c, j) => assert.ok(Math.abs(c.score - expected[j]!.score) < 1e-6));
          }
        }
      } finally {
        await linker.close();
      }
      if (v1Id !== null) {
        const latest = await registry.latestSchemaId(`${names.output}-value`);
        assert.notEqual(latest, v1Id, 'today\'s schema registered as a new version over v1');
      }
      assert.equal(result.dead.length, 1);
      const d = result.dead[0]!;
      assert.equal(d.key, `${codec}-poison`);
      const header = (name: string): (string | null)[] => d.headers.filter(([k]) => k === name).map(([, v]) => v);
      assert.deepEqual(header('x-rep'), ['a', 'b'], 'a repeated header keeps every value, in order');
      assert.deepEqual(header('x-null'), [''], 'the null-valued header is kept (written empty: kafkajs cannot write null)');
      assert.deepEqual(JSON.parse(header(NULL_HEADERS)[0] ?? 'null'), [['x-null', 0]], 'and listed as null');
      assert.deepEqual(header('cner_error-code'), ['UNDECODABLE_VALUE']);
    });
  }
});
