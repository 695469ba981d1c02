import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import pino from 'pino';
import { bundleRecords } from '../../src/versions/topic.js';
import { packBundle } from '../../src/versions/archive.js';
import { ModelManager } from '../../src/versions/manager.js';
import { BUNDLE_LINKER, type LinkerUse, NO_LINKER, openModel } from '../../src/model/model.js';
import { CnerError } from '../../src/errors.js';
import { type ModelTopicRecord, fromAvro, modelSchema } from '../../src/versions/catalog.js';
import { FakeModelTopic } from './fake-topic.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { tagRecord } from '../../src/pipeline/tag.js';
import { TINY, type Variant, tinyVariant, withLinker } from '../model/variants.js';

const live = (version: string): ModelTopicRecord => ({ kind: 'live', live: { version, by: 'test', reason: '', at: Date.now() } });

async function publish(topic: FakeModelTopic, version: string, variant: Variant = 'ok', options: { live?: boolean; corrupt?: boolean } = {}): Promise<void> {
  const { records } = await bundleRecords(await tinyVariant(version, variant), { partBytes: 50_000 });
  await topic.write(options.live === true ? [...records, live(version)] : records, (r) =>
    options.corrupt === true && r.kind === 'part' && r.part.index === 1 ? { kind: 'part', part: { ...r.part, data: Buffer.from(r.part.data).fill(7, 100, 110) } } : r,
  );
}

async function manager(topic: FakeModelTopic, shadowFraction = 0, createTopic = true, cacheDir?: string, linker: LinkerUse = NO_LINKER) {
  const metrics = createMetrics({ defaultMetrics: false });
  const m = new ModelManager({
    defaultDir: TINY,
    cacheDir: cacheDir ?? (await mkdtemp(path.join(tmpdir(), 'cner-cache-'))),
    topic: 't',
    readerGroupId: 'g',
    client: topic,
    decode: async (v) => fromAvro(modelSchema().type.fromBuffer(v)),
    open: (dir) => openModel(dir, { workers: 0, session: { executionProviders: ['cpu'], intraOpThreads: 1, graphOptimizationLevel: 'all' }, linker, linkerOptions: { workers: 0 } }),
    createTopic,
    shadowFraction,
    metrics,
    log: pino({ level: 'silent' }),
    catchUpTimeoutMs: 5_000,
  });
  return { m, metrics };
}

