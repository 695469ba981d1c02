// Failure counts are per partition, on the real broker: a slice that keeps
// failing retriably on one partition reaches its last attempt (where
// planTransaction dead-letters the record) while another partition keeps
// committing. Before, every commit of any partition reset the one failure
// slot: the record was tried for ever and never dead-lettered.
//
// The stream loop runs with a plan of the test's own (the real one cannot be
// made to fail retriably for one record on demand); everything else is real:
// kafkajs consumer and transactional producer, the broker, the offsets.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createKafkaClient } from '../../src/kafka/adapter.js';
import type { TransactionPlan } from '../../src/stream/plan.js';
import { StreamProcessor } from '../../src/stream/loop.js';
import type { InputMessage } from '../../src/kafka/port.js';
import { CnerError } from '../../src/errors.js';
import { Health } from '../../src/observability/health.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { type Services, getServices, silentLogger, testRun, tools } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
const LAST_ATTEMPT = 4;

describe('failure counts per partition', { skip, timeout: 120_000 }, () => {
  const s = services as Services;
  const names = testRun('it.partfail');
  const admin = typeof services === 'string' ? null : tools(s.brokers);
  let stream: StreamProcessor | null = null;
  let feeder: NodeJS.Timeout | undefined;

  after(async () => {
    clearInterval(feeder);
    await stream?.stop();
    await admin?.deleteTopics([names.input, names.output]).catch(() => {});
  });

  it('a slice failing retriably on one partition reaches its last attempt while the other partition commits', async () => {
    await admin!.createTopics([
      { topic: names.input, partitions: 2, replicationFactor: 1 },
      { topic: names.output, partitions: 1, replicationFactor: 1 },
    ]);
    const log = silentLogger();
    const kafka = createKafkaClient({ brokers: s.brokers.split(','), clientId: 'cner-it', groupId: names.group, tls: null, sasl: null, sessionTimeoutMs: 10_000, log, retries: 3 });
    const attempts: number[] = [];
    const commitsMeanwhile: number[] = [];
    let otherCommits = 0;
    const plan = async (messages: readonly InputMessage[], attempt: number): Promise<TransactionPlan> => {
      if (messages.some((m) => m.key?.toString() === 'poison')) {
        attempts.push(attempt);
        commitsMeanwhile.push(otherCommits);
        // (planTransaction throws a retriable failure until the last attempt, then dead-letters.)
        if (attempt < LAST_ATTEMPT) throw new CnerError('INFERENCE_FAILED', 'fails on purpose');
      } else {
        otherCommits++;
      }
      return {
        messages: messages.map((m) => ({ topic: names.output, key: m.key, value: m.value, headers: {} })),
        records: messages.map((m) => ({ kind: 'event', format: 'json', timestamp: m.timestamp, entityTypes: [] })),
      };
    };
    const metrics = createMetrics({ defaultMetrics: false });
    const health = new Health(metrics, log);
    stream = new StreamProcessor({
      kafka,
      inputTopic: names.input,
      transactionalIdPrefix: `${names.run}-tx`,
      plan,
      maxRecordsPerTransaction: 16,
      sessionBackoff: { initialMs: 50, maxMs: 500, multiplier: 2, jitter: 0 },
      retryBackoff: { initialMs: 200, maxMs: 400, multiplier: 1, jitter: 0 },
      heartbeatIntervalMs: 500,
      health,
      metrics,
      log,
    });
    stream.start();
    await admin!.produce(names.input, [{ key: Buffer.from('poison'), value: Buffer.from('p'), headers: {} }]);
    // Records on both partitions (keys spread over them) keep coming while the poison slice fails.
    let n = 0;
    feeder = setInterval(() => {
      void admin!.produce(names.input, Array.from({ length: 4 }, () => ({ key: Buffer.from(`k${n++}`), value: Buffer.from('x'), headers: {} }))).catch(() => {});
    }, 100);
    const out = await admin!.collect(names.output, { timeoutMs: 60_000, until: (m) => m.some((x) => x.key?.toString() === 'poison') });
    clearInterval(feeder);
    assert.ok(out.some((x) => x.key?.toString() === 'poison'), `the poison slice was committed on its last attempt (attempts: ${attempts.join(',')})`);
    assert.deepEqual(attempts, [1, 2, 3, 4]);
    assert.ok(commitsMeanwhile[LAST_ATTEMPT - 1]! > commitsMeanwhile[0]!, `the other partition committed meanwhile (${commitsMeanwhile.join(',')})`);
  });
});
