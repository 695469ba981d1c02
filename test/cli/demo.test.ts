import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { codeLines, highlight } from '../../src/cli/demo.js';
import { PACKAGE_ROOT } from '../../src/config.js';

describe('cner demo', () => {
  const entities = [
    { type: 'DIS', label: '疾病和诊断', start: 2, end: 5, text: '高血压', confidence: 0.9 },
    { type: 'DRU', label: '药物', start: 8, end: 11, text: '𠀀地平', confidence: 0.8 },
  ] as const;
  const text = '既往高血压，服用𠀀地平。';

  it('highlights entities by code-point offsets, one colour per type', () => {
    assert.equal(highlight(text, { entities: [...entities] }, false), '既往[高血压|DIS]，服用[𠀀地平|DRU]。');
    const coloured = highlight(text, { entities: [...entities] }, true);
    assert.equal(coloured, '既往\x1b[1;31m高血压\x1b[0m，服用\x1b[1;32m𠀀地平\x1b[0m。');
  });

  it('ships synthetic records with every field of EmrRecord and one invalid record', () => {
    const lines = readFileSync(path.join(PACKAGE_ROOT, 'demo', 'records.jsonl'), 'utf8').trim().split('\n');
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(records.length >= 5);
    for (const r of records) assert.deepEqual(Object.keys(r).sort(), ['metadata', 'recordId', 'sourceSystem', 'text', 'timestamp']);
    assert.equal(records.filter((r) => r['text'] === '').length, 1);
  });

  it('lists the codes of the entities that have them', () => {
    const codes = [{ system: 'ICD-10-BJ-v601', code: 'I10.x00', name: '高血压', score: 0.9712 }];
    assert.deepEqual(codeLines({ entities: [{ text: '高血压', codes }, { text: '𠀀地平', codes: [] }] }), ['高血压 → I10.x00 高血压 (0.97)']);
  });
});
