import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { CnerError } from '../../src/errors.js';
import { sha256File } from '../../src/model/bundle.js';
import { loadLinkerBundle } from '../../src/model/linker-bundle.js';
import { queryParts } from '../../src/pipeline/link.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

const TINY_LINKER = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');

const copies: string[] = [];
after(() => Promise.all(copies.map((d) => rm(d, { recursive: true, force: true }))));

/** A copy of the tiny linker with one file rewritten (and, unless `stale`, the manifest's sha256 updated). */
async function variant(file: string, edit: (text: string) => string, stale = false): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cner-linker-'));
  copies.push(dir);
  await cp(TINY_LINKER, dir, { recursive: true });
  await writeFile(path.join(dir, file), edit(await readFile(path.join(dir, file), 'utf8')));
  if (!stale) {
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, string> };
    manifest.files[file] = await sha256File(path.join(dir, file));
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  }
  return dir;
}

describe('loadLinkerBundle', () => {
  it('reads the tiny linker: names with every code, thresholds, the separators as the training package wrote them', async () => {
    const b = await loadLinkerBundle(TINY_LINKER);
    assert.equal(b.version, 'tiny-linker-0');
    assert.equal(b.system, 'ICD-10-BJ-v601');
    assert.deepEqual(b.entityTypes, ['DIS']);
    assert.equal(b.topK, 4);
    assert.equal(b.names.length, 16);
    assert.deepEqual(b.codes[b.names.indexOf('癌')], ['X03.001', 'X03.002']);
    assert.deepEqual(b.decision, { whole: 0, part: 0.3, maxNames: 3 });
    assert.deepEqual(queryParts('胃癌伴幽门梗阻', b.separators), ['胃癌伴幽门梗阻', '胃癌', '幽门梗阻']);
    assert.ok(Object.isFrozen(b) && Object.isFrozen(b.names));
  });

  it('reads a re-ranker\'s stage and a memory, and has neither without them', async () => {
    const b = await loadLinkerBundle(path.join(PACKAGE_ROOT, 'fixtures', 'tiny-reranked-linker-bundle'));
    assert.deepEqual({ ...b.reranker, modelPath: path.basename(b.reranker!.modelPath) }, {
      modelPath: 'reranker.onnx',
      candidates: { kWhole: 3, kPart: 2, voters: 3, temperature: 0.05 },
      maxLength: 64,
      decision: { probability: 4, cosine: 2, vote: 3, bias: -4.5, threshold: 0.7, maxNames: 2, rerankTop: 4, preCosine: 1, preVote: 0.5, preBias: -0.6, rerankFloor: 0.58 },
    });
    assert.deepEqual(b.memory, { top: 4, pairs: 10 });
    const plain = await loadLinkerBundle(TINY_LINKER);
    assert.equal(plain.reranker, null);
    assert.equal(plain.memory, null);
  });

  it('refuses a re-ranker stage that is not in the manifest, asks for more candidates than the graph gives, or weighs votes without a memory', async () => {
    const dir = await variant('config.json', (t) => {
      const c = JSON.parse(t) as Record<string, unknown>;
      const decision = { probability: 1, cosine: 1, vote: 2, bias: 0, threshold: 1.5, max_names: 2, rerank_top: -1, pre_cosine: 1, pre_vote: 0 };
      const reranker = { inputs: ['input_ids', 'attention_mask', 'token_type_ids'], outputs: ['probabilities'], k_whole: 5, k_part: 1, max_length: 64, decision };
      return JSON.stringify({ ...c, reranker });
    });
    await assert.rejects(loadLinkerBundle(dir), (e: unknown) => {
      const m = e instanceof CnerError && e.code === 'BUNDLE_INVALID' ? e.message : '';
      return ['threshold must be a score', 'rerank_top must be a whole number', 'weighs votes, and the bundle has no memory', 'files must list reranker.onnx', 'at most top_k 4'].every((p) => m.includes(p));
    });
  });

  it('refuses memory outputs without a memory, and a memory without its outputs', async () => {
    const outputs = ['scores', 'indices', 'memory_scores', 'memory_rows', 'memory_names', 'memory_cosines'];
    const noMemory = await variant('config.json', (t) => JSON.stringify({ ...(JSON.parse(t) as object), outputs }));
    await assert.rejects(loadLinkerBundle(noMemory), (e: unknown) => e instanceof CnerError && e.message.includes('has no "memory"'));
    const noOutputs = await variant('config.json', (t) => JSON.stringify({ ...(JSON.parse(t) as object), memory: { top: 4, pairs: 10 } }));
    await assert.rejects(loadLinkerBundle(noOutputs), (e: unknown) => e instanceof CnerError && e.message.includes('a bundle with a memory must have outputs'));
  });

  it('refuses a file changed after export (sha256)', async () => {
    const dir = await variant('names.tsv', (t) => t.replace('高血压', '低血压'), true);
    await assert.rejects(loadLinkerBundle(dir), (e: unknown) => e instanceof CnerError && e.code === 'BUNDLE_CHECKSUM_MISMATCH');
  });

  it('reports every problem of the configuration at once', async () => {
    const dir = await variant('config.json', (t) => {
      const c = JSON.parse(t) as Record<string, unknown>;
      return JSON.stringify({ ...c, kind: 'tagger', top_k: 0, part_separators: '[', decision: { whole: 2, part: 0.5, max_names: 1 } });
    });
    await assert.rejects(loadLinkerBundle(dir), (e: unknown) => {
      const m = e instanceof CnerError && e.code === 'BUNDLE_INVALID' ? e.message : '';
      return ['kind must be "linker"', 'top_k must be a whole number', 'part_separators is not a pattern', 'decision.whole must be a cosine'].every((p) => m.includes(p));
    });
  });

  it('refuses a bundle whose manifest does not cover the linker files', async () => {
    const dir = await variant('manifest.json', (t) => {
      const m = JSON.parse(t) as { files: Record<string, string> };
      delete m.files['names.tsv'];
      return JSON.stringify(m);
    }, true);
    await assert.rejects(loadLinkerBundle(dir), (e: unknown) => e instanceof CnerError && e.code === 'BUNDLE_INVALID' && e.message.includes('files must list names.tsv'));
  });
});
