import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CnerError } from '../../src/errors.js';
import { Health } from '../../src/observability/health.js';
import { createMetrics } from '../../src/observability/metrics.js';
import type { TransactionPlan } from '../../src/stream/plan.js';
import { type StreamOptions, StreamProcessor } from '../../src/stream/loop.js';
import type { InputMessage } from '../../src/kafka/port.js';
import { FakeKafka, memoryLogger, retriable, silent, until } from '../helpers.js';

const FAST = { initialMs: 1, maxMs: 5, multiplier: 2, jitter: 0 } as const;

/** One output message per input message, value = "out:<partition>:<offset>". */
function echoPlan(messages: readonly InputMessage[]): Promise<TransactionPlan> {
  return Promise.resolve({
    messages: messages.map((m) => ({ topic: 'out', key: m.key, value: Buffer.from(`out:${m.partition}:${m.offset}`), headers: {} })),
    records: messages.map((m) => ({ kind: 'event', format: 'json', timestamp: m.timestamp, entityTypes: [] })),
  });
}

function setup(kafka: FakeKafka, overrides: Partial<StreamOptions> = {}, lines?: string[]) {
  const metrics = createMetrics({ defaultMetrics: false });
  const log = lines === undefined ? silent() : memoryLogger(lines);
  const health = new Health(metrics, log);
  health.set('modelLoaded', true);
  health.setAvailable('registry', true);
  const stream = new StreamProcessor({
    kafka,
    inputTopic: 'in',
    transactionalIdPrefix: 'cner-test',
    plan: echoPlan,
    maxRecordsPerTransaction: 4,
    sessionBackoff: FAST,
    retryBackoff: FAST,
    heartbeatIntervalMs: 5,
    health,
    metrics,
    log,
    ...overrides,
  });
  return { stream, metrics, health };
}

function values(kafka: FakeKafka): string[] {
  return kafka.output().map((m) => m.value!.toString());
}

function assertExactlyOnce(kafka: FakeKafka, expected: number): void {
  const out = values(kafka);
  assert.equal(new Set(out).size, out.length, `duplicates in ${out.join(',')}`);
  assert.equal(out.length, expected);
}

const total = (kafka: FakeKafka): number => [...kafka.partitions.values()].reduce((n, l) => n + l.length, 0);
const allCommitted = (kafka: FakeKafka) => () => [...kafka.partitions].every(([p, l]) => kafka.committedOffsets.get(p) === BigInt(l.length));

