// Model versions on the stream, against the real broker and registry
// (docs/model-versions.md): v1 is published (by the Python publisher when the
// training venv has the `stream` extra, so a Python-written archive is read by
// the processor) and made live before the processor starts; records stream
// through it while v2 is published and made live (a cold load), v1 then runs
// in shadow against v2, a corrupt bundle and one with another label set are
// made live (both rejected while tagging goes on), and v1 is made live again
// (rollback, warm). Every input record must yield exactly one event; in each
// partition the events carry v1, then v2, then v1 (the switches fall between
// transactions); each switch lands within SWITCH_BOUND_MS of its live record.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { loadSchema, unframe } from '../../src/records/avro.js';
import { ModelTopicWriter, bundleRecords, listVersions } from '../../src/versions/topic.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { type RunningService, startService } from '../../src/service.js';
import type { InputMessage } from '../../src/kafka/port.js';
import { tinyVariant } from '../model/variants.js';
import { ROOT, type Services, capturingLogger, getServices, jsonRecord, runEnv, testRun, tools, waitFor } from './helpers.js';

/** A new live version serves within this time of its live record (measured: see docs/model-versions.md). */
const SWITCH_BOUND_MS = 10_000;
// Records keep arriving until the rollback is done (a slow machine must not run out of
// input before the last phase), at most MAX_RECORDS; the count is checked against what was produced.
const MAX_RECORDS = 3_000;
const services = await getServices();
const skip = typeof services === 'string' ? services : false;

