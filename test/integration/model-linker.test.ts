// The ICD-10 linker travelling inside the model bundle, against the real
// broker and registry (docs/model-versions.md, "A bundle that carries its
// linker"): a processor with CNER_LINKER_DIR=bundle serves v1,
// a bundle without a linker (no codes, linkerVersion null); v2, the same
// tagger with the tiny linker attached (by `cner-train link-attach` and
// published by `cner-train publish` when the training venv has them), is
// published and made live: the events after the switch carry the linker's
// codes and its own version; rolling back to v1 removes them again. One event
// per record throughout; in each partition (model, linker) runs v1/none →
// v2/tiny-linker-0 → v1/none, the switches falling between transactions.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { sha256File } from '../../src/model/bundle.js';
import { openLinker } from '../../src/model/linker.js';
import { loadSchema, unframe } from '../../src/records/avro.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { type RunningService, startService } from '../../src/service.js';
import { ModelTopicWriter } from '../../src/versions/topic.js';
import type { InputMessage } from '../../src/kafka/port.js';
import { TABLE_BUNDLE } from '../model/helpers.js';
import { TINY_LINKER, attachLinker } from '../model/variants.js';
import { ROOT, type Services, capturingLogger, getServices, jsonRecord, runEnv, testRun, tools, waitFor } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
/** The table bundle tags 肺炎 as DIS (and ＣＴ as EXA, which the linker does not link). */
const TEXT = '患者查ＣＴ示肺炎。';
const MAX_RECORDS = 2_000;

type Event = { recordId: string; modelVersion: string; linkerVersion: string | null; entities: { type: string; text: string; codes: { system: string; code: string; name: string; score: number }[] }[] };

/** A copy of the table bundle named `version` (manifest re-hashed). */
async function tableVariant(version: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `cner-it-linker-${version}-`));
  await cp(TABLE_BUNDLE, dir, { recursive: true });
  const file = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(file, 'utf8')) as { version: string; files: Record<string, string> };
  manifest.version = version;
  for (const name of Object.keys(manifest.files)) manifest.files[name] = await sha256File(path.join(dir, name));
  await writeFile(file, JSON.stringify(manifest, null, 2));
  return dir;
}

