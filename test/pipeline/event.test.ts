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
      entities: [{ type: 'DIS', label: '疾病和诊断', start: 3, end: 5, text: '肺炎', confidence: 0.93 }],
    });
  });

  it('builds an event with no entities', () => {
    assert.deepEqual(buildEvent('r-2', 'v', [], 0).entities, []);
  });
});
