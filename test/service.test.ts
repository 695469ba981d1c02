// Startup helpers of the service; the whole service runs in test/integration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../src/config.js';
import type { SchemaRegistry } from '../src/records/registry.js';
import { ensureTopics, registerSchemas, startService, topicLimits } from '../src/service.js';
import { CnerError } from '../src/errors.js';
import { FakeKafka, memoryLogger, silent } from './helpers.js';

const { config } = loadConfig({ KAFKA_BROKERS: 'a:1', SCHEMA_REGISTRY_URL: 'http://r', KAFKA_TOPIC_PARTITIONS: '6' });

function fakeRegistry(inputLatestId: number | null, registeredInput: number | null) {
  const calls: string[] = [];
  const registry = {
    register: async (subject: string) => {
      calls.push(`register ${subject}`);
      return subject.startsWith('emr.records.entities') ? 2 : 1;
    },
    lookup: async (subject: string) => {
      calls.push(`lookup ${subject}`);
      return registeredInput;
    },
    latestSchemaId: async (subject: string) => {
      calls.push(`latest ${subject}`);
      return inputLatestId;
    },
    compatibility: async (subject: string) => {
      calls.push(`compatibility ${subject}`);
      return 'NONE';
    },
    setCompatibility: async (subject: string, level: string) => {
      calls.push(`set ${subject} ${level}`);
    },
  } as unknown as SchemaRegistry;
  return { registry, calls };
}

describe('registerSchemas', () => {
  it('registers the output schema and, on an empty input subject, the input schema', async () => {
    const { registry, calls } = fakeRegistry(null, null);
    assert.equal(await registerSchemas(registry, config, 'in', 'out', silent()), 2);
    assert.deepEqual(calls, [
      'register emr.records.entities-value',
      'compatibility emr.records.entities-value',
      'set emr.records.entities-value BACKWARD',
      'lookup emr.records.raw-value',
      'latest emr.records.raw-value',
      'register emr.records.raw-value',
      'compatibility emr.records.raw-value',
      'set emr.records.raw-value BACKWARD',
    ]);
  });
  it('leaves an input subject that producers already own alone', async () => {
    const { registry, calls } = fakeRegistry(3, null);
    await registerSchemas(registry, config, 'in', 'out', silent());
    assert.ok(!calls.includes('register emr.records.raw-value'));
    assert.ok(!calls.includes('set emr.records.raw-value BACKWARD'), 'the producers\' subject is left alone');
    const again = fakeRegistry(1, 1);
    await registerSchemas(again.registry, config, 'in', 'out', silent());
    assert.ok(!again.calls.includes('latest emr.records.raw-value'));
  });
});

describe('ensureTopics', () => {
  it('creates missing topics with the configured partitions', async () => {
    const kafka = new FakeKafka();
    kafka.missing = ['emr.records.raw.DLT'];
    await ensureTopics(kafka, config, silent());
    assert.deepEqual(kafka.created, [{ topic: 'emr.records.raw.DLT', partitions: 6, replicationFactor: 1 }]);
  });
  it('waits (TOPIC_MISSING, retriable) when it may not create them', async () => {
    const kafka = new FakeKafka();
    kafka.missing = ['emr.records.raw'];
    const { config: noCreate } = loadConfig({ KAFKA_BROKERS: 'a:1', SCHEMA_REGISTRY_URL: 'http://r', KAFKA_CREATE_TOPICS: 'false' });
    await assert.rejects(ensureTopics(kafka, noCreate, silent()), (e: unknown) => e instanceof CnerError && e.code === 'TOPIC_MISSING' && e.retriable && /KAFKA_CREATE_TOPICS=true/.test(e.message));
  });
});

describe('topicLimits', () => {
  it('reads max.message.bytes of the output and dead-letter topics', async () => {
    const kafka = new FakeKafka();
    kafka.limits['emr.records.raw.DLT'] = 4_096;
    assert.deepEqual(await topicLimits(kafka, config, silent()), { 'emr.records.entities': 1_048_588, 'emr.records.raw.DLT': 4_096 });
  });
  it('assumes Kafka\'s default, with a warning, without the DescribeConfigs ACL; other failures go to the caller', async () => {
    const lines: string[] = [];
    const denied = Object.assign(new FakeKafka(), { maxMessageBytes: async () => Promise.reject(new CnerError('KAFKA_NOT_AUTHORIZED', 'denied')) });
    assert.deepEqual(await topicLimits(denied, config, memoryLogger(lines)), {});
    assert.ok(lines.some((l) => l.includes('grant DescribeConfigs')));
    const down = Object.assign(new FakeKafka(), { maxMessageBytes: async () => Promise.reject(new CnerError('BROKER_UNAVAILABLE', 'down')) });
    await assert.rejects(topicLimits(down, config, silent()), (e: unknown) => e instanceof CnerError && e.code === 'BROKER_UNAVAILABLE');
  });
});

describe('startService', () => {
  it('fails at once on a missing model bundle (not retried), closing what it opened', async () => {
    const { config: c } = loadConfig({ KAFKA_BROKERS: 'a:1', SCHEMA_REGISTRY_URL: 'http://127.0.0.1:9', CNER_MODEL_DIR: '/nonexistent/bundle', CNER_HTTP_PORT: '0' });
    await assert.rejects(startService({ config: c, log: silent(), kafka: new FakeKafka(), httpHost: '127.0.0.1' }), (e: unknown) => (e as { code?: string }).code === 'BUNDLE_NOT_FOUND');
  });

  it('fails at once on a missing linker bundle, after closing the model it opened', async () => {
    const { config: c } = loadConfig({
      KAFKA_BROKERS: 'a:1',
      SCHEMA_REGISTRY_URL: 'http://127.0.0.1:9',
      CNER_MODEL_DIR: 'fixtures/tiny-bundle',
      CNER_LINKER_DIR: '/nonexistent/linker',
      CNER_HTTP_PORT: '0',
    });
    await assert.rejects(
      startService({ config: c, log: silent(), kafka: new FakeKafka(), modelTopic: null, httpHost: '127.0.0.1' }),
      (e: unknown) => (e as { code?: string }).code === 'BUNDLE_NOT_FOUND',
    );
  });
});
