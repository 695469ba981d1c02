import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Linker, openLinker } from '../../src/model/linker.js';
import { queryParts } from '../../src/pipeline/link.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

interface GoldenLinker {
  readonly cases: readonly {
    readonly text: string;
    readonly parts: readonly string[];
    readonly nearest: readonly { readonly indices: number[]; readonly scores: number[] }[];
    readonly chosen: readonly { readonly name: string; readonly codes: readonly string[]; readonly score: number }[];
  }[];
}

const golden = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'fixtures', 'golden', 'golden-linker.json'), 'utf8')) as GoldenLinker;

describe('openLinker, against the training package (fixtures/golden/golden-linker.json)', () => {
  let linker: Linker;
  before(async () => {
    linker = await openLinker(path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle'), { executionProviders: ['cpu'], intraOpThreads: 1, graphOptimizationLevel: 'all' });
  });
  after(async () => linker.close());

  it('finds the same nearest names, with the same cosines, for every part', async () => {
    for (const c of golden.cases) {
      assert.deepEqual(queryParts(c.text, linker.bundle.separators), c.parts);
      const nearest = await linker.nearest(c.parts);
      nearest.forEach((n, i) => {
        assert.deepEqual(Array.from(n.indices), c.nearest[i]!.indices, `${c.text} part ${i}`);
        Array.from(n.scores).forEach((s, j) => assert.ok(Math.abs(s - c.nearest[i]!.scores[j]!) < 1e-5, `${c.text} part ${i} score ${j}`));
      });
    }
  });

  it('keeps the same concepts, each with its first code, in one call for all texts', async () => {
    const linked = await linker.link(golden.cases.map((c) => c.text));
    golden.cases.forEach((c, i) => {
      assert.deepEqual(linked[i]!.map((x) => [x.name, x.code]), c.chosen.map((x) => [x.name, x.codes[0]]), c.text);
      linked[i]!.forEach((x, j) => {
        assert.equal(x.system, 'ICD-10-BJ-v601');
        assert.ok(Math.abs(x.score - c.chosen[j]!.score) < 1e-5);
      });
    });
  });
});
