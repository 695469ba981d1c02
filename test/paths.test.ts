import assert from 'node:assert/strict';
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
