// Exactly once while partitions move between processors, on the real broker:
// processors with different instance ids (as the pods of a Deployment have)
// share one group; partitions move when one is paused past the session
// timeout (SIGSTOP: a long GC, CPU throttling, a frozen node) and when the
// group scales out and in. A read_committed reader must see exactly one event
// per record: no duplicates (the paused processor wakes up with a slice in
// flight and must not commit it) and no gaps.
//
// Why this held before only for SIGKILL: the transactional id was per
// instance, so nothing fenced the earlier owner of a moved partition, and
// kafkajs's sendOffsets carries no group generation (no KIP-447), so the
// broker accepted the stale owner's commit. Each partition now has its own
// transactional id (`<prefix>-<group>-<topic>-<partition>`), initialized by
// whoever takes the partition before it reads the committed offset.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { type ServeProcess, type Services, type TestRun, getServices, jsonRecord, runEnv, spawnServe, testRun, tools, waitFor } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
const PARTITIONS = 4;
const SESSION_TIMEOUT_MS = 6_000; // the broker's group.min.session.timeout.ms

const text = (i: number): string =>
  `CANARY-MOVE-${i}：患者${i % 7 + 1}天前无明显诱因出现胸痛，心电图提示ST段抬高，肌钙蛋白升高。` +
  `行冠状动脉造影示前降支狭窄，予阿司匹林及氯吡格雷治疗。诊断：急性心肌梗死，高血压病${i % 3 + 1}级。`;

const committedLines = (p: ServeProcess): number => p.output().match(/"msg":"transaction committed"/g)?.length ?? 0;

function alive(p: ServeProcess): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

