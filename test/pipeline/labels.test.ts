import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  CODE_BY_LABEL,
  ENTITY_TYPES,
  LABEL_BY_CODE,
  NUM_TAGS,
  TAGS,
  beginTag,
  insideTag,
  isAllowedTransition,
  isBegin,
  isInside,
  typeIndexOf,
} from '../../src/pipeline/labels.js';

describe('labels', () => {
  it('has the 13 tags in the contract order', () => {
    assert.deepEqual(TAGS, ['O', 'B-DIS', 'I-DIS', 'B-EXA', 'I-EXA', 'B-TES', 'I-TES', 'B-OPE', 'I-OPE', 'B-DRU', 'I-DRU', 'B-ANA', 'I-ANA']);
    assert.equal(NUM_TAGS, 13);
  });

  it('maps codes to the Chinese labels and back', () => {
    assert.deepEqual(LABEL_BY_CODE, { DIS: '疾病和诊断', EXA: '影像检查', TES: '实验室检验', OPE: '手术', DRU: '药物', ANA: '解剖部位' });
    for (const { code, label } of ENTITY_TYPES) assert.equal(CODE_BY_LABEL.get(label), code);
  });

  it('computes B/I tags and types from the layout', () => {
    ENTITY_TYPES.forEach(({ code }, k) => {
      assert.equal(TAGS[beginTag(k)], `B-${code}`);
      assert.equal(TAGS[insideTag(k)], `I-${code}`);
      assert.equal(typeIndexOf(beginTag(k)), k);
      assert.equal(typeIndexOf(insideTag(k)), k);
    });
    assert.equal(typeIndexOf(0), -1);
    TAGS.forEach((name, t) => {
      assert.equal(isBegin(t), name.startsWith('B-'));
      assert.equal(isInside(t), name.startsWith('I-'));
    });
  });

  it('allows I-X only after B-X or I-X, and never first', () => {
    TAGS.forEach((to, j) => {
      assert.equal(isAllowedTransition(-1, j), !to.startsWith('I-'), `start → ${to}`);
      TAGS.forEach((from, i) => {
        const expected = !to.startsWith('I-') || from.slice(2) === to.slice(2);
        assert.equal(isAllowedTransition(i, j), expected, `${from} → ${to}`);
      });
    });
  });
});