describe('a linker inside the model bundle: published, switched and rolled back with its tagger', { skip, timeout: 180_000 }, () => {
  const s = services as Services;
  const names = testRun('it.linker');
  const { input, output, dlt, models: modelTopic } = names;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const registry = typeof services === 'string' ? null : new SchemaRegistry({ url: s.registryUrl, auth: null });
  const writer = kafka === null ? null : new ModelTopicWriter(kafka, registry!, modelTopic);
  const logs: string[] = [];
  let service: RunningService | null = null;

  before(async () => {
    await kafka!.createTopics([input, output, dlt].map((topic) => ({ topic, partitions: 2, replicationFactor: 1 })));
  });
  after(async () => {
    await service?.stop().catch(() => {});
    await kafka?.deleteTopics([input, output, dlt, modelTopic]).catch(() => {});
  });

  it('links after the switch to a version carrying a linker, stamps its version, and stops linking after the rollback', async (t) => {
    // The codes the tiny linker gives 肺炎 (the event's float scores are Avro floats).
    const reference = await openLinker(TINY_LINKER, { workers: 0 });
    const expected = (await reference.link(['肺炎']))[0]!.map((c) => ({ ...c, score: Math.fround(c.score) }));
    await reference.close();
    assert.ok(expected.length > 0);

    await writer!.publish(await tableVariant('v1'), { live: true, partBytes: 100_000 });
    const { config } = loadConfig(runEnv(s, names, {
      KAFKA_DLT_TOPIC: dlt,
      KAFKA_CREATE_TOPICS: 'false',
      CNER_MODEL_CACHE_DIR: await mkdtemp(path.join(tmpdir(), 'cner-it-cache-')),
      CNER_MAX_BATCH_SIZE: '4',
      CNER_HTTP_PORT: '0',
      CNER_LOG_LEVEL: 'info',
      CNER_LINKER_DIR: 'bundle', // the served bundle's linker
    }));
    assert.equal(config.model.linker.kind, 'bundle');
    service = await startService({ config, log: capturingLogger(logs, 'info'), httpHost: '127.0.0.1', backoff: { initialMs: 50, maxMs: 1_000, multiplier: 2, jitter: 0.2 } });
    assert.equal(service.models.version, 'v1');

    const type = loadSchema('ClinicalEntities').type;
    const eventOf = (m: InputMessage): Event => type.fromBuffer(unframe(m.value!)!.payload) as Event;
    let produced = 0;
    let keepProducing = true;
    const producing = (async () => {
      while (keepProducing && produced < MAX_RECORDS) {
        const batch = Array.from({ length: 5 }, (_, k) => produced + k);
        await kafka!.produce(input, batch.map((i) => ({ key: Buffer.from(`rec-${i}`), value: jsonRecord(`rec-${i}`, TEXT), headers: {} })));
        produced += batch.length;
        await new Promise((r) => setTimeout(r, 80));
      }
    })();
    const events = async (): Promise<Event[]> => (await kafka!.collect(output, { timeoutMs: 1_500, until: (m) => m.length >= produced })).map(eventOf);
    const serves = async (version: string): Promise<void> => {
      const t0 = Date.now();
      await waitFor(`serving ${version}`, 30_000, () => service!.models.version === version, 10);
      t.diagnostic(`live record written → serving ${version}: ${Date.now() - t0} ms`);
    };

    try {
      await waitFor('events from v1', 60_000, async () => (await events()).filter((e) => e.modelVersion === 'v1').length >= 10, 300);

      // v2: the same tagger carrying the tiny linker, attached and published by the training package when it can.
      const python = path.join(ROOT, '.venv', 'bin', 'python');
      const env = { ...process.env, PYTHONPATH: path.join(ROOT, 'training', 'src') };
      const has = (modules: string): boolean => {
        try {
          execFileSync(python, ['-c', `import ${modules}`], { stdio: 'ignore', env });
          return true;
        } catch {
          return false;
        }
      };
      let v2: string;
      if (existsSync(python) && has('cner_train.link_attach')) {
        v2 = path.join(await mkdtemp(path.join(tmpdir(), 'cner-it-v2-')), 'bundle');
        execFileSync(python, ['-m', 'cner_train.cli', 'link-attach', TABLE_BUNDLE, '--linker', TINY_LINKER, '--out', v2, '--version', 'v2'], { stdio: 'pipe', env });
        t.diagnostic('v2 attached by cner-train link-attach (Python)');
      } else {
        v2 = await attachLinker(await tableVariant('v2'), TINY_LINKER);
        t.diagnostic('v2 attached by the test (no .venv with the training package)');
      }
      if (existsSync(python) && has('confluent_kafka, fastavro, requests')) {
        execFileSync(python, ['-m', 'cner_train.cli', 'publish', v2, '--live', 'true', '--part-bytes', '100000', '--topic', modelTopic, '--brokers', s.brokers, '--registry-url', s.registryUrl], { stdio: 'pipe', env });
        t.diagnostic('v2 published by cner-train publish (Python)');
      } else {
        await writer!.publish(v2, { live: true, partBytes: 100_000 });
        t.diagnostic('v2 published by the TypeScript writer');
      }
      await serves('v2');
      const linked = await waitFor('events from v2', 30_000, async () => {
        const got = (await events()).filter((e) => e.modelVersion === 'v2');
        return got.length >= 10 ? got : undefined;
      }, 300);
      for (const e of linked) {
        assert.equal(e.linkerVersion, 'tiny-linker-0', 'the linker\'s own version');
        assert.deepEqual(e.entities.map((x) => [x.type, x.text]), [['EXA', 'ＣＴ'], ['DIS', '肺炎']]);
        assert.deepEqual(e.entities[0]!.codes, []);
        assert.deepEqual(e.entities[1]!.codes.map((c) => ({ ...c })), expected);
      }
      const info = (await service.metrics.linkerInfo.get()).values.find((v) => v.labels.version === 'tiny-linker-0');
      assert.equal(info?.value, 1);

      // Roll back: v1 carries no linker, so no codes.
      const before = (await events()).length;
      await writer!.setLive('v1', { reason: 'rollback' });
      await serves('v1');
      await waitFor('events after the rollback', 30_000, async () => (await events()).length > before + 20, 300);
      assert.equal((await service.metrics.linkerInfo.get()).values.find((v) => v.labels.version === 'tiny-linker-0')?.value, 0);
    } finally {
      keepProducing = false;
      await producing;
    }

    const N = produced;
    t.diagnostic(`records produced: ${N}`);
    await waitFor('one event per record', 60_000, async () => (await kafka!.collect(output, { timeoutMs: 3_000, until: (m) => m.length >= N })).length >= N, 500);
    await service.stop();
    service = null;
    const final = await kafka!.collect(output, { timeoutMs: 5_000, until: (m) => m.length > N });
    assert.equal(final.length, N, `exactly one event per record (read_committed saw ${final.length} for ${N})`);
    assert.equal(new Set(final.map((m) => m.key!.toString())).size, N);

    let rolledBack = false;
    for (const p of [0, 1]) {
      const seq = final
        .filter((m) => m.partition === p)
        .sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset)))
        .map(eventOf);
      for (const e of seq) {
        const dis = e.entities.find((x) => x.type === 'DIS')!;
        if (e.modelVersion === 'v2') assert.deepEqual([e.linkerVersion, dis.codes.length], ['tiny-linker-0', expected.length]);
        else assert.deepEqual([e.modelVersion, e.linkerVersion, dis.codes.length], ['v1', null, 0], 'v1 events carry no codes');
      }
      const runs = seq.map((e) => `${e.modelVersion}/${e.linkerVersion ?? 'none'}`).filter((v, i, all) => i === 0 || all[i - 1] !== v);
      assert.ok(['v1/none', 'v1/none,v2/tiny-linker-0', 'v1/none,v2/tiny-linker-0,v1/none'].includes(runs.join(',')), `partition ${p}: ${runs.join(' → ')}`);
      rolledBack ||= runs.length === 3;
    }
    assert.ok(rolledBack, 'records after the rollback were tagged by v1, without codes');
  });
});
