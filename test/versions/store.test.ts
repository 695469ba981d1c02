import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { rejectReason } from '../../src/versions/archive.js';
import type { ModelVersionInfo } from '../../src/versions/catalog.js';
import { BundleStore } from '../../src/versions/store.js';
import { bundleRecords } from '../../src/versions/topic.js';
import { silentLogger } from '../../src/model/log.js';
import { loadBundle } from '../../src/model/bundle.js';
import { tinyVariant, withLinker } from '../model/variants.js';

async function publication(version: string, dir?: string): Promise<{ info: ModelVersionInfo; parts: Map<number, Buffer> }> {
  const { info, records } = await bundleRecords(dir ?? (await tinyVariant(version)), { partBytes: 50_000 });
  const parts = new Map<number, Buffer>();
  for (const r of records) if (r.kind === 'part') parts.set(r.part.index, Buffer.from(r.part.data));
  return { info, parts };
}

describe('BundleStore', () => {
  it('caches a verified publication, finds it again after a restart, and remembers the live one', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cner-store-'));
    const store = new BundleStore(dir, silentLogger);
    await store.open();
    const { info, parts } = await publication('s1');
    const v = await store.add(info, parts);
    assert.equal(v.dir, path.join(dir, info.sha256));
    assert.equal((JSON.parse(await readFile(path.join(v.dir, 'manifest.json'), 'utf8')) as { version: string }).version, 's1');
    await store.rememberLive('s1', info.sha256);

    await mkdir(path.join(dir, `${info.sha256}.tmp-999`)); // an interrupted write
    const again = new BundleStore(dir, silentLogger);
    await again.open();
    assert.deepEqual(again.versions, ['s1']);
    assert.equal((await again.lastLive())?.info.version, 's1');
    assert.ok(!(await readdir(dir)).some((n) => n.includes('.tmp-')), 'interrupted writes are cleared');
  });

  it('caches a bundle that carries its linker with the linker in linker/, and the cached bundle opens with its linker', async () => {
    const source = await withLinker('s-linked');
    const store = new BundleStore(await mkdtemp(path.join(tmpdir(), 'cner-store-')), silentLogger);
    await store.open();
    const { info, parts } = await publication('s-linked', source);
    const v = await store.add(info, parts);
    assert.deepEqual((await readdir(path.join(v.dir, 'linker'))).sort(), (await readdir(path.join(source, 'linker'))).sort());
    for (const name of await readdir(path.join(source, 'linker'))) {
      assert.ok((await readFile(path.join(v.dir, 'linker', name))).equals(await readFile(path.join(source, 'linker', name))), name);
    }
    const bundle = await loadBundle(v.dir); // every listed file, linker/ included, checked against its sha256
    assert.equal(bundle.linkerDir, path.join(v.dir, 'linker'));
    assert.equal(bundle.manifest.linker?.version, 'tiny-linker-0');
  });

  it('rejects a publication whose parts do not add up to its sha256, and caches nothing', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cner-store-'));
    const store = new BundleStore(dir, silentLogger);
    await store.open();
    const { info, parts } = await publication('s2');
    parts.set(0, Buffer.from(parts.get(0)!).fill(7, 100, 110));
    await assert.rejects(store.add(info, parts), (e: unknown) => rejectReason(e) === 'checksum');
    assert.deepEqual(store.versions, []);
    assert.deepEqual((await readdir(dir)).filter((n) => n !== 'live.json'), []);
  });

  it('prunes every bundle it is not told to keep', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cner-store-'));
    const store = new BundleStore(dir, silentLogger);
    await store.open();
    const a = await publication('a1');
    const b = await publication('b1');
    await store.add(a.info, a.parts);
    await store.add(b.info, b.parts);
    await store.prune(new Set([b.info.sha256]));
    assert.deepEqual(store.versions, ['b1']);
    assert.deepEqual(await readdir(dir), [b.info.sha256]);
  });
});
