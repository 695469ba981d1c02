import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { modelDirFrom, stderrLogger } from '../../src/cli/options.js';
import { CnerError } from '../../src/errors.js';
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

describe('stderrLogger', () => {
  it('takes --log-level over CNER_LOG_LEVEL, warn by default', () => {
    assert.equal(stderrLogger(undefined, {}).level, 'warn');
    assert.equal(stderrLogger(undefined, { CNER_LOG_LEVEL: 'debug' }).level, 'debug');
    assert.equal(stderrLogger('error', { CNER_LOG_LEVEL: 'debug' }).level, 'error');
  });

  it('refuses an unknown level with the fix, naming where it came from', () => {
    const invalid = (e: unknown, name: string): boolean =>
      e instanceof CnerError && e.code === 'INVALID_CONFIG' && e.message.startsWith(`${name} must be one of fatal, error, warn`);
    assert.throws(() => stderrLogger('loud', {}), (e) => invalid(e, '--log-level'));
    assert.throws(() => stderrLogger(undefined, { CNER_LOG_LEVEL: 'loud' }), (e) => invalid(e, 'CNER_LOG_LEVEL'));
  });
});
