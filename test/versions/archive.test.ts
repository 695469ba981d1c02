import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Header } from 'tar';
import { packBundle, reassemble, rejectReason, sha256Hex, splitArchive, unpackArchive } from '../../src/versions/archive.js';
import { checkContents } from '../../src/versions/store.js';
import { PACKAGE_ROOT } from '../../src/config.js';
import { TINY, tinyVariant } from '../model/variants.js';

const reasonOf = async (fn: () => unknown): Promise<string | null> => {
  try {
    await fn();
  } catch (e) {
    return rejectReason(e) ?? `not a rejection: ${String(e)}`;
  }
  return null;
};

const expectOf = (archive: Buffer, parts: number) => ({ version: 'v', sha256: sha256Hex(archive), size: archive.length, parts });

describe('bundle archive', () => {
  it('is deterministic and unpacks to the bundle files', async () => {
    const a = await packBundle(TINY);
    const b = await packBundle(TINY);
    assert.ok(a.equals(b));
    assert.equal(a.length % 10240, 0);
    const files = await unpackArchive(a);
    const names = (await readdir(TINY)).sort();
    assert.deepEqual([...files.keys()], names);
    for (const n of names) assert.ok(files.get(n)!.equals(await readFile(path.join(TINY, n))), n);
  });

  it('splits into parts that reassemble to the same bytes', async () => {
    const a = await packBundle(TINY);
    const parts = splitArchive(a, 100_000);
    assert.equal(parts.length, Math.ceil(a.length / 100_000));
    assert.ok(parts.every((p) => p.length <= 100_000));
    const back = reassemble(new Map(parts.map((p, i) => [i, p])), expectOf(a, parts.length));
    assert.ok(back.equals(a));
  });

  it('rejects a missing part, a truncated archive and a flipped byte', async () => {
    const a = await packBundle(TINY);
    const parts = splitArchive(a, 100_000);
    const map = (): Map<number, Buffer> => new Map(parts.map((p, i) => [i, Buffer.from(p)]));
    const missing = map();
    missing.delete(2);
    assert.equal(await reasonOf(() => reassemble(missing, expectOf(a, parts.length))), 'missing_parts');
    const short = map();
    short.set(parts.length - 1, parts[parts.length - 1]!.subarray(0, 10));
    assert.equal(await reasonOf(() => reassemble(short, expectOf(a, parts.length))), 'truncated');
    const flipped = map();
    const victim = flipped.get(1)!;
    victim[500] = victim[500]! ^ 0xff;
    assert.equal(await reasonOf(() => reassemble(flipped, expectOf(a, parts.length))), 'checksum');
  });

  it('rejects entries that are not plain files of a flat directory', async () => {
    for (const [p, type] of [['../evil', 'File'], ['dir/x', 'File'], ['link', 'SymbolicLink']] as const) {
      const block = Buffer.alloc(512);
      new Header({ path: p, mode: 0o644, size: 0, mtime: new Date(0), type, ...(type === 'SymbolicLink' ? { linkpath: '/etc/passwd' } : {}) }).encode(block, 0);
      const archive = Buffer.concat([block, Buffer.alloc(1024)]);
      assert.equal(await reasonOf(() => unpackArchive(archive)), 'archive', p);
    }
    assert.equal(await reasonOf(() => unpackArchive(Buffer.from('not a tar at all'.repeat(64)))), 'archive');
  });

  it('checks the label set and the manifest version against the announcement', async () => {
    const ok = await unpackArchive(await packBundle(await tinyVariant('v2')));
    const info = { version: 'v2', labels: JSON.parse(ok.get('labels.json')!.toString()) as string[] } as unknown as Parameters<typeof checkContents>[0];
    checkContents(info, ok);
    assert.equal(await reasonOf(() => checkContents({ ...info, version: 'v3' }, ok)), 'version_mismatch');
    const bad = await unpackArchive(await packBundle(await tinyVariant('v2', 'labels')));
    assert.equal(await reasonOf(() => checkContents(info, bad)), 'labels');
    assert.equal(await reasonOf(() => checkContents({ ...info, labels: ['O'] }, ok)), 'labels');
  });

  const python = path.join(PACKAGE_ROOT, '.venv', 'bin', 'python');
  it('reads archives written by the Python publisher', { skip: existsSync(python) ? false : 'no .venv (scripts/setup.sh)' }, async () => {
    const script = 'import sys; from pathlib import Path; from cner_train.publish import pack_bundle; sys.stdout.buffer.write(pack_bundle(Path(sys.argv[1])))';
    const archive = execFileSync(python, ['-c', script, TINY], { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, PYTHONPATH: path.join(PACKAGE_ROOT, 'training', 'src') } });
    const files = await unpackArchive(archive);
    for (const n of (await readdir(TINY)).sort()) assert.ok(files.get(n)!.equals(await readFile(path.join(TINY, n))), n);
  });
});
