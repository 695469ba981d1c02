import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import path from 'node:path';
import { cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { command as link } from '../../src/cli/link.js';
import { command } from '../../src/cli/tag.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { TABLE_BUNDLE } from '../model/helpers.js';
import { TINY_RERANKED_LINKER, attachLinker } from '../model/variants.js';
import { memoryIo } from './helpers.js';

const copyOf = async (dir: string): Promise<string> => {
  const copy = await mkdtemp(path.join(tmpdir(), 'cner-tag-'));
  await cp(dir, copy, { recursive: true });
  return copy;
};
const lines = (...objs: unknown[]): string => objs.map((o) => (typeof o === 'string' ? o : JSON.stringify(o))).join('\n') + '\n';
const parse = (out: string): Record<string, unknown>[] => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('cner tag', () => {
  it('writes one line per input, in order, with the id and CCKS-style entities', async () => {
    const io = memoryIo(
      lines(
        { id: 'a', text: '患者查ＣＴ示肺炎。' },
        '',
        { originalText: '头部有疼' },
        { id: 7, text: '' },
      ),
    );
    assert.equal(await command.run(['--model', TABLE_BUNDLE, '--workers', '0'], io), 0);
    const out = parse(io.out());
    assert.equal(out.length, 3); // the blank line is not an input
    assert.equal(out[0]!['id'], 'a');
    const ents = out[0]!['entities'] as Record<string, unknown>[];
    assert.deepEqual(
      ents.map((e) => [e['label_type'], e['start_pos'], e['end_pos'], e['text'], e['type']]),
      [
        ['影像检查', 3, 5, 'ＣＴ', 'EXA'],
        ['疾病和诊断', 6, 8, '肺炎', 'DIS'],
      ],
    );
    for (const e of ents) assert.ok(typeof e['score'] === 'number' && e['score'] > 0.9 && e['score'] <= 1);
    assert.ok(!('id' in out[1]!));
    assert.deepEqual((out[1]!['entities'] as Record<string, unknown>[]).map((e) => e['text']), ['头部']);
    assert.deepEqual(out[2], { id: 7, entities: [] });
  });

  it('with --linker, gives each DIS entity the concepts cner link gives its text, and the others none', async () => {
    const linker = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');
    const io = memoryIo(lines({ id: 'a', text: '患者查ＣＴ示肺炎。' }));
    assert.equal(await command.run(['--model', TABLE_BUNDLE, '--linker', linker, '--workers', '1'], io), 0);
    const ents = parse(io.out())[0]!['entities'] as { type: string; text: string; codes: unknown[] }[];
    assert.deepEqual(ents.map((e) => e.type), ['EXA', 'DIS']);
    assert.deepEqual(ents[0]!.codes, []);
    const linkIo = memoryIo(lines({ text: '肺炎' }));
    assert.equal(await link.run(['--linker', linker, '--workers', '0'], linkIo), 0);
    const links = parse(linkIo.out())[0]!['links'] as { code: string; name: string; score: number }[];
    assert.ok(links.length > 0);
    assert.deepEqual(ents[1]!.codes, links.map((l) => ({ system: 'ICD-10-BJ-v601', ...l })));
  });

  it('links with the linker the model bundle carries with --linker bundle; --linker none or another linker win', async () => {
    const carrying = await attachLinker(await copyOf(TABLE_BUNDLE), TINY_RERANKED_LINKER);
    const run = async (...flags: string[]): Promise<{ type: string; codes?: { code: string }[] }[]> => {
      const io = memoryIo(lines({ id: 'a', text: '患者查ＣＴ示肺炎。' }));
      assert.equal(await command.run(['--model', carrying, '--workers', '0', ...flags], io), 0);
      return parse(io.out())[0]!['entities'] as { type: string; codes?: { code: string }[] }[];
    };
    const codesOf = async (linker: string): Promise<string[]> => {
      const io = memoryIo(lines({ text: '肺炎' }));
      assert.equal(await link.run(['--linker', linker, '--workers', '0'], io), 0);
      return (parse(io.out())[0]!['links'] as { code: string }[]).map((l) => l.code);
    };
    const carried = await run('--linker', 'bundle');
    assert.deepEqual(carried.map((e) => e.type), ['EXA', 'DIS']);
    assert.deepEqual(carried[1]!.codes!.map((c) => c.code), await codesOf(TINY_RERANKED_LINKER));
    assert.ok((await run('--linker', 'none')).every((e) => !('codes' in e)));
    const other = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');
    assert.deepEqual((await run('--linker', other))[1]!.codes!.map((c) => c.code), await codesOf(other));
  });

  it('has no codes field without a linker (CNER_LINKER_DIR none)', async () => {
    const io = memoryIo(lines({ text: '肺炎' }));
    assert.equal(await command.run(['--model', TABLE_BUNDLE, '--linker', 'none', '--workers', '0'], io), 0);
    assert.ok((parse(io.out())[0]!['entities'] as object[]).every((e) => !('codes' in e)));
  });

  it('reports bad lines in place and exits 1', async () => {
    const io = memoryIo(lines('{"id":', { id: 'x', text: 5 }, { id: 'y', text: 'ab\ud800' }, { id: 'z', text: '肺炎' }));
    assert.equal(await command.run(['--model', TABLE_BUNDLE, '--workers', '0'], io), 1);
    const out = parse(io.out());
    assert.deepEqual(
      out.map((o) => [o['id'], (o['error'] as { code?: string } | undefined)?.code ?? 'ok']),
      [
        [undefined, 'INVALID_RECORD'],
        ['x', 'INVALID_RECORD'],
        ['y', 'INVALID_RECORD'],
        ['z', 'ok'],
      ],
    );
  });

  it('runs as `cner tag` through bin/cner.js with inference in a worker thread', () => {
    const bin = fileURLToPath(new URL('../../bin/cner.js', import.meta.url));
    const r = spawnSync(process.execPath, [bin, 'tag', '--model', TABLE_BUNDLE, '--workers', '1'], {
      input: lines({ id: 1, text: '服用阿司匹林' }),
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const [out] = parse(r.stdout);
    assert.deepEqual((out!['entities'] as Record<string, unknown>[]).map((e) => [e['text'], e['start_pos'], e['end_pos']]), [['阿司匹林', 2, 6]]);
  });

  it('fails with a clear message for a missing bundle', async () => {
    await assert.rejects(command.run(['--model', '/nonexistent'], memoryIo('')), /does not exist/);
  });
});