describe('model versions: publish, verify, hot-swap, reject, roll back', { skip, timeout: 240_000 }, () => {
  const s = services as Services;
  const names = testRun('it.models');
  const { input, output, dlt, models: modelTopic } = names;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const registry = typeof services === 'string' ? null : new SchemaRegistry({ url: s.registryUrl, auth: null });
  const writer = kafka === null ? null : new ModelTopicWriter(kafka, registry!, modelTopic);
  const logs: string[] = [];
  let service: RunningService | null = null;

  before(async () => {
    await kafka!.createTopics([input, output, dlt].map((topic) => ({ topic, partitions: 3, replicationFactor: 1 })));
  });
  after(async () => {
    await service?.stop().catch(() => {});
    await kafka?.deleteTopics([input, output, dlt, modelTopic]).catch(() => {});
  });

  it('switches between batches, tags every record exactly once, rejects broken versions', async (t) => {
    // v1 on the topic, live, before the processor starts: it must start on v1, not on the bundled tiny-0.
    const v1 = await tinyVariant('v1');
    const python = path.join(ROOT, '.venv', 'bin', 'python');
    // The venv is shared by every checkout (scripts/setup.sh) and its editable
    // install points at the one that last ran setup: run this checkout's sources.
    const env = { ...process.env, PYTHONPATH: path.join(ROOT, 'training', 'src') };
    const hasStreamExtra = (): boolean => {
      try {
        execFileSync(python, ['-c', 'import confluent_kafka, fastavro, requests'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    };
    if (existsSync(python) && hasStreamExtra()) {
      execFileSync(python, ['-m', 'cner_train.cli', 'publish', '--bundle', v1, '--live', 'true', '--part-bytes', '100000', '--topic', modelTopic, '--brokers', s.brokers, '--registry-url', s.registryUrl], { stdio: 'pipe', env });
      t.diagnostic('v1 published by cner-train publish (Python)');
    } else {
      t.diagnostic('v1 published by the TypeScript writer (no .venv with the training package\'s `stream` extra)');
      await writer!.publish(v1, { live: true, partBytes: 100_000 });
    }

    const { config } = loadConfig(runEnv(s, names, {
      KAFKA_DLT_TOPIC: dlt,
      KAFKA_CREATE_TOPICS: 'false',
      CNER_MODEL_CACHE_DIR: await mkdtemp(path.join(tmpdir(), 'cner-it-cache-')),
      CNER_MAX_BATCH_SIZE: '4', // 16 records per transaction: many switch points
      CNER_SHADOW_FRACTION: '0.5',
      CNER_HTTP_PORT: '0',
      CNER_LOG_LEVEL: 'info',
    }));
    service = await startService({ config, log: capturingLogger(logs, 'info'), httpHost: '127.0.0.1', backoff: { initialMs: 50, maxMs: 1_000, multiplier: 2, jitter: 0.2 } });
    assert.equal(service.models.version, 'v1', 'starts on the live version of the topic');

    const type = loadSchema('ClinicalEntities').type;
    const versionOf = (m: InputMessage): string => (type.fromBuffer(unframe(m.value!)!.payload) as { modelVersion: string }).modelVersion;

    // Records keep arriving during everything below.
    let produced = 0;
    let keepProducing = true;
    const producing = (async () => {
      while (keepProducing && produced < MAX_RECORDS) {
        const batch = Array.from({ length: 10 }, (_, k) => produced + k);
        await kafka!.produce(input, batch.map((i) => ({ key: Buffer.from(`rec-${i}`), value: jsonRecord(`rec-${i}`, `患者因胸痛${i % 9}天入院，诊断急性心肌梗死，行冠脉造影。`), headers: {} })));
        produced += batch.length;
        await new Promise((r) => setTimeout(r, 60));
      }
    })();
    const eventsSoFar = async (): Promise<InputMessage[]> => kafka!.collect(output, { timeoutMs: 2_000, until: (m) => m.length >= produced });
    await waitFor('events from v1', 60_000, async () => (await eventsSoFar()).length >= 50, 500);

    const timeSwitch = async (label: string, version: string, act: () => Promise<void>): Promise<number> => {
      const t0 = Date.now();
      await act();
      await waitFor(`switch to ${version}`, SWITCH_BOUND_MS * 3, () => service!.models.version === version, 10);
      const ms = Date.now() - t0;
      t.diagnostic(`live record written → serving ${label}: ${ms} ms`);
      assert.ok(ms < SWITCH_BOUND_MS, `switch to ${version} took ${ms} ms (bound ${SWITCH_BOUND_MS} ms)`);
      return ms;
    };

    // v2: published and made live in one go, so it is loaded cold (not as a shadow candidate).
    const v2 = await tinyVariant('v2');
    await timeSwitch('v2 (cold load)', 'v2', () => writer!.publish(v2, { live: true, partBytes: 100_000 }).then(() => {}));
    const t2 = Date.now();
    await waitFor('an event from v2', SWITCH_BOUND_MS, async () => (await kafka!.collect(output, { timeoutMs: 1_000, until: (m) => m.some((e) => versionOf(e) === 'v2') })).some((e) => versionOf(e) === 'v2'), 100);
    t.diagnostic(`serving v2 → its first committed event visible: ≤ ${Date.now() - t2} ms`);
    // v1, verified and no longer live, is now the shadow candidate.
    await waitFor('v1 in shadow against v2', 20_000, async () => ((await service!.metrics.shadowRecords.get()).values.find((v) => v.labels.candidate === 'v1')?.value ?? 0) > 0, 100);
    const f1 = (await service.metrics.shadowF1.get()).values.find((v) => v.labels.type === 'all' && v.labels.candidate === 'v1');
    assert.equal(f1?.labels.live, 'v2');
    t.diagnostic(`shadow agreement F1 (v1 vs v2, same weights): ${f1?.value}`);
    const listed = await listVersions(kafka!, registry!, modelTopic);
    assert.equal(listed.live, 'v2');
    assert.deepEqual(listed.rows.map((r) => r.version), ['v1', 'v2']);

    // Broken versions made live: rejected, v2 keeps serving.
    const corrupt = await bundleRecords(await tinyVariant('v3-corrupt'), { partBytes: 100_000 });
    await writer!.write([
      ...corrupt.records.map((r) => (r.kind === 'part' && r.part.index === 2 ? { ...r, part: { ...r.part, data: Buffer.from(r.part.data).fill(0x42, 1000, 1016) } } : r)),
      { kind: 'live', live: { version: 'v3-corrupt', by: 'it', reason: 'corrupt', at: Date.now() } },
    ]);
    await writer!.publish(await tinyVariant('v4-labels', 'labels'), { live: true, partBytes: 100_000 });
    const rejected = async (reason: string): Promise<number> => (await service!.metrics.modelRejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    await waitFor('both rejected', 20_000, async () => (await rejected('checksum')) === 1 && (await rejected('labels')) === 1, 100);
    assert.equal(service.models.version, 'v2');
    const before = (await eventsSoFar()).length;
    await waitFor('tagging goes on after the rejections', 30_000, async () => (await eventsSoFar()).length > before + 20, 500);
    assert.match(logs.join(''), /model version v3-corrupt rejected \(checksum\)/);
    assert.match(logs.join(''), /model version v4-labels rejected \(labels\)/);

    // Roll back.
    await timeSwitch('v1 (rollback, warm: loaded as the shadow candidate)', 'v1', () => writer!.setLive('v1', { reason: 'rollback' }));
    const beforeRollbackEvents = (await eventsSoFar()).length;
    await waitFor('tagging goes on after the rollback', 30_000, async () => (await eventsSoFar()).length > beforeRollbackEvents + 20, 500);
    keepProducing = false;
    await producing;
    const N = produced;
    t.diagnostic(`records produced: ${N}`);

    const events = await waitFor('one event per record', 120_000, async () => {
      const got = await kafka!.collect(output, { timeoutMs: 5_000, until: (m) => m.length >= N });
      return got.length >= N ? got : undefined;
    }, 1_000);
    await service.stop();
    service = null;
    const final = await kafka!.collect(output, { timeoutMs: 5_000, until: (m) => m.length > N });
    assert.equal(final.length, N, `exactly one event per record (read_committed saw ${final.length} for ${N})`);
    assert.equal(new Set(final.map((m) => m.key!.toString())).size, N);
    assert.ok(events.length >= N);

    const counts: Record<string, number> = {};
    let rolledBack = false;
    for (const p of [0, 1, 2]) {
      const seq = final.filter((m) => m.partition === p).sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset))).map(versionOf);
      const runs = seq.filter((v, i) => i === 0 || seq[i - 1] !== v);
      for (const v of seq) counts[v] = (counts[v] ?? 0) + 1;
      assert.ok(['v1', 'v1,v2', 'v1,v2,v1'].includes(runs.join(',')), `partition ${p}: versions in order v1 → v2 → v1, got ${runs.join(' → ')}`);
      rolledBack ||= runs.join(',') === 'v1,v2,v1';
    }
    t.diagnostic(`events by model version: ${JSON.stringify(counts)}`);
    assert.ok(rolledBack, 'records after the rollback were tagged by v1 again');
    assert.ok((counts['v2'] ?? 0) > 0, 'some records were tagged by v2');
  });
});
