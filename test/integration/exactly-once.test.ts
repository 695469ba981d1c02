// Exactly once through a crash: `cner serve` is SIGKILLed mid-stream and
// restarted (its partitions' transactional producers fence the dead one's and
// abort its open transactions), then stopped with SIGTERM mid-stream (it drops
// work not yet in a transaction, waits for a commit in flight, leaves the
// group, exits 0) and started once more. A read_committed consumer of the
// output must then see exactly one event per input record.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Services, freePort, getServices, httpGet, jsonRecord, runEnv, spawnServe, testRun, tools, waitFor } from './helpers.js';

const N = 300;
const services = await getServices();
const skip = typeof services === 'string' ? services : false;

describe('exactly once through SIGKILL and restart', { skip, timeout: 240_000 }, () => {
  const s = services as Services;
  const names = testRun('it.eos');
  const { input, output, dlt } = names;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);

  before(async () => {
    await kafka!.createTopics([input, output, dlt].map((topic) => ({ topic, partitions: 3, replicationFactor: 1 })));
  });
  after(async () => {
    await kafka?.deleteTopics([input, output, dlt]).catch(() => {});
  });

  it(`publishes exactly ${N} events for ${N} records`, async (t) => {
    const port = await freePort();
    const env = runEnv(s, names, {
      KAFKA_DLT_TOPIC: dlt,
      KAFKA_CREATE_TOPICS: 'false',
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      CNER_INSTANCE_ID: 'it-instance-0',
      CNER_MAX_BATCH_SIZE: '4', // 16 records per transaction: many transactions
      CNER_HTTP_PORT: String(port),
      CNER_LOG_LEVEL: 'debug', // 'transaction committed' lines time the kill
    });
    const texts = Array.from({ length: N }, (_, i) => `CANARY-EOS-${i}：患者因胸痛${i % 9}天入院，心电图提示ST段抬高，诊断急性心肌梗死。`);

    await kafka!.produce(
      input,
      texts.map((text, i) => ({ key: Buffer.from(`rec-${i}`), value: jsonRecord(`rec-${i}`, text), headers: {} })),
    );

    // Kill it mid-stream: a few transactions in, while it is busy with the next.
    const first = spawnServe(env);
    await waitFor('five committed transactions', 60_000, () => (first.output().match(/"msg":"transaction committed"/g)?.length ?? 0) >= 5, 5);
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 20)));
    first.child.kill('SIGKILL');
    const killed = await first.exited;
    assert.equal(killed.signal, 'SIGKILL');
    const atKill = (await kafka!.collect(output, { timeoutMs: 3_000, until: (m) => m.length >= N })).length;
    t.diagnostic(`SIGKILL with ${atKill} of ${N} events committed`);
    assert.ok(atKill < N, `the kill must land mid-stream (${atKill} of ${N} events were committed already)`);

    // Restart: fences the dead producers, resumes from the committed offsets.
    // Then SIGTERM mid-stream: drops work not in a transaction, waits for a commit in flight, leaves the group, exits 0.
    const second = spawnServe(env);
    let third: ReturnType<typeof spawnServe> | null = null;
    try {
      await waitFor('three transactions after the restart', 90_000, () => (second.output().match(/"msg":"transaction committed"/g)?.length ?? 0) >= 3, 5);
      second.child.kill('SIGTERM');
      const stopped = await second.exited;
      assert.equal(stopped.code, 0, `SIGTERM must exit 0:\n${second.output().slice(-2_000)}`);
      assert.match(second.output(), /transactional producer of the partition ready \(its earlier owner is fenced\)/);
      assert.match(second.output(), /"msg":"stopped"/);
      const group = await kafka!.describeGroup(names.group);
      assert.equal(group.members, 0, `the group was left (state ${group.state})`);
      const atTerm = (await kafka!.collect(output, { timeoutMs: 3_000, until: (m) => m.length >= N })).length;
      t.diagnostic(`SIGTERM with ${atTerm} of ${N} events committed`);

      third = spawnServe(env);
      const ready = await waitFor('the third run to catch up', 120_000, async () => {
        const msgs = await kafka!.collect(output, { timeoutMs: 5_000, until: (m) => m.length >= N });
        return new Set(msgs.map((m) => m.key?.toString())).size >= N ? msgs : undefined;
      }, 1_000);
      t.diagnostic(`caught up: ${ready.length} events visible`);
      assert.equal((await httpGet(port, '/readyz')).status, 200);
      third.child.kill('SIGTERM');
      assert.equal((await third.exited).code, 0);

      // Nothing can be written any more: the count is final.
      const final = await kafka!.collect(output, { timeoutMs: 8_000, until: (m) => m.length > N });
      const keys = final.map((m) => m.key?.toString());
      const distinct = new Set(keys);
      assert.equal(distinct.size, N, 'one event per record');
      assert.equal(final.length, N, `no duplicates (read_committed saw ${final.length} events for ${N} records)`);
      for (let i = 0; i < N; i++) assert.ok(distinct.has(`rec-${i}`), `event for rec-${i}`);
      const committed = await kafka!.committedOffsets(names.group, input);
      const consumed = Object.values(committed).reduce((n, o) => n + Number(o), 0);
      assert.equal(consumed, N, 'committed offsets cover every input record');
      const dead = await kafka!.collect(dlt, { timeoutMs: 1_500 });
      assert.equal(dead.length, 0, 'valid records are never dead-lettered');

      const uncommitted = await kafka!.collect(output, { timeoutMs: 5_000, readUncommitted: true, until: (m) => m.length > N + 200 });
      t.diagnostic(`read_uncommitted sees ${uncommitted.length} events (${uncommitted.length - N} in aborted transactions), read_committed exactly ${final.length}`);

      const logs = first.output() + second.output() + third.output();
      assert.doesNotMatch(logs, /CANARY-EOS/, 'record text never reaches the logs');
    } finally {
      for (const p of [second, third]) {
        if (p !== null && p.child.exitCode === null && p.child.signalCode === null) {
          p.child.kill('SIGKILL');
          await p.exited;
        }
      }
    }
  });
});
