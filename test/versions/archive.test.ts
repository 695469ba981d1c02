import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Header } from 'tar';
import { packBundle, reassemble, rejectReason, sha256Hex, splitArchive, unpackArchive } from '../../src/versions/archive.js';
import { checkContents } from '../../src/versions/store.js';
import { PACKAGE_ROOT } from '../../src/config.js';
import { TINY, TINY_LINKER, tinyVariant, withLinker } from '../model/variants.js';

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

  it('packs a bundle\'s linker/ folder as linker/<file> entries, one level deep, and unpacks them', async () => {
    const dir = await withLinker('v-linked');
    await mkdir(path.join(dir, 'linker', 'deeper'));
    await writeFile(path.join(dir, 'linker', 'deeper', 'x'), 'x');
    await mkdir(path.join(dir, 'other'));
    await writeFile(path.join(dir, 'other', 'y'), 'y');
    const a = await packBundle(dir);
    assert.ok(a.equals(await packBundle(dir)));
    const files = await unpackArchive(a);
    const linkerNames = (await readdir(TINY_LINKER)).map((n) => `linker/${n}`);
    assert.deepEqual([...files.keys()], [...(await readdir(TINY)), ...linkerNames].sort());
    for (const n of linkerNames) assert.ok(files.get(n)!.equals(await readFile(path.join(TINY_LINKER, n.slice('linker/'.length)))), n);
  });

  it('rejects entries that are not plain files of the bundle or of its linker/ folder', async () => {
    const entries = [
      ['../evil', 'File'], ['dir/x', 'File'], ['link', 'SymbolicLink'], ['..', 'File'],
      ['linker/../evil', 'File'], ['linker/deeper/x', 'File'], ['linker/', 'Directory'], ['linker/..', 'File'], ['/linker/x', 'File'], ['linker/link', 'SymbolicLink'],
    ] as const;
    for (const [p, type] of entries) {
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
    // a linker/ folder needs the manifest's linker entry
    const linked = await unpackArchive(await packBundle(await withLinker('v2')));
    checkContents(info, linked);
    const manifest = JSON.parse(linked.get('manifest.json')!.toString()) as Record<string, unknown>;
    delete manifest['linker'];
    linked.set('manifest.json', Buffer.from(JSON.stringify(manifest)));
    assert.equal(await reasonOf(() => checkContents(info, linked)), 'manifest');
  });

  const python = path.join(PACKAGE_ROOT, '.venv', 'bin', 'python');
  it('reads archives written by the Python publisher', { skip: existsSync(python) ? false : 'no .venv (scripts/setup.sh)' }, async () => {
    const script = 'import sys; from pathlib import Path; from cner_train.publish import pack_bundle; sys.stdout.buffer.write(pack_bundle(Path(sys.argv[1])))';
    const archive = execFileSync(python, ['-c', script, TINY], { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, PYTHONPATH: path.join(PACKAGE_ROOT, 'training', 'src') } });
    const files = await unpackArchive(archive);
    for (const n of (await readdir(TINY)).sort()) assert.ok(files.get(n)!.equals(await readFile(path.join(TINY, n))), n);
    // and with a linker/ folder: the same files as the TypeScript archive (the bytes differ: octal padding)
    const linked = await withLinker('v-linked');
    const fromPython = execFileSync(python, ['-c', script, linked], { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, PYTHONPATH: path.join(PACKAGE_ROOT, 'training', 'src') } });
    const ours = await unpackArchive(await packBundle(linked));
    const theirs = await unpackArchive(fromPython);
    assert.deepEqual([...theirs.keys()], [...ours.keys()]);
    assert.ok([...ours.keys()].some((n) => n.startsWith('linker/')));
    for (const [n, data] of ours) assert.ok(theirs.get(n)!.equals(data), n);
  });
});