const until = async (what: string, probe: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const rejected = async (metrics: ReturnType<typeof createMetrics>, reason: string): Promise<number> =>
  (await metrics.modelRejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

async function publishDir(topic: FakeModelTopic, dir: string, live: boolean): Promise<void> {
  const { info, records } = await bundleRecords(dir, { partBytes: 50_000 });
  await topic.write(live ? [...records, { kind: 'live', live: { version: info.version, by: 'test', reason: '', at: Date.now() } }] : records);
}

describe('ModelManager', () => {
  it('switches the linker with the model (CNER_LINKER_DIR=bundle): each lease links with its own model\'s, a released one is closed, rollback unlinks', async () => {
    const topic = new FakeModelTopic();
    await publish(topic, 'v1', 'ok', { live: true });
    const { m, metrics } = await manager(topic, 0, true, undefined, BUNDLE_LINKER);
    await m.start();
    assert.equal(m.version, 'v1');
    const onV1 = m.acquire();
    assert.equal(onV1.linker, null, 'v1 carries no linker');

    await publishDir(topic, await withLinker('v2+tiny-linker-0'), true);
    await until('switch to v2', () => m.version === 'v2+tiny-linker-0');
    assert.equal(onV1.linker, null, 'the slice in flight keeps v1 and no linker');
    const onV2 = m.acquire();
    assert.equal(onV2.model.version, 'v2+tiny-linker-0');
    assert.equal(onV2.linker?.version, 'tiny-linker-0');
    const codes = (await onV2.linker.link(['胃癌伴幽门梗阻']))[0]!;
    assert.ok(codes.length > 0 && codes.every((c) => c.system === 'ICD-10-BJ-v601'));
    const info = (await metrics.linkerInfo.get()).values.find((v) => v.labels.version === 'tiny-linker-0');
    assert.equal(info?.value, 1);
    onV1.release();

    await topic.write([live('v1')]);
    await until('rollback to v1', () => m.version === 'v1');
    assert.equal(m.acquire().linker, null, 'rolled back: no linker');
    assert.equal((await metrics.linkerInfo.get()).values.find((v) => v.labels.version === 'tiny-linker-0')?.value, 0);
    // v2's linker lives while its lease does, and is closed with v2 when the lease is released
    assert.equal((await onV2.linker.link(['肺炎'])).length, 1);
    onV2.release();
    let closed = false;
    for (let i = 0, end = Date.now() + 5_000; !closed && Date.now() < end; i++, await new Promise((r) => setTimeout(r, 20))) {
      // a new text each time: a linked text is cached
      closed = await onV2.linker.link([`幽门梗阻${i}`]).then(() => false, (e: unknown) => e instanceof CnerError && e.code === 'MODEL_CLOSED');
    }
    assert.ok(closed, 'v2\'s linker is closed once its last lease is released');
    await m.close();
  });

  it('rejects a version whose carried linker does not match its manifest; the current model keeps serving', async () => {
    const topic = new FakeModelTopic();
    const { m, metrics } = await manager(topic, 0, true, undefined, BUNDLE_LINKER);
    await m.start();
    const broken = await withLinker('v-broken-linker');
    await writeFile(path.join(broken, 'linker', 'names.tsv'), '伪造\tX99\n');
    await publishDir(topic, broken, true);
    await until('rejected', () => m.state.rejected['v-broken-linker'] !== undefined);
    assert.equal(await rejected(metrics, 'checksum'), 1);
    assert.equal(m.version, 'tiny-0');
    assert.equal(m.acquire().linker, null);
    await m.close();
  });

  it('serves the bundled default when the topic is empty', async () => {
    const topic = new FakeModelTopic();
    const { m } = await manager(topic);
    await m.start();
    assert.equal(m.version, 'tiny-0');
    await m.close();
  });

  it('starts on the live version of the topic, switches to a new one, and rolls back', async () => {
    const topic = new FakeModelTopic();
    await publish(topic, 'v1', 'ok', { live: true });
    const { m, metrics } = await manager(topic);
    await m.start();
    assert.equal(m.version, 'v1');

    const held = m.acquire(); // a slice in flight on v1
    await publish(topic, 'v2', 'ok', { live: true });
    await until('switch to v2', () => m.version === 'v2');
    // The slice in flight still tags with v1; the next one gets v2.
    assert.equal(held.model.version, 'v1');
    assert.ok((await tagRecord('患者因胸痛入院。', held.model)) !== undefined);
    const next = m.acquire();
    assert.equal(next.model.version, 'v2');
    held.release();
    next.release();
    const info = (await metrics.modelLive.get()).values;
    assert.deepEqual(info.filter((v) => v.value === 1).map((v) => v.labels.version), ['v2']);

    await topic.write([live('v1')]);
    await until('rollback to v1', () => m.version === 'v1');
    await m.close();
  });

  for (const [variant, reason, corrupt] of [
    ['ok', 'checksum', true],
    ['labels', 'labels', false],
    ['onnx', 'onnx_load', false],
    ['inputs', 'signature', false],
  ] as const) {
    it(`rejects a live version with ${corrupt ? 'a corrupt part' : `bad ${variant}`} (${reason}) and keeps serving`, async () => {
      const topic = new FakeModelTopic();
      await publish(topic, 'v1', 'ok', { live: true });
      const { m, metrics } = await manager(topic);
      await m.start();
      await publish(topic, 'bad', variant, { live: true, corrupt });
      await until(`rejection ${reason}`, () => m.state.rejected['bad'] !== undefined);
      assert.equal(m.state.rejected['bad'], reason);
      assert.equal(await rejected(metrics, reason), 1);
      assert.equal(m.version, 'v1');
      const lease = m.acquire();
      assert.ok(Array.isArray(await tagRecord('患者因胸痛入院。', lease.model)));
      lease.release();
      await m.close();
    });
  }

  it('rejects a version whose parts never all arrive only when it is selected, keeping the current one', async () => {
    const topic = new FakeModelTopic();
    await publish(topic, 'v1', 'ok', { live: true });
    const { m } = await manager(topic);
    await m.start();
    const { records } = await bundleRecords(await tinyVariant('v2'), { partBytes: 50_000 });
    await topic.write([...records.slice(0, 3), live('v2')]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(m.version, 'v1');
    await topic.write(records.slice(3));
    await until('v2 once complete', () => m.version === 'v2');
    await m.close();
  });

  it('reads the topic again after its reader crashed, and picks up what was written meanwhile', async () => {
    const topic = new FakeModelTopic();
    await publish(topic, 'v1', 'ok', { live: true });
    const { m } = await manager(topic);
    await m.start();
    topic.crash();
    await publish(topic, 'v2', 'ok', { live: true });
    assert.equal(m.version, 'v1');
    await until('a new reader and the switch to v2', () => m.version === 'v2', 8_000);
    assert.equal(topic.tails, 2);
    await m.close();
  });

  it('serves the default while the topic does not exist, and follows it once created', async () => {
    const topic = new FakeModelTopic();
    topic.exists = false;
    const { m } = await manager(topic, 0, false);
    await m.start();
    assert.equal(m.version, 'tiny-0');
    await publish(topic, 'v1', 'ok', { live: true });
    topic.exists = true;
    await until('v1 once the topic exists', () => m.version === 'v1', 8_000);
    await m.close();
  });

  it('restarts from its cache: no parts needed for a cached version; the last live one while the topic is unreadable', async () => {
    const cacheDir = await mkdtemp(path.join(tmpdir(), 'cner-cache-'));
    const first = new FakeModelTopic();
    await publish(first, 'v1', 'ok', { live: true });
    const a = await manager(first, 0, true, cacheDir);
    await a.m.start();
    assert.equal(a.m.version, 'v1');
    await a.m.close();

    // The same announcement and live record, without the parts: served from the cache.
    const second = new FakeModelTopic();
    const { records } = await bundleRecords(await tinyVariant('v1'), { partBytes: 50_000 });
    await second.write([records[0]!, live('v1')]);
    const b = await manager(second, 0, true, cacheDir);
    await b.m.start();
    assert.equal(b.m.version, 'v1');
    await b.m.close();

    // The topic cannot be read at all: the last live version from the cache, not the bundled default.
    const broken = new FakeModelTopic();
    broken.endOffsets = async () => {
      throw new Error('broker unavailable');
    };
    const c = await manager(broken, 0, true, cacheDir);
    await c.m.start();
    assert.equal(c.m.version, 'v1');
    await c.m.close();
  });

  it('fetches an archive announced by uri, and rejects one it cannot fetch', async () => {
    const topic = new FakeModelTopic();
    const dir = await tinyVariant('by-uri');
    const archive = await packBundle(dir);
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'cner-uri-')), 'by-uri.tar');
    await writeFile(file, archive);
    const { records } = await bundleRecords(dir, { uri: pathToFileURL(file).href });
    assert.equal(records.length, 1, 'only the announcement');
    await topic.write([...records, live('by-uri')]);
    const { m, metrics } = await manager(topic);
    await m.start();
    assert.equal(m.version, 'by-uri');

    const gone = await bundleRecords(await tinyVariant('gone'), { uri: pathToFileURL(`${file}.missing`).href });
    await topic.write([...gone.records, live('gone')]);
    await until('rejection', () => m.state.rejected['gone'] !== undefined);
    assert.equal(m.state.rejected['gone'], 'unavailable');
    assert.equal(await rejected(metrics, 'unavailable'), 1);
    assert.equal(m.version, 'by-uri');
    await m.close();
  });

  it('runs the newest non-live version in shadow and exports agreement F1', async () => {
    const topic = new FakeModelTopic();
    await publish(topic, 'v1', 'ok', { live: true });
    const { m, metrics } = await manager(topic, 1);
    await m.start();
    await publish(topic, 'v2');
    await until('shadow candidate', () => m.acquire().shadow !== null);
    const lease = m.acquire();
    assert.equal(lease.model.version, 'v1');
    const text = '患者3月前因直肠癌行直肠癌根治术，术后病理示腺癌。';
    assert.equal(lease.shadow!.pick(), true);
    await lease.shadow!.compare(text, await tagRecord(text, lease.model));
    lease.release();
    const f1 = (await metrics.shadowF1.get()).values.find((v) => v.labels.type === 'all');
    assert.equal(f1?.value, 1, 'same weights: full agreement');
    assert.equal(f1?.labels.candidate, 'v2');
    await m.close();
  });
});
