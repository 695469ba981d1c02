import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { command } from '../../src/cli/link.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { memoryIo } from './helpers.js';
import { TINY, TINY_RERANKED_LINKER, withLinker } from '../model/variants.js';

const TINY_LINKER = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');
const golden = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'fixtures', 'golden', 'golden-linker.json'), 'utf8')) as {
  cases: { text: string; chosen: { name: string; codes: string[]; score: number }[] }[];
};
const lines = (...objs: unknown[]): string => objs.map((o) => (typeof o === 'string' ? o : JSON.stringify(o))).join('\n') + '\n';
const parse = (out: string): Record<string, unknown>[] => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('cner link', () => {
  it('writes one line per input, in order, with the id and the concepts the training package keeps, across batches', async () => {
    const io = memoryIo(lines(...golden.cases.map((c, i) => ({ id: i, text: c.text })), ''));
    assert.equal(await command.run(['--linker', TINY_LINKER, '--batch', '3', '--threads', '1'], io), 0);
    const out = parse(io.out());
    assert.equal(out.length, golden.cases.length);
    out.forEach((o, i) => {
      assert.equal(o['id'], i);
      const links = o['links'] as { code: string; name: string; score: number }[];
      assert.deepEqual(links.map((l) => [l.code, l.name]), golden.cases[i]!.chosen.map((c) => [c.codes[0], c.name]));
      assert.deepEqual(Object.keys(links[0]!).sort(), ['code', 'name', 'score']);
    });
  });

  it('reports bad lines in place and exits 1', async () => {
    const io = memoryIo(lines('{"id":', { id: 'x', text: 5 }, { id: 'y', text: '癌\ud800' }, { id: 'z', text: '  ' }, { id: 'ok', text: '高血压' }));
    assert.equal(await command.run(['--linker', TINY_LINKER], io), 1);
    const out = parse(io.out());
    assert.deepEqual(out.map((o) => [o['id'] ?? null, (o['error'] as { code?: string } | undefined)?.code ?? 'ok']), [
      [null, 'INVALID_RECORD'],
      ['x', 'INVALID_RECORD'],
      ['y', 'INVALID_RECORD'],
      ['z', 'INVALID_RECORD'],
      ['ok', 'ok'],
    ]);
    assert.equal((out[4]!['links'] as { name: string }[])[0]!.name, '高血压');
  });

  it('links with the linker the model bundle carries with --linker bundle; another --linker wins', async () => {
    const carrying = await withLinker('with-reranked', TINY_RERANKED_LINKER);
    const run = async (...flags: string[]): Promise<unknown> => {
      const io = memoryIo(lines({ id: 'd', text: '胃癌伴幽门梗阻' }));
      assert.equal(await command.run([...flags, '--workers', '0'], io), 0);
      return parse(io.out())[0];
    };
    const carried = await run('--model', carrying, '--linker', 'bundle');
    assert.deepEqual(carried, await run('--linker', TINY_RERANKED_LINKER));
    assert.notDeepEqual(carried, await run('--linker', TINY_LINKER), 'the two tiny linkers answer differently');
    assert.deepEqual(await run('--model', carrying, '--linker', TINY_LINKER), await run('--linker', TINY_LINKER));
  });

  it('links with the ICD-10 linker shipped in the package by default (icd10)', async () => {
    const io = memoryIo(lines({ id: 'g', text: '胃癌伴幽门梗阻' }, { id: 'd', text: '2型糖尿病' }));
    assert.equal(await command.run(['--threads', '1'], io), 0);
    const [g, d] = parse(io.out()).map((o) => (o['links'] as { code: string; name: string }[]).map((l) => `${l.code} ${l.name}`));
    assert.ok(g!.includes('C16 胃恶性肿瘤') && g!.includes('K31.102 幽门梗阻'), g!.join(', '));
    assert.equal(d![0], 'E11.901 2型糖尿病');
  });

  it('needs a linker: a bundle without one, or none', async () => {
    for (const flags of [['--model', TINY, '--linker', 'bundle'], ['--linker', 'none'], ['--model', await withLinker('w'), '--linker', 'none']]) {
      const io = memoryIo('');
      assert.equal(await command.run(flags, io), 2);
      assert.match(io.err(), /a linker is required and (the model bundle .* carries no linker|linking is off)/);
    }
  });
});
