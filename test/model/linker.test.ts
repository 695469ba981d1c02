import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Linker, openLinker, paddedLengthLimit } from '../../src/model/linker.js';
import { candidateList, queryParts, toRerank } from '../../src/pipeline/link.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

interface GoldenLinker {
  readonly cases: readonly {
    readonly text: string;
    readonly parts: readonly string[];
    readonly nearest: readonly { readonly indices: number[]; readonly scores: number[] }[];
    readonly chosen: readonly { readonly name: string; readonly codes: readonly string[]; readonly score: number }[];
  }[];
}

const SESSION = { executionProviders: ['cpu'] as const, intraOpThreads: 1, graphOptimizationLevel: 'all' as const };
const TINY_LINKER = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');

const golden = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'fixtures', 'golden', 'golden-linker.json'), 'utf8')) as GoldenLinker;

describe('openLinker, against the training package (fixtures/golden/golden-linker.json)', () => {
  let linker: Linker;
  before(async () => {
    linker = await openLinker(TINY_LINKER, { workers: 0, session: SESSION });
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

describe('openLinker on inference workers (as the stream runs it)', () => {
  it('gives what the calling thread gives, for concurrent callers, each distinct text once', async () => {
    const inProcess = await openLinker(TINY_LINKER, { workers: 0, session: SESSION, cacheSize: 0 });
    const pooled = await openLinker(TINY_LINKER, { workers: 2, session: SESSION });
    try {
      const texts = golden.cases.map((c) => c.text);
      const expected = await inProcess.link(texts);
      // Many records at once, repeating texts: the queries of one turn go out together.
      const calls = await Promise.all(Array.from({ length: 12 }, (_, k) => pooled.link([texts[k % texts.length]!, texts[(k * 5) % texts.length]!])));
      calls.forEach((got, k) => assert.deepEqual(got, [expected[k % texts.length], expected[(k * 5) % texts.length]]));
      // A text linked before is answered from the cache: the same frozen list.
      const again = await pooled.link([texts[0]!]);
      assert.equal(again[0], calls[0]![0]);
      assert.ok(Object.isFrozen(again[0]));
    } finally {
      await Promise.all([inProcess.close(), pooled.close()]);
    }
  });

  it('finishes what is pending on close and refuses work afterwards', async () => {
    const linker = await openLinker(TINY_LINKER, { workers: 1, session: SESSION });
    const pending = linker.link(['胃癌伴幽门梗阻']);
    await linker.close();
    assert.ok((await pending)[0]!.length > 0);
    await assert.rejects(linker.link(['高血压']), /closed/);
  });

  it('batches keys of similar lengths: a batch takes keys at most a quarter (and 2) longer than its shortest', () => {
    assert.deepEqual([1, 2, 8, 9, 40].map(paddedLengthLimit), [3, 4, 10, 11, 50]);
  });

  it('gives a short text the same concepts whether a long text is linked with it or not', async () => {
    const linker = await openLinker(TINY_LINKER, { workers: 0, session: SESSION, cacheSize: 0 });
    try {
      const long = '糖尿病;骨质疏松；高血压冠心病不稳定心绞痛右乳腺癌IV期，骨转移、肝转移';
      const [together, alone] = await Promise.all([linker.link(['肺Ca', long]), linker.link(['心衰'])]);
      assert.deepEqual(together[0], (await linker.link(['肺Ca']))[0]);
      assert.deepEqual(together[1], (await linker.link([long]))[0]);
      assert.deepEqual(alone[0], (await linker.link(['心衰']))[0]);
    } finally {
      await linker.close();
    }
  });

  it('links a text once for callers that ask while it is being linked, even without a cache', async () => {
    const linker = await openLinker(TINY_LINKER, { workers: 1, session: SESSION, cacheSize: 0 });
    try {
      const first = linker.link(['胃癌伴幽门梗阻', '高血压']);
      await new Promise((resolve) => setImmediate(resolve)); // a later turn: the first call's queries are on the worker
      const second = linker.link(['高血压', '肺Ca']);
      const [[, a], [b, c]] = await Promise.all([first, second]);
      assert.equal(b, a, 'the answer in flight, shared');
      assert.ok(c!.length > 0);
      const [again] = await linker.link(['高血压']);
      assert.notEqual(again, a, 'once answered (no cache), computed again');
      assert.deepEqual(again, a);
    } finally {
      await linker.close();
    }
  });

  it('keeps at most cacheSize texts, dropping the least recently used', async () => {
    const linker = await openLinker(TINY_LINKER, { workers: 0, session: SESSION, cacheSize: 2 });
    try {
      const [a] = await linker.link(['高血压']);
      const [g] = await linker.link(['胃癌']);
      await linker.link(['高血压']); // used again: now the most recent
      await linker.link(['幽门梗阻']); // drops 胃癌
      assert.equal((await linker.link(['高血压']))[0], a, 'kept: the same list');
      const [g2] = await linker.link(['胃癌']);
      assert.notEqual(g2, g, 'dropped: computed again');
      assert.deepEqual(g2, g);
    } finally {
      await linker.close();
    }
  });
});

interface GoldenReranked {
  readonly bundle: string;
  readonly cases: readonly {
    readonly text: string;
    readonly memory: { readonly scores: readonly number[]; readonly rows: readonly number[]; readonly names: readonly (readonly number[])[] };
    readonly candidates: readonly { readonly row: number; readonly cosine: number; readonly vote: number }[];
    readonly reranked: readonly number[];
    readonly probabilities: readonly number[];
    readonly chosen: readonly { readonly name: string; readonly codes: readonly string[]; readonly score: number }[];
  }[];
}

describe('openLinker with a re-ranker, against the training package (fixtures/golden/golden-reranked-linker.json)', () => {
  const reranked = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'fixtures', 'golden', 'golden-reranked-linker.json'), 'utf8')) as GoldenReranked;
  const dir = path.join(PACKAGE_ROOT, 'fixtures', reranked.bundle);

  it('finds the same nearest training diagnoses, candidates and votes, and re-ranks the same ones', async () => {
    const linker = await openLinker(dir, { workers: 0, session: SESSION, cacheSize: 0 });
    try {
      const r = linker.bundle.reranker!;
      for (const c of reranked.cases) {
        const nearest = await linker.nearest(queryParts(c.text, linker.bundle.separators));
        const memory = nearest[0]!.memory!;
        assert.deepEqual(memory.map((m) => m.names.map((n) => n.index)), c.memory.names, c.text);
        memory.forEach((m, j) => assert.ok(Math.abs(m.score - c.memory.scores[j]!) < 1e-5, c.text));
        const candidates = candidateList(nearest, r.candidates, memory);
        assert.deepEqual(candidates.map((x) => x.index), c.candidates.map((x) => x.row), c.text);
        candidates.forEach((x, j) => {
          assert.ok(Math.abs(x.cosine - c.candidates[j]!.cosine) < 1e-5 && Math.abs(x.vote - c.candidates[j]!.vote) < 1e-5, `${c.text}: ${JSON.stringify(x)}`);
        });
        assert.deepEqual(toRerank(candidates, r.decision).map((x) => x.index), c.reranked, c.text);
      }
    } finally {
      await linker.close();
    }
  });

  for (const workers of [0, 2]) {
    it(`keeps the same names with the same probabilities (${workers === 0 ? 'on the calling thread' : 'on inference workers'})`, async () => {
      const linker = await openLinker(dir, { workers, session: SESSION, cacheSize: 0 });
      try {
        assert.notEqual(linker.bundle.reranker, null);
        // All texts at once, as the records of one slice: candidates and pairs are batched across them.
        const linked = await Promise.all(reranked.cases.map((c) => linker.link([c.text])));
        reranked.cases.forEach((c, i) => {
          const got = linked[i]![0]!;
          assert.deepEqual(got.map((x) => [x.name, x.code]), c.chosen.map((x) => [x.name, x.codes[0]]), c.text);
          got.forEach((x, j) => assert.ok(Math.abs(x.score - c.chosen[j]!.score) < 1e-5, `${c.text}: ${x.score} vs ${c.chosen[j]!.score}`));
        });
      } finally {
        await linker.close();
      }
    });
  }
});