async function stopAll(processes: readonly ServeProcess[]): Promise<void> {
  for (const p of processes) {
    if (!alive(p)) continue;
    p.child.kill('SIGCONT');
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

describe('exactly once while partitions move', { skip, timeout: 300_000 }, () => {
  const s = services as Services;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const runs: TestRun[] = [];

  const newRun = async (prefix: string): Promise<TestRun> => {
    const run = testRun(prefix);
    runs.push(run);
    await kafka!.createTopics([run.input, run.output, run.dlt].map((topic) => ({ topic, partitions: PARTITIONS, replicationFactor: 1 })));
    return run;
  };

  /** Records 0..n-1 (about 100 characters each), produced at once: a backlog keeps the processors busy. */
  const produce = async (run: TestRun, n: number): Promise<void> => {
    for (let from = 0; from < n; from += 500) {
      const ids = Array.from({ length: Math.min(500, n - from) }, (_, i) => from + i);
      await kafka!.produce(run.input, ids.map((i) => ({ key: Buffer.from(`rec-${i}`), value: jsonRecord(`rec-${i}`, text(i)), headers: {} })));
    }
  };

  const env = (run: TestRun, instance: string): Record<string, string> =>
    runEnv(s, run, {
      KAFKA_DLT_TOPIC: run.dlt,
      KAFKA_CREATE_TOPICS: 'false',
      KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      CNER_INSTANCE_ID: instance,
      // The float32 character model (not the tiny one, nor the 1.5× faster int8 default): slices take
      // long enough that a pause lands inside one, and the backlog outlasts both pauses.
      CNER_MODEL_DIR: 'default-f32',
      CNER_MAX_BATCH_SIZE: '4', // 16 records per transaction: many transactions
      CNER_HTTP_PORT: '0',
      CNER_LOG_LEVEL: 'debug', // 'transaction committed' lines time the pauses
    });

  /** Waits until a read_committed reader sees every record's event, then checks that it sees nothing else. */
  const assertExactlyOnce = async (run: TestRun, n: number, t: { diagnostic: (m: string) => void }, processes: readonly ServeProcess[]): Promise<void> => {
    await waitFor('every record to get its event', 180_000, async () => {
      const msgs = await kafka!.collect(run.output, { timeoutMs: 5_000, until: (m) => new Set(m.map((x) => x.key?.toString())).size >= n });
      return new Set(msgs.map((m) => m.key?.toString())).size >= n ? true : undefined;
    }, 1_000);
    for (const p of processes) if (alive(p)) p.child.kill('SIGTERM');
    for (const p of processes) {
      const { code, signal } = await p.exited;
      assert.ok(code === 0 || signal === 'SIGKILL', `a processor stopped with code ${code}:\n${p.output().slice(-3_000)}`);
    }
    // Nothing can be written any more: the counts are final.
    const events = await kafka!.collect(run.output, { timeoutMs: 8_000, until: (m) => m.length > n });
    const keys = events.map((m) => m.key!.toString());
    const distinct = new Set(keys);
    const duplicates = keys.length - distinct.size;
    if (process.env['CNER_IT_DUMP']) {
      const { writeFileSync } = await import('node:fs');
      processes.forEach((p, i) => writeFileSync(`${process.env['CNER_IT_DUMP']}/p${i}.log`, p.output()));
      const seen = new Map<string, number>();
      for (const m of events) seen.set(m.key!.toString(), (seen.get(m.key!.toString()) ?? 0) + 1);
      writeFileSync(`${process.env['CNER_IT_DUMP']}/dups.json`, JSON.stringify(events.filter((m) => seen.get(m.key!.toString())! > 1).map((m) => [m.key!.toString(), m.partition, m.offset])));
    }
    t.diagnostic(`${events.length} events for ${n} records: ${duplicates} duplicates, ${n - distinct.size} gaps`);
    for (let i = 0; i < n; i++) assert.ok(distinct.has(`rec-${i}`), `event for rec-${i}`);
    assert.equal(duplicates, 0, 'no duplicates');
    assert.equal(events.length, n);
    const committed = await kafka!.committedOffsets(run.group, run.input);
    assert.equal(Object.values(committed).reduce((sum, o) => sum + Number(o), 0), n, 'the committed offsets cover every record');
    assert.equal((await kafka!.collect(run.dlt, { timeoutMs: 1_500 })).length, 0, 'nothing dead-lettered');
    const logs = processes.map((p) => p.output()).join('');
    assert.doesNotMatch(logs, /CANARY-MOVE|rec-\d/, 'record text and ids never reach the logs');
  };

  after(async () => {
    await kafka?.deleteTopics(runs.flatMap((r) => [r.input, r.output, r.dlt])).catch(() => {});
  });

  it('a processor paused past the session timeout mid-work, then resumed, commits nothing twice; then the other one', async (t) => {
    const run = await newRun('it.pause');
    const N = 3_000;
    await produce(run, N);
    const a = spawnServe(env(run, 'it-pod-a'));
    const b = spawnServe(env(run, 'it-pod-b'));
    try {
      for (const [name, paused, other] of [['a', a, b], ['b', b, a]] as const) {
        // Pause it while it works: right after one of its commits it is busy with the next slice.
        const before = committedLines(paused);
        await waitFor(`processor ${name} to commit`, 60_000, () => committedLines(paused) >= before + 3, 2);
        paused.child.kill('SIGSTOP');
        const fences = (other.output().match(/its earlier owner is fenced/g) ?? []).length;
        await new Promise((r) => setTimeout(r, SESSION_TIMEOUT_MS + 3_000));
        // The other one took its partitions over: a rebalance, and a producer (a fence) per partition it got.
        await waitFor('the other processor to take the partitions over', 60_000, () => (other.output().match(/its earlier owner is fenced/g) ?? []).length > fences);
        const joins = (paused.output().match(/consumer joined the group/g) ?? []).length;
        paused.child.kill('SIGCONT');
        await waitFor('the resumed processor to rejoin', 60_000, () => (paused.output().match(/consumer joined the group/g) ?? []).length > joins);
      }
      await assertExactlyOnce(run, N, t, [a, b]);
      const logs = a.output() + b.output();
      t.diagnostic(
        `late commits fenced: ${logs.match(/the partition moved to another processor/g)?.length ?? 0}; ` +
          `batches trimmed of records an earlier owner had committed: ${logs.match(/already committed/g)?.length ?? 0}`,
      );
    } finally {
      await stopAll([a, b]);
    }
  });

  it('scaling out 1 → 3 and in 3 → 1 mid-stream, with new instance ids, keeps one event per record', async (t) => {
    const run = await newRun('it.scale');
    const N = 3_000;
    await produce(run, N);
    const first = spawnServe(env(run, 'it-pod-1'));
    const more: ServeProcess[] = [];
    try {
      await waitFor('the first processor to commit', 60_000, () => committedLines(first) >= 5, 2);
      more.push(spawnServe(env(run, 'it-pod-2')), spawnServe(env(run, 'it-pod-3')));
      await waitFor('the new processors to commit', 60_000, () => more.every((p) => committedLines(p) >= 3), 2);
      // Scale in as Kubernetes does: SIGTERM (drop work not in a transaction, wait for a commit in flight, leave).
      for (const p of more) p.child.kill('SIGTERM');
      for (const p of more) assert.equal((await p.exited).code, 0, `SIGTERM exits 0:\n${p.output().slice(-2_000)}`);
      await assertExactlyOnce(run, N, t, [first, ...more]);
    } finally {
      await stopAll([first, ...more]);
    }
  });
});
