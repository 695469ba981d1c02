import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MODEL_FLAGS_USAGE, toolSetup } from '../../src/cli/options.js';
import { loadConfig } from '../../src/config.js';
import { CnerError } from '../../src/errors.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

const bundled = (name: string): string => path.join(PACKAGE_ROOT, 'models', name);
const invalid = (e: unknown, ...lines: string[]): boolean =>
  e instanceof CnerError && e.code === 'INVALID_CONFIG' && lines.every((l) => e.message.split('\n').some((m) => m.startsWith(`- ${l}`)));

describe('toolSetup (the configuration of cner tag and cner eval)', () => {
  it('defaults to the default bundle', () => {
    assert.equal(toolSetup({}, {}).modelDir, bundled('default'));
    assert.equal(toolSetup({}, { CNER_MODEL_DIR: '' }).modelDir, bundled('default'));
  });

  it('takes --model over CNER_MODEL_DIR, a name as a shipped bundle, a path from the working directory', () => {
    assert.equal(toolSetup({ model: 'default' }, { CNER_MODEL_DIR: '/elsewhere' }).modelDir, bundled('default'));
    assert.equal(toolSetup({ model: 'some/dir' }, {}).modelDir, path.resolve(process.cwd(), 'some/dir'));
  });

  it('reads CNER_MODEL_DIR as cner serve does: relative to the package root', () => {
    assert.equal(toolSetup({}, { CNER_MODEL_DIR: 'fixtures/tiny-bundle' }).modelDir, path.join(PACKAGE_ROOT, 'fixtures', 'tiny-bundle'));
  });

  it('runs the model with the same settings as cner serve unless told otherwise', () => {
    const serve = loadConfig({ KAFKA_BROKERS: 'k:9092', SCHEMA_REGISTRY_URL: 'http://r:8081' }).config.model;
    const { modelOptions } = toolSetup({}, {});
    assert.equal(modelOptions.workers, serve.workers);
    assert.equal(modelOptions.session.intraOpThreads, serve.intraOpThreads);
    assert.equal(modelOptions.maxBatchSize, serve.maxBatchSize);
    assert.deepEqual(modelOptions.session.executionProviders, serve.executionProviders);
    const env = { CNER_INTRA_OP_THREADS: '2', CNER_INFERENCE_WORKERS: '3' };
    assert.equal(toolSetup({}, env).modelOptions.session.intraOpThreads, 2);
    assert.equal(toolSetup({ threads: '0', workers: '0' }, env).modelOptions.session.intraOpThreads, 0);
    assert.equal(toolSetup({ threads: '0', workers: '0' }, env).modelOptions.workers, 0, 'a command may run the model on its own thread');
  });

  it('takes --log-level over CNER_LOG_LEVEL, warn by default', () => {
    assert.equal(toolSetup({}, {}).log.level, 'warn');
    assert.equal(toolSetup({}, { CNER_LOG_LEVEL: 'debug' }).log.level, 'debug');
    assert.equal(toolSetup({ 'log-level': 'error' }, { CNER_LOG_LEVEL: 'debug' }).log.level, 'error');
  });

  it('collects every problem of flags and environment at once, each naming what was set', () => {
    assert.throws(
      () => toolSetup({ 'log-level': 'loud', workers: 'two' }, { CNER_MAX_BATCH_SIZE: '0', CNER_LOG_LEVEL: 'loud' }),
      (e) => invalid(e, '--workers must be a whole number from 0 to 256', 'CNER_MAX_BATCH_SIZE must be a whole number from 1', '--log-level must be one of fatal, error, warn'),
    );
    assert.throws(() => toolSetup({}, { CNER_LOG_LEVEL: 'loud' }), (e) => invalid(e, 'CNER_LOG_LEVEL must be one of'));
  });

  it('reads no Kafka settings: a broken broker list in the environment does not stop a command', () => {
    assert.equal(toolSetup({}, { KAFKA_BROKERS: 'not a broker', KAFKA_INPUT_TOPIC: '..' }).modelDir, bundled('default'));
  });

  it('lists every flag with the variable it sets and its default', () => {
    for (const [flag, variable] of [['--workers', 'CNER_INFERENCE_WORKERS; default 1'], ['--threads', 'CNER_INTRA_OP_THREADS; default 1'], ['--model', 'CNER_MODEL_DIR; default default']]) {
      assert.match(MODEL_FLAGS_USAGE, new RegExp(`${flag} .*\\(${variable}\\)`));
    }
  });
});
