import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import { PACKAGE_ROOT, VARIABLES, describeConfig, loadConfig, parseConfig } from '../src/config.js';
import { CnerError } from '../src/errors.js';

const REQUIRED = { KAFKA_BROKERS: 'kafka-0:9092', SCHEMA_REGISTRY_URL: 'http://registry:8081' };

function problems(env: Record<string, string>, mode: 'serve' | 'demo' = 'serve'): string[] {
  const r = parseConfig(env, mode);
  return isLeft(r) ? r.left : [];
}

describe('config', () => {
  it('applies the documented defaults', () => {
    const { config, warnings } = loadConfig(REQUIRED);
    assert.deepEqual(warnings, []);
    assert.deepEqual(config.kafka.brokers, ['kafka-0:9092']);
    assert.equal(config.kafka.clientId, 'cner');
    assert.equal(config.kafka.groupId, 'cner');
    assert.equal(config.kafka.inputTopic, 'emr.records.raw');
    assert.equal(config.kafka.outputTopic, 'emr.records.entities');
    assert.equal(config.kafka.dltTopic, 'emr.records.raw.DLT');
    assert.equal(config.kafka.modelTopic, 'ner.models.versions');
    assert.equal(config.kafka.transactionalIdPrefix, 'cner');
    assert.equal(config.shutdownGraceMs, 30_000);
    assert.equal(config.kafka.tls, null);
    assert.equal(config.kafka.sasl, null);
    assert.equal(config.kafka.sessionTimeoutMs, 30_000);
    assert.equal(config.kafka.compression, 'none', 'as the Java producer\'s compression.type');
    assert.equal(config.kafka.createTopics, true);
    assert.equal(config.registry.url, 'http://registry:8081');
    assert.equal(config.registry.auth, null);
    assert.equal(config.model.dir, path.join(PACKAGE_ROOT, 'models', 'default'));
    assert.equal(config.model.cacheDir, null);
    assert.deepEqual(config.model.executionProviders, ['cpu']);
    assert.equal(config.model.workers, 1);
    assert.equal(config.model.intraOpThreads, 1);
    assert.equal(config.model.maxBatchSize, 4);
    assert.equal(config.model.maxWaitMs, 5);
    assert.equal(config.model.shadowFraction, 0);
    assert.equal(config.maxTextLength, 100_000);
    assert.equal(config.httpPort, 9464);
    assert.equal(config.logLevel, 'info');
  });

  it('is deeply frozen', () => {
    const { config } = loadConfig(REQUIRED);
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.kafka));
    assert.ok(Object.isFrozen(config.kafka.brokers));
    assert.throws(() => {
      (config as { httpPort: number }).httpPort = 1;
    }, TypeError);
  });

  it('reads every variable', () => {
    const { config } = loadConfig({
      KAFKA_BROKERS: 'a:1, b:2',
      KAFKA_CLIENT_ID: 'c',
      KAFKA_GROUP_ID: 'g',
      KAFKA_INPUT_TOPIC: 'in.x',
      KAFKA_OUTPUT_TOPIC: 'out.x',
      KAFKA_MODEL_TOPIC: 'm.x',
      KAFKA_TRANSACTIONAL_ID_PREFIX: 'tx',
      CNER_INSTANCE_ID: 'pod-0',
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'u',
      KAFKA_SASL_PASSWORD: 'p',
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      KAFKA_COMPRESSION: 'ZSTD',
      KAFKA_CREATE_TOPICS: 'false',
      KAFKA_TOPIC_PARTITIONS: '12',
      KAFKA_TOPIC_REPLICATION_FACTOR: '3',
      SCHEMA_REGISTRY_URL: 'https://registry/apis/ccompat/v7/',
      SCHEMA_REGISTRY_USERNAME: 'ru',
      SCHEMA_REGISTRY_PASSWORD: 'rp',
      CNER_MODEL_DIR: '/models/x',
      CNER_MODEL_CACHE_DIR: '/cache',
      CNER_EXECUTION_PROVIDERS: 'cuda, cpu',
      CNER_INFERENCE_WORKERS: '2',
      CNER_INTRA_OP_THREADS: '0',
      CNER_MAX_BATCH_SIZE: '64',
      CNER_MAX_WAIT_MS: '0',
      CNER_MAX_TEXT_LENGTH: '5000',
      CNER_SHADOW_FRACTION: '0.25',
      CNER_HTTP_PORT: '0',
      CNER_LOG_LEVEL: 'DEBUG',
      CNER_SHUTDOWN_GRACE_SECONDS: '90',
    });
    assert.deepEqual(config.kafka.brokers, ['a:1', 'b:2']);
    assert.equal(config.kafka.dltTopic, 'in.x.DLT');
    assert.equal(config.kafka.transactionalIdPrefix, 'tx');
    assert.equal(config.kafka.instanceId, 'pod-0');
    assert.equal(config.shutdownGraceMs, 90_000);
    assert.equal(config.kafka.compression, 'zstd');
    assert.deepEqual(config.kafka.sasl, { mechanism: 'scram-sha-512', username: 'u', password: 'p' });
    assert.equal(config.kafka.createTopics, false);
    assert.equal(config.registry.url, 'https://registry/apis/ccompat/v7');
    assert.deepEqual(config.registry.auth, { username: 'ru', password: 'rp' });
    assert.equal(config.model.dir, '/models/x');
    assert.deepEqual(config.model.executionProviders, ['cuda', 'cpu']);
    assert.equal(config.model.shadowFraction, 0.25);
    assert.equal(config.logLevel, 'debug');
  });

  it('links with the shipped icd10 linker by default; bundle; none; a linker directory resolves like a model\'s; --linker wins and is relative to the working directory', () => {
    const linker = (env: Record<string, string>, flags: Record<string, string> = {}) => {
      const { model } = loadConfig({ ...REQUIRED, ...env }, 'tool', flags).config;
      return { ...model.linker, linkerDir: model.linkerDir };
    };
    const shipped = path.join(PACKAGE_ROOT, 'models', 'icd10');
    assert.deepEqual(linker({}), { kind: 'dir', dir: shipped, linkerDir: shipped });
    assert.deepEqual(linker({ CNER_LINKER_DIR: 'Bundle' }), { kind: 'bundle', linkerDir: null });
    assert.deepEqual(linker({ CNER_LINKER_DIR: 'None' }), { kind: 'none', linkerDir: null });
    const tiny = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-linker-bundle');
    assert.deepEqual(linker({ CNER_LINKER_DIR: 'fixtures/tiny-linker-bundle' }), { kind: 'dir', dir: tiny, linkerDir: tiny });
    assert.deepEqual(linker({ CNER_LINKER_DIR: '/l' }, { linker: 'some/dir' }), { kind: 'dir', dir: path.resolve(process.cwd(), 'some/dir'), linkerDir: path.resolve(process.cwd(), 'some/dir') });
    assert.deepEqual(linker({ CNER_LINKER_DIR: '/l' }, { linker: 'none' }), { kind: 'none', linkerDir: null });
    assert.deepEqual(linker({ CNER_LINKER_DIR: 'none' }, { linker: 'bundle' }), { kind: 'bundle', linkerDir: null });
    assert.equal(VARIABLES.find((v) => v.name === 'CNER_LINKER_DIR')?.default, 'icd10');
  });

  it('resolves a relative model directory against the package root', () => {
    assert.equal(loadConfig({ ...REQUIRED, CNER_MODEL_DIR: 'fixtures/tiny-bundle' }).config.model.dir, path.join(PACKAGE_ROOT, 'fixtures', 'tiny-bundle'));
  });

  it('collects every problem at once, each saying how to fix it', () => {
    const p = problems({
      KAFKA_BROKERS: 'no-port',
      CNER_MAX_BATCH_SIZE: '0',
      CNER_SHADOW_FRACTION: '2',
      KAFKA_SASL_MECHANISM: 'gssapi',
      CNER_LOG_LEVEL: 'loud',
      KAFKA_SSL: 'maybe',
      CNER_EXECUTION_PROVIDERS: 'cuda,tpu',
      KAFKA_COMPRESSION: 'brotli',
    });
    assert.equal(p.length, 11, p.join('\n'));
    assert.ok(p.some((m) => m === 'KAFKA_COMPRESSION must be one of none, gzip, snappy, lz4, zstd; got "brotli"'));
    assert.ok(p.some((m) => /^KAFKA_BROKERS must be a comma-separated list of host:port/.test(m)));
    assert.ok(p.some((m) => /^CNER_MAX_BATCH_SIZE must be a whole number from 1 to 4096; got "0"/.test(m)));
    assert.ok(p.some((m) => /^CNER_SHADOW_FRACTION must be a number from 0 to 1/.test(m)));
    assert.ok(p.some((m) => /^KAFKA_SASL_MECHANISM must be one of plain, scram-sha-256, scram-sha-512/.test(m)));
    assert.ok(p.some((m) => /^KAFKA_SASL_USERNAME is required/.test(m)));
    assert.ok(p.some((m) => /^CNER_LOG_LEVEL must be one of/.test(m)));
    assert.ok(p.some((m) => /^KAFKA_SSL must be true or false/.test(m)));
    assert.ok(p.some((m) => /unknown: "tpu"/.test(m)));
    assert.ok(p.some((m) => /^SCHEMA_REGISTRY_URL is required/.test(m)));
  });

  it('requires brokers and registry for serve, not for demo', () => {
    assert.deepEqual(problems({}).map((m) => m.split(' ')[0]), ['KAFKA_BROKERS', 'SCHEMA_REGISTRY_URL']);
    const demo = parseConfig({}, 'demo');
    assert.ok(isRight(demo));
    assert.deepEqual(demo.right.config.kafka.brokers, []);
    assert.equal(demo.right.config.registry.url, null);
  });

  it('treats empty values as unset (Helm renders unset values as "")', () => {
    const { config } = loadConfig({ ...REQUIRED, KAFKA_DLT_TOPIC: '', KAFKA_SASL_MECHANISM: '', CNER_MODEL_CACHE_DIR: '' });
    assert.equal(config.kafka.dltTopic, 'emr.records.raw.DLT');
    assert.equal(config.kafka.sasl, null);
    assert.equal(config.model.cacheDir, null);
  });

  it('checks TLS and SASL settings together', () => {
    assert.match(problems({ ...REQUIRED, KAFKA_SSL_CA_FILE: '/ca.pem' })[0]!, /KAFKA_SSL_CA_FILE set but KAFKA_SSL is false/);
    const tls = problems({ ...REQUIRED, KAFKA_SSL: 'true', KAFKA_SSL_CERT_FILE: '/nope/cert.pem' });
    assert.ok(tls.some((m) => /KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE must be set together/.test(m)));
    assert.ok(tls.some((m) => /KAFKA_SSL_CERT_FILE=\/nope\/cert.pem: file does not exist/.test(m)));
    const pem = path.join(PACKAGE_ROOT, 'package.json'); // any readable file
    const ok = loadConfig({ ...REQUIRED, KAFKA_SSL: 'true', KAFKA_SSL_CA_FILE: pem }).config.kafka.tls;
    assert.deepEqual(ok, { caFile: pem, certFile: null, keyFile: null });
    assert.deepEqual(loadConfig({ ...REQUIRED, KAFKA_SSL: 'true' }).config.kafka.tls, { caFile: null, certFile: null, keyFile: null });
    assert.match(problems({ ...REQUIRED, KAFKA_SASL_USERNAME: 'u' })[0]!, /KAFKA_SASL_MECHANISM is not/);
    assert.match(problems({ ...REQUIRED, SCHEMA_REGISTRY_USERNAME: 'u' })[0]!, /must be set together/);
  });

  it('never echoes secrets, and refuses credentials inside the registry URL', () => {
    const p = problems({ KAFKA_BROKERS: 'a:1', SCHEMA_REGISTRY_URL: 'http://user:s3cr3t@registry:8081', KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_PASSWORD: 's3cr3t' });
    assert.ok(p.length >= 2);
    for (const m of p) assert.doesNotMatch(m, /s3cr3t/);
    assert.ok(p.some((m) => /must not contain credentials/.test(m)));
    const { config } = loadConfig({ ...REQUIRED, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 's3cr3t', SCHEMA_REGISTRY_USERNAME: 'r', SCHEMA_REGISTRY_PASSWORD: 's3cr3t' });
    assert.doesNotMatch(JSON.stringify(describeConfig(config)), /s3cr3t/);
  });

  it('rejects three topics that are not distinct', () => {
    assert.match(problems({ ...REQUIRED, KAFKA_OUTPUT_TOPIC: 'emr.records.raw' })[0]!, /must be three different topics/);
  });

  it('warns about unknown variables with our prefixes', () => {
    const { warnings } = loadConfig({ ...REQUIRED, KAFKA_BROKER: 'x', CNER_TRAIN_SEED: '1', HOME: '/root' });
    assert.deepEqual(warnings, ['KAFKA_BROKER is not a known variable (typo?); see README.md, Configuration']);
  });

  it('throws one INVALID_CONFIG error listing all problems', () => {
    assert.throws(
      () => loadConfig({ CNER_HTTP_PORT: '70000' }),
      (e: unknown) => e instanceof CnerError && e.code === 'INVALID_CONFIG' && /\n- KAFKA_BROKERS[\s\S]*\n- CNER_HTTP_PORT/.test(e.message),
    );
  });

  it('the README configuration table lists exactly the variables the parser knows, with their defaults', () => {
    const readme = readFileSync(path.join(PACKAGE_ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Configuration\n');
    assert.ok(start >= 0, 'README.md has a "## Configuration" section');
    const next = readme.indexOf('\n## ', start + 1);
    const section = readme.slice(start, next < 0 ? undefined : next);
    const rows = [...section.matchAll(/^\| `([A-Z0-9_]+)` \| ([^|]*) \|/gm)].map((m) => ({ name: m[1]!, default: m[2]!.trim() }));
    assert.deepEqual(
      rows.map((r) => r.name).sort(),
      VARIABLES.map((v) => v.name).sort(),
    );
    for (const v of VARIABLES) {
      const row = rows.find((r) => r.name === v.name)!;
      const shown = row.default.replace(/`/g, '');
      assert.equal(shown === '—' ? undefined : shown, v.default?.replace(/`/g, ''), `default of ${v.name}`);
    }
    // The detail page links to the table instead of keeping a second copy.
    const doc = readFileSync(path.join(PACKAGE_ROOT, 'docs', 'config.md'), 'utf8');
    assert.doesNotMatch(doc, /^\| `[A-Z0-9_]+` \|/m, 'docs/config.md has no variable table of its own');
    assert.match(doc, /\(\.\.\/README\.md#configuration\)/);
  });

  it('reads only listed variables, and every listed variable is read', () => {
    const read = new Set<string>();
    const vars: Record<string, string | undefined> = { ...REQUIRED };
    const env = new Proxy(vars, {
      get(target, key) {
        if (typeof key === 'string') read.add(key);
        return target[key as string];
      },
    });
    loadConfig(env);
    assert.deepEqual([...read].filter((k) => /^[A-Z]/.test(k)).sort(), VARIABLES.map((v) => v.name).sort());
  });
});
