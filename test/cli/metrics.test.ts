import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntityScorer, scores } from '../../src/cli/metrics.js';

describe('EntityScorer (strict entity matching)', () => {
  it('counts a match only when start, end and type all agree', () => {
    const s = new EntityScorer(['A', 'B']);
    s.add(
      [
        { start: 0, end: 2, label: 'A' },
        { start: 3, end: 5, label: 'B' },
        { start: 6, end: 8, label: 'A' },
      ],
      [
        { start: 0, end: 2, label: 'A' }, // tp
        { start: 3, end: 5, label: 'A' }, // wrong type: fp A, fn B
        { start: 6, end: 9, label: 'A' }, // wrong end: fp A, fn A
      ],
    );
    const r = s.report();
    assert.deepEqual([r.perType['A']!.tp, r.perType['A']!.fp, r.perType['A']!.fn], [1, 2, 1]);
    assert.deepEqual([r.perType['B']!.tp, r.perType['B']!.fp, r.perType['B']!.fn], [0, 0, 1]);
    assert.deepEqual([r.micro.tp, r.micro.fp, r.micro.fn, r.micro.support], [1, 2, 2, 3]);
    assert.equal(r.micro.precision, 1 / 3);
    assert.equal(r.micro.recall, 1 / 3);
    assert.equal(r.documents, 1);
  });

  it('adds unknown gold types as their own rows and ignores duplicate spans', () => {
    const s = new EntityScorer(['A']);
    s.add([{ start: 0, end: 1, label: '症状' }, { start: 0, end: 1, label: '症状' }], []);
    const r = s.report();
    assert.equal(r.perType['症状']!.fn, 1);
    assert.equal(r.perType['A']!.support, 0);
  });

  it('averages macro scores over the types that occur', () => {
    const s = new EntityScorer(['A', 'B', 'C']);
    s.add([{ start: 0, end: 1, label: 'A' }, { start: 2, end: 3, label: 'B' }], [{ start: 0, end: 1, label: 'A' }]);
    const r = s.report();
    assert.equal(r.macro.f1, (1 + 0) / 2); // C never occurs
  });

  it('defines empty ratios as 0', () => {
    assert.deepEqual(scores({ tp: 0, fp: 0, fn: 0 }), { tp: 0, fp: 0, fn: 0, precision: 0, recall: 0, f1: 0, support: 0 });
    assert.equal(scores({ tp: 3, fp: 1, fn: 2 }).f1, (2 * 0.75 * 0.6) / 1.35);
  });
});