describe('StreamProcessor', () => {
  it('commits each slice with its offsets in one transaction', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 10 }, (_, i) => `a${i}`));
    kafka.add(1, Array.from({ length: 3 }, (_, i) => `b${i}`));
    const { stream, metrics, health } = setup(kafka);
    stream.start();
    await until('all committed', allCommitted(kafka));
    await stream.stop();
    assertExactlyOnce(kafka, 13);
    // slices of at most 4, offsets = last + 1 of the slice
    assert.deepEqual(
      kafka.transactions.map((t) => `${t.offsets[0]!.partition}:${t.offsets[0]!.offset}:${t.messages.length}`),
      ['0:4:4', '0:8:4', '0:10:2', '1:3:3'],
    );
    assert.equal((await metrics.transactions.get()).values.find((v) => v.labels['result'] === 'committed')?.value, 4);
    assert.equal((await metrics.eventsOut.get()).values[0]?.value, 13);
    assert.equal((await metrics.consumerLag.get()).values.find((v) => v.labels['partition'] === '0')?.value, 0);
    assert.equal(health.snapshot().ready, false, 'not ready once stopping');
  });

  it('plans the next slice once this one is tagged, while this one is still being linked and committed', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 10 }, (_, i) => `a${i}`));
    const steps: string[] = [];
    const finish: (() => void)[] = [];
    const plan = (messages: readonly InputMessage[], _attempt: number, onTagged: () => void): Promise<TransactionPlan> => {
      steps.push(`plan ${messages[0]!.offset}`);
      onTagged();
      return new Promise<void>((resolve) => finish.push(resolve)).then(() => echoPlan(messages)); // linking: until the test says
    };
    kafka.beforeCommit = (messages) => void steps.push(`commit ${messages[0]!.value!.toString()}`);
    const { stream } = setup(kafka, { plan });
    stream.start();
    await until('the second slice planned', () => steps.length === 2);
    assert.deepEqual(steps, ['plan 0', 'plan 4'], 'the slice after it is under way before the first is linked');
    for (let k = 0; k < 3; k++) {
      await until(`plan ${k} waiting`, () => finish.length > k);
      finish[k]!();
    }
    await until('all committed', allCommitted(kafka));
    await stream.stop();
    assert.deepEqual(steps, ['plan 0', 'plan 4', 'commit out:0:0', 'plan 8', 'commit out:0:4', 'commit out:0:8']);
    assertExactlyOnce(kafka, 10);
  });

  it('drops the plan ahead when a slice\'s transaction fails, and plans both again after the seek', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 8 }, (_, i) => `a${i}`));
    const planned: string[] = [];
    const plan = (messages: readonly InputMessage[], attempt: number, onTagged: () => void): Promise<TransactionPlan> => {
      planned.push(`${messages[0]!.offset}@${attempt}`);
      onTagged();
      return echoPlan(messages);
    };
    let failures = 0;
    kafka.beforeCommit = (messages) => {
      if (messages[0]!.value!.toString() === 'out:0:0' && failures++ < 1) throw retriable('TRANSACTION_FAILED');
    };
    const { stream } = setup(kafka, { plan });
    stream.start();
    await until('all committed', allCommitted(kafka));
    await stream.stop();
    assertExactlyOnce(kafka, 8);
    assert.deepEqual(planned, ['0@1', '4@1', '0@2', '4@1'], 'the first plan of offset 4 was dropped unused');
    assert.deepEqual(kafka.transactions.map((t) => t.offsets[0]!.offset), ['4', '8']);
  });

  it('aborts a failed transaction, seeks back to the last committed offset and reads the slice again', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 10 }, (_, i) => `a${i}`));
    let failures = 0;
    kafka.beforeCommit = (messages) => {
      if (messages[0]!.value!.toString() === 'out:0:4' && failures++ < 2) throw retriable('TRANSACTION_FAILED');
    };
    const { stream, metrics } = setup(kafka);
    stream.start();
    await until('all committed', allCommitted(kafka));
    await stream.stop();
    assertExactlyOnce(kafka, 10);
    assert.equal(kafka.aborted, 2);
    assert.deepEqual(kafka.seeks, [
      { partition: 0, offset: '4' },
      { partition: 0, offset: '4' },
    ]);
    assert.equal((await metrics.transactions.get()).values.find((v) => v.labels['result'] === 'aborted')?.value, 2);
    assert.equal((await metrics.retries.get()).values.find((v) => v.labels['code'] === 'TRANSACTION_FAILED')?.value, 2);
    assert.equal(kafka.producersCreated, 1, 'a cleanly aborted transaction keeps the producer');
  });

  it('counts failures per partition: a slice failing retriably reaches its last attempt while other partitions commit', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, ['poison']);
    kafka.add(1, ['b0']);
    const attempts: number[] = [];
    const plan = (messages: readonly InputMessage[], attempt: number): Promise<TransactionPlan> => {
      if (messages[0]!.partition === 0) {
        attempts.push(attempt);
        // (As planTransaction does: the retriable failure is thrown until the last attempt, then dead-lettered.)
        if (attempt < 4) return Promise.reject(retriable('INFERENCE_FAILED'));
      }
      return echoPlan(messages);
    };
    // Partition 1 keeps getting records, so it commits between partition 0's tries.
    const feed = setInterval(() => kafka.add(1, ['b']), 1);
    const { stream } = setup(kafka, { plan });
    stream.start();
    try {
      await until('partition 0 committed', () => kafka.committedOffsets.get(0) === 1n);
    } finally {
      clearInterval(feed);
      await stream.stop();
    }
    assert.deepEqual(attempts, [1, 2, 3, 4]);
    const order = kafka.transactions.map((t) => t.offsets[0]!.partition);
    assert.ok(order.indexOf(0) > 1 && order.slice(0, order.indexOf(0)).every((p) => p === 1), `partition 1 committed meanwhile: ${order.join(',')}`);
  });

  it('marks the registry unavailable while a slice cannot be decoded, and recovers', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, ['a', 'b']);
    let down = 3;
    const states: boolean[] = [];
    const { stream, health } = setup(kafka, {
      plan: async (m) => {
        states.push(health.snapshot().waitingFor.includes('registryAvailable'));
        if (down-- > 0) throw retriable('REGISTRY_UNAVAILABLE', 'schema registry did not answer');
        return echoPlan(m);
      },
    });
    stream.start();
    await until('all committed', allCommitted(kafka));
    assert.deepEqual(states, [false, true, true, true]);
    assert.equal(health.snapshot().ready, true);
    await stream.stop();
    assertExactlyOnce(kafka, 2);
  });

  it('replaces a fenced producer in the same session, fencing again and rereading the committed offset', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 8 }, (_, i) => `a${i}`));
    let fenced = false;
    kafka.beforeCommit = (messages) => {
      if (!fenced && messages[0]!.value!.toString() === 'out:0:4') {
        fenced = true;
        throw retriable('PRODUCER_FENCED');
      }
    };
    const { stream, metrics } = setup(kafka);
    stream.start();
    await until('all committed', allCommitted(kafka));
    await stream.stop();
    assertExactlyOnce(kafka, 8);
    assert.equal(kafka.producersCreated, 2);
    assert.equal(kafka.consumersCreated, 1);
    assert.equal(kafka.epochs.get('cner-test-group-in-0'), 2, 'one producer per partition, named <prefix>-<group>-<topic>-<partition>');
    assert.equal((await metrics.retries.get()).values.find((v) => v.labels['code'] === 'PRODUCER_FENCED')?.value, 1);
  });

  it('one transactional producer per partition, initialized when the partition is assigned', async () => {
    const kafka = new FakeKafka();
    for (let p = 0; p < 3; p++) kafka.add(p, ['x']);
    const { stream } = setup(kafka);
    stream.start();
    await until('all committed', allCommitted(kafka));
    await stream.stop();
    assert.deepEqual([...kafka.epochs.keys()].sort(), ['cner-test-group-in-0', 'cner-test-group-in-1', 'cner-test-group-in-2']);
  });

  it('a processor that wakes up after its partition moved commits nothing, and skips what the new owner committed', async () => {
    // A is "paused" inside its first slice; B takes the partition over (its
    // producer fences A's), processes everything, and stops; A then wakes up.
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 10 }, (_, i) => `a${i}`));
    let release: () => void = () => {};
    const paused = new Promise<void>((r) => (release = r));
    let aPlans = 0;
    const a = setup(kafka, {
      plan: async (m) => {
        if (aPlans++ === 0) await paused;
        return echoPlan(m);
      },
    });
    a.stream.start();
    await until('A inside its first slice', () => aPlans === 1);
    const b = setup(kafka);
    b.stream.start();
    await until('B committed everything', allCommitted(kafka));
    await b.stream.stop();
    release();
    const skipped = async (): Promise<number> => (await a.metrics.skippedCommitted.get()).values[0]?.value ?? 0;
    for (const deadline = Date.now() + 5_000; (await skipped()) < 10 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 2));
    assert.equal(await skipped(), 10, 'A skipped the records B committed');
    await a.stream.stop();
    assertExactlyOnce(kafka, 10);
    assert.deepEqual((await a.metrics.retries.get()).values.map((v) => [v.labels['code'], v.value]), [['PRODUCER_FENCED', 1]], 'A\'s late commit was fenced');
    assert.equal(kafka.aborted, 1);
  });

  it('keeps retrying while the broker is unavailable at the start, not ready meanwhile', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, ['a']);
    kafka.connectFailures = [retriable('BROKER_UNAVAILABLE'), retriable('BROKER_UNAVAILABLE'), retriable('BROKER_UNAVAILABLE')];
    const lines: string[] = [];
    const { stream, health, metrics } = setup(kafka, {}, lines);
    stream.start();
    await until('all committed', allCommitted(kafka));
    assert.equal(health.snapshot().ready, true);
    await stream.stop();
    assertExactlyOnce(kafka, 1);
    assert.equal(lines.filter((l) => l.includes('Kafka unavailable: retrying with backoff')).length, 1, 'logged once, not per retry');
    assert.ok(lines.some((l) => l.includes('Kafka available again')));
    assert.equal((await metrics.unavailable.get()).values.find((v) => v.labels['dependency'] === 'kafka')?.value, 3);
  });

  it('never retries a bug: the processor stops and is no longer live', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, ['a']);
    let calls = 0;
    const { stream, health } = setup(kafka, {
      plan: async () => {
        calls++;
        throw new TypeError('undefined is not a function');
      },
    });
    stream.start();
    await assert.rejects(stream.done, TypeError);
    assert.equal(calls, 1);
    assert.equal(health.snapshot().live, false);
    assert.equal(kafka.transactions.length, 0);
  });

  it('on stop, drops the slice not yet in a transaction and starts no other', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 12 }, (_, i) => `a${i}`));
    let started = 0;
    const { stream } = setup(kafka, {
      plan: async () => {
        started++;
        return new Promise<TransactionPlan>(() => {}); // inference that never ends
      },
    });
    stream.start();
    await until('the first slice in flight', () => started === 1);
    await stream.stop();
    assert.equal(started, 1);
    assert.equal(kafka.transactions.length, 0);
    assert.equal(kafka.committedOffsets.get(0), undefined, 'the next owner reads it again');
  });

  it('on stop, waits for the commit in flight', async () => {
    const kafka = new FakeKafka();
    kafka.add(0, Array.from({ length: 12 }, (_, i) => `a${i}`));
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let commits = 0;
    kafka.commitDelay = async () => {
      if (commits++ === 0) await gate;
    };
    const { stream } = setup(kafka);
    stream.start();
    await until('the first commit in flight', () => commits === 1);
    const stopping = stream.stop();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(kafka.transactions.length, 0, 'stop waits');
    release();
    await stopping;
    assert.equal(kafka.transactions.length, 1);
    assert.equal(kafka.committedOffsets.get(0), 4n);
    assertExactlyOnce(kafka, 4);
    assert.equal(kafka.openOffsetReaders, 0, 'the session closed its offset reader');
  });

  it('exactly once across random transaction failures and session restarts', async () => {
    const kafka = new FakeKafka();
    for (let p = 0; p < 3; p++) kafka.add(p, Array.from({ length: 40 }, (_, i) => `v${p}-${i}`));
    let seed = 42;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    kafka.beforeCommit = () => {
      const r = rand();
      if (r < 0.15) throw retriable('TRANSACTION_FAILED');
      if (r < 0.2) throw retriable('BROKER_UNAVAILABLE');
      if (r < 0.23) throw new CnerError('PRODUCER_FENCED', 'fenced');
    };
    const { stream } = setup(kafka, { maxRecordsPerTransaction: 7 });
    stream.start();
    await until('all committed', allCommitted(kafka), 20_000);
    await stream.stop();
    assertExactlyOnce(kafka, total(kafka));
    assert.equal(kafka.openOffsetReaders, 0, 'every session, restarted or stopped, closed its offset reader');
    assert.ok(kafka.aborted >= 3, `failures were injected (${kafka.aborted})`);
  });
});
