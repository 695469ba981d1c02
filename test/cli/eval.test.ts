import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { command, parseGoldLine } from '../../src/cli/eval.js';
import { TABLE_BUNDLE } from '../model/helpers.js';
import { memoryIo } from './helpers.js';

const DATA = [
  // 肺炎 and 头部 found; the gold 阿司匹 has the wrong end → 1 fp, 1 fn for 药物.
  {
    originalText: '肺炎，头部，阿司匹林',
    entities: [
      { label_type: '疾病和诊断', overlap: 0, start_pos: 0, end_pos: 2 },
      { label_type: '解剖部位', overlap: 0, start_pos: 3, end_pos: 5 },
      { label_type: '药物', overlap: 0, start_pos: 6, end_pos: 9 },
    ],
  },
  // A gold type the model does not know counts as a miss.
  { originalText: '患者', entities: [{ label_type: '症状和体征', start_pos: 0, end_pos: 2 }] },
];

async function withData(test: (file: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cner-eval-'));
  const file = path.join(dir, 'data.jsonl');
  // The first line starts with a BOM, as the CCKS-2019 originals do.
  await writeFile(file, `\uFEFF${DATA.map((d) => JSON.stringify(d)).join('\n')}\n`);
  try {
    await test(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('cner eval', () => {
  it('reports strict per-type and micro scores as JSON', async () => {
    await withData(async (file) => {
      const io = memoryIo();
      assert.equal(await command.run(['--data', file, '--json', '--model', TABLE_BUNDLE, '--workers', '0'], io), 0);
      const r = JSON.parse(io.out()) as {
        documents: number;
        perType: Record<string, { tp: number; fp: number; fn: number }>;
        micro: { tp: number; fp: number; fn: number; precision: number; recall: number };
      };
      assert.equal(r.documents, 2);
      assert.deepEqual(r.perType['疾病和诊断'], { ...r.perType['疾病和诊断'], tp: 1, fp: 0, fn: 0 });
      assert.deepEqual(r.perType['药物'], { ...r.perType['药物'], tp: 0, fp: 1, fn: 1 });
      assert.deepEqual(r.perType['症状和体征'], { ...r.perType['症状和体征'], tp: 0, fp: 0, fn: 1 });
      assert.deepEqual([r.micro.tp, r.micro.fp, r.micro.fn], [2, 1, 2]);
      assert.equal(r.micro.precision, 2 / 3);
      assert.equal(r.micro.recall, 0.5);
    });
  });

  it('prints a table by default', async () => {
    await withData(async (file) => {
      const io = memoryIo();
      assert.equal(await command.run(['--data', file, '--model', TABLE_BUNDLE, '--workers', '0'], io), 0);
      const out = io.out();
      assert.match(out, /^model lexicon-test 0\.0\.1-test; 2 documents/);
      assert.match(out, /^DIS 疾病和诊断 +1 +1 +0 +0 +100\.00 +100\.00 +100\.00$/m);
      assert.match(out, /^micro +4 +2 +1 +2 +66\.67 +50\.00 +57\.14$/m);
    });
  });

  it('requires --data', async () => {
    const io = memoryIo();
    assert.equal(await command.run([], io), 2);
    assert.match(io.err(), /--data FILE is required/);
  });

  it('names the file and line of a malformed record', () => {
    assert.throws(() => parseGoldLine('{"originalText": 3}', 'd.jsonl:4'), /d\.jsonl:4: needs a string "originalText"/);
    assert.throws(() => parseGoldLine('{"originalText": "x", "entities": [{"label_type": "药物"}]}', 'd.jsonl:5'), /entities\[0\] needs/);
  });
});
