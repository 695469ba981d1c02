import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildEvent } from '../../src/pipeline/event.js';

describe('buildEvent', () => {
  it('names each entity by code and Chinese label with its offsets, text and confidence', () => {
    const event = buildEvent(
      'r-1',
      '1.2.0',
      [{ code: 'DIS', label: '疾病和诊断', start: 3, end: 5, text: '肺炎', confidence: 0.93 }],
      1_700_000_000_000,
    );
    assert.deepEqual(event, {
      recordId: 'r-1',
      modelVersion: '1.2.0',
      processedAt: 1_700_000_000_000,
      entities: [{ type: 'DIS', label: '疾病和诊断', start: 3, end: 5, text: '肺炎', confidence: 0.93, codes: [] }],
      linkerVersion: null,
    });
  });

  it('carries the codes a linker found, and the linker\'s version', () => {
    const codes = [{ system: 'ICD-10-BJ-v601', code: 'C34.900', name: '肺恶性肿瘤', score: 0.91 }];
    const event = buildEvent('r-3', 'v', [{ code: 'DIS', label: '疾病和诊断', start: 0, end: 4, text: '右肺MT', confidence: 0.8, codes }], 0, 'link-1');
    assert.deepEqual(event.entities[0]!.codes, codes);
    assert.equal(event.linkerVersion, 'link-1');
  });

  it('builds an event with no entities', () => {
    assert.deepEqual(buildEvent('r-2', 'v', [], 0).entities, []);
  });
});
