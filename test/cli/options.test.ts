import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { modelDirFrom } from '../../src/cli/options.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

describe('modelDirFrom', () => {
  const bundled = (name: string): string => path.join(PACKAGE_ROOT, 'models', name);

  it('defaults to the default bundle', () => {
    assert.equal(modelDirFrom({}, {}), bundled('default'));
    assert.equal(modelDirFrom({}, { CNER_MODEL_DIR: '' }), bundled('default'));
  });

  it('takes --model over CNER_MODEL_DIR, a name as a shipped bundle, a path from the working directory', () => {
    assert.equal(modelDirFrom({ model: 'default' }, { CNER_MODEL_DIR: '/elsewhere' }), bundled('default'));
    assert.equal(modelDirFrom({ model: 'some/dir' }, {}), path.resolve(process.cwd(), 'some/dir'));
  });

  it('reads CNER_MODEL_DIR as cner serve does: relative to the package root', () => {
    assert.equal(modelDirFrom({}, { CNER_MODEL_DIR: 'fixtures/tiny-bundle' }), path.join(PACKAGE_ROOT, 'fixtures', 'tiny-bundle'));
    assert.equal(modelDirFrom({}, { CNER_MODEL_DIR: 'default' }), bundled('default'));
  });
});
