// Configuration from environment variables and command-line flags, parsed
// once at startup into one frozen object by one decoder. Every variable is
// listed in VARIABLES (the source of the README's configuration table); a
// command's flag (MODEL_FLAGS) is that variable given on the command line and
// wins over it, with the same rule and the same default. Every problem is
// collected, and each message names what was set (the flag or the variable)
// and says how to fix it. Secrets are never echoed in messages and never
// logged (`describeConfig` is the loggable view).

import { accessSync, constants as fsConstants } from 'node:fs';
import { hostname } from 'node:os';
import { COMPRESSIONS, type Compression, SASL_MECHANISMS, type SaslConfig, type SaslMechanism, type TlsConfig } from './kafka/settings.js';
import { sequenceS } from 'fp-ts/lib/Apply.js';
import { type Either, getApplicativeValidation, isLeft, left, right } from 'fp-ts/lib/Either.js';
import { type NonEmptyArray, getSemigroup } from 'fp-ts/lib/NonEmptyArray.js';
import { CnerError } from './errors.js';
import type { LinkerOptions } from './model/linker.js';
import { BUNDLE_LINKER, type LinkerSource, type ModelOptions, NO_LINKER } from './model/model.js';
import { DEFAULT_LINKER, DEFAULT_MODEL, PACKAGE_ROOT, resolveModelDir } from './paths.js';
import { type ExecutionProvider, isExecutionProvider } from './model/session-options.js';
import { LOG_LEVELS, type LogLevel } from './observability/logger.js';

export interface VariableSpec {
  readonly name: string;
  /** As shown in the README's configuration table; undefined = no default. */
  readonly default?: string;
  readonly doc: string;
}

/** Every variable the processor reads. The README's configuration table must list exactly these. */
export const VARIABLES: readonly VariableSpec[] = Object.freeze([
  { name: 'KAFKA_BROKERS', doc: 'Comma-separated bootstrap brokers, `host:port`. Required by `cner serve`; `cner demo` starts a local stack when unset.' },
  { name: 'KAFKA_CLIENT_ID', default: 'cner', doc: 'Kafka client id (broker logs, quotas).' },
  { name: 'KAFKA_GROUP_ID', default: 'cner', doc: 'Consumer group of the processor; its committed offsets are the progress of the stream.' },
  { name: 'KAFKA_INPUT_TOPIC', default: 'emr.records.raw', doc: 'Topic of raw EMR records (Avro `EmrRecord` in the Confluent wire format, or UTF-8 JSON with the same fields); key = record id.' },
  { name: 'KAFKA_OUTPUT_TOPIC', default: 'emr.records.entities', doc: 'Topic of `ClinicalEntities` events (Avro), one per input record, same key.' },
  { name: 'KAFKA_DLT_TOPIC', default: '`<input topic>.DLT`', doc: 'Dead-letter topic: records that can never be tagged, with the original key, value and headers plus `kafka_dlt-*` headers.' },
  { name: 'KAFKA_MODEL_TOPIC', default: 'ner.models.versions', doc: 'Compacted model-version topic: model bundles, their announcements and the live selection (docs/model-versions.md); every instance reads all of it.' },
  { name: 'KAFKA_TRANSACTIONAL_ID_PREFIX', default: 'cner', doc: 'Prefix of the transactional ids: each input partition is written by the producer `<prefix>-<group>-<input topic>-<partition>`, the same in every instance, so the instance that takes a partition over fences its earlier owner (docs/config.md, Delivery guarantee).' },
  { name: 'KAFKA_COMPRESSION', default: 'none', doc: 'Compression of the events and dead letters the processor writes: `none`, `gzip`, `snappy`, `lz4` or `zstd` (the Java producer\'s default is none). Input in any of them is always read.' },
  { name: 'KAFKA_SSL', default: 'false', doc: 'Connect to the brokers over TLS (`true`/`false`).' },
  { name: 'KAFKA_SSL_CA_FILE', doc: 'PEM file of the CA that signed the brokers\' certificates (default: the system CAs). Needs `KAFKA_SSL=true`.' },
  { name: 'KAFKA_SSL_CERT_FILE', doc: 'PEM client certificate for mutual TLS; needs `KAFKA_SSL_KEY_FILE` and `KAFKA_SSL=true`.' },
  { name: 'KAFKA_SSL_KEY_FILE', doc: 'PEM private key of `KAFKA_SSL_CERT_FILE`.' },
  { name: 'KAFKA_SASL_MECHANISM', doc: 'SASL mechanism: `plain`, `scram-sha-256` or `scram-sha-512`; unset = no SASL.' },
  { name: 'KAFKA_SASL_USERNAME', doc: 'SASL user name; required with `KAFKA_SASL_MECHANISM`.' },
  { name: 'KAFKA_SASL_PASSWORD', doc: 'SASL password; required with `KAFKA_SASL_MECHANISM`. Never logged.' },
  { name: 'KAFKA_SESSION_TIMEOUT_MS', default: '30000', doc: 'Consumer group session timeout: how long a dead instance keeps its partitions before the group moves them.' },
  { name: 'KAFKA_CREATE_TOPICS', default: 'true', doc: 'Create missing input, output and dead-letter topics at startup (`false`: wait, not ready, until someone creates them).' },
  { name: 'KAFKA_TOPIC_PARTITIONS', default: '3', doc: 'Partitions of topics the processor creates.' },
  { name: 'KAFKA_TOPIC_REPLICATION_FACTOR', default: '1', doc: 'Replication factor of topics the processor creates (use 3 in production).' },
  { name: 'SCHEMA_REGISTRY_URL', doc: 'Confluent-compatible Schema Registry base URL (for Apicurio: `http://host:8080/apis/ccompat/v7`). Required by `cner serve`.' },
  { name: 'SCHEMA_REGISTRY_USERNAME', doc: 'Registry basic-auth user; set together with `SCHEMA_REGISTRY_PASSWORD`.' },
  { name: 'SCHEMA_REGISTRY_PASSWORD', doc: 'Registry basic-auth password. Never logged.' },
  { name: 'CNER_INSTANCE_ID', default: 'the host name', doc: 'Identity of this instance: names its model cache directory and its model-topic reader; in Kubernetes the pod name (the host name). Transactional ids do not depend on it.' },
  { name: 'CNER_MODEL_DIR', default: 'default', doc: 'Model bundle: the name of a bundle shipped in the package (a folder of `models/` with a manifest: `default`, the bge-small-zh + character ensemble; `fast`, the character model, about three times faster; `default-f32`, `fast-f32`, their float graphs) or a bundle directory; a relative directory is relative to the package root.' },
  { name: 'CNER_LINKER_DIR', default: 'icd10', doc: 'ICD-10 linker (`cner-train link-export`): every entity of the types it names (DIS) gets the concepts it denotes in `codes`, and events carry its `linkerVersion`. A linker bundle shipped in the package by name (`icd10`, the default), or a linker bundle directory (relative: to the package root) = that linker for every model version; `bundle` = the linker the served model bundle carries in `linker/` (`cner-train link-attach`), so it switches with each model version from the model topic, none for a bundle without one; `none` = no linking.' },
  { name: 'CNER_MODEL_CACHE_DIR', doc: 'Writable directory where verified model versions from the model topic are kept (default: a directory under the system temp dir; mount a volume to keep them across restarts).' },
  { name: 'CNER_EXECUTION_PROVIDERS', default: 'cpu', doc: 'onnxruntime execution providers to try in order, comma-separated (e.g. `cuda,cpu`); CPU is always the fallback.' },
  { name: 'CNER_INFERENCE_WORKERS', default: '1', doc: 'Inference worker threads (≥ 1: the Kafka loop never runs the model on its own thread).' },
  { name: 'CNER_INTRA_OP_THREADS', default: '1', doc: 'onnxruntime intra-op threads per worker; 0 = the CPUs this process may use (the cgroup CPU quota, i.e. a pod\'s CPU limit, else the cores) divided among the workers. One by default: on a loaded machine spinning intra-op threads cost more than they give (bench/NOTES.md); add workers instead.' },
  { name: 'CNER_MAX_BATCH_SIZE', default: '4', doc: 'Largest inference batch, in 128-code-point chunks. Small batches suit CPUs: the default bundle\'s attention pads every chunk of a batch to its longest, and its activations grow with the batch (peak RSS 472 MB at 4 against 661 MB at 32, and faster; bench/NOTES.md); raise it on a GPU (the chart\'s gpu-values use 64).' },
  { name: 'CNER_MAX_WAIT_MS', default: '5', doc: 'Longest time a chunk waits for its inference batch to fill.' },
  { name: 'CNER_MAX_TEXT_LENGTH', default: '100000', doc: 'Longest accepted text, in Unicode code points; longer records go to the dead-letter topic (`TEXT_TOO_LONG`).' },
  { name: 'CNER_SHADOW_FRACTION', default: '0', doc: 'Fraction (0..1) of records also tagged, in shadow, by the newest published version that is not live; its agreement with the live model is exported as metrics.' },
  { name: 'CNER_HTTP_PORT', default: '9464', doc: 'Port of the side HTTP server: `/livez`, `/readyz`, `/metrics` (0 = any free port).' },
  { name: 'CNER_SHUTDOWN_GRACE_SECONDS', default: '30', doc: 'Seconds between SIGTERM and SIGKILL (Kubernetes\' `terminationGracePeriodSeconds`; the chart sets it): a stop drops work not yet in a transaction, waits for a commit in flight, and exits by itself 5 s before this ends.' },
  { name: 'CNER_LOG_LEVEL', default: 'info', doc: 'Log level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`. Logs are JSON lines on stdout and never contain record text.' },
] satisfies VariableSpec[]);

export interface KafkaConfig {
  /** Empty only in demo mode, where the demo starts a local stack. */
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly groupId: string;
  readonly inputTopic: string;
  readonly outputTopic: string;
  readonly dltTopic: string;
  readonly modelTopic: string;
  /** Each input partition's producer is `<prefix>-<group>-<topic>-<partition>`. */
  readonly transactionalIdPrefix: string;
  readonly instanceId: string;
  /** Of the events and dead letters written. */
  readonly compression: Compression;
  readonly tls: TlsConfig | null;
  readonly sasl: SaslConfig | null;
  readonly sessionTimeoutMs: number;
  readonly createTopics: boolean;
  readonly topicPartitions: number;
  readonly topicReplicationFactor: number;
}

export interface RegistryConfig {
  /** Null only in demo mode. */
  readonly url: string | null;
  readonly auth: { readonly username: string; readonly password: string } | null;
}

export interface ModelConfig {
  readonly dir: string;
  /** Which linker links: the served bundle's (`bundle`), none, or one directory for every version. */
  readonly linker: LinkerSource;
  /** The linker bundle directory CNER_LINKER_DIR names (`linker.dir`); null for `bundle` and `none`. */
  readonly linkerDir: string | null;
  readonly cacheDir: string | null;
  readonly executionProviders: readonly ExecutionProvider[];
  readonly workers: number;
  readonly intraOpThreads: number;
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  readonly shadowFraction: number;
}

export interface Config {
  readonly kafka: KafkaConfig;
  readonly registry: RegistryConfig;
  readonly model: ModelConfig;
  readonly maxTextLength: number;
  readonly httpPort: number;
  /** SIGTERM to SIGKILL (the orchestrator's grace period). */
  readonly shutdownGraceMs: number;
  readonly logLevel: LogLevel;
}

/**
 * serve: the stream processor (brokers and registry required); demo: the same
 * without them (the demo starts a local stack); tool: a command that only
 * loads a model (`cner tag`, `cner eval`): Kafka settings are not read, logs go
 * to stderr at `warn` by default (stdout carries results), and 0 workers
 * (onnxruntime on the command's own thread) is allowed.
 */
export type ConfigMode = 'serve' | 'demo' | 'tool';

/** Flags of the commands that load a model, and the variable each one sets. */
export const MODEL_FLAGS = Object.freeze({
  model: 'CNER_MODEL_DIR',
  linker: 'CNER_LINKER_DIR',
  workers: 'CNER_INFERENCE_WORKERS',
  providers: 'CNER_EXECUTION_PROVIDERS',
  threads: 'CNER_INTRA_OP_THREADS',
  'batch-size': 'CNER_MAX_BATCH_SIZE',
  'max-wait-ms': 'CNER_MAX_WAIT_MS',
  'log-level': 'CNER_LOG_LEVEL',
} as const);

export type ModelFlag = keyof typeof MODEL_FLAGS;
export type Flags = { readonly [K in ModelFlag]?: string | undefined };

export type Env = Readonly<Record<string, string | undefined>>;

type Validated<A> = Either<NonEmptyArray<string>, A>;
const V = getApplicativeValidation(getSemigroup<string>());
const fail = (message: string): Validated<never> => left([message]);

export { PACKAGE_ROOT } from './paths.js';
export { COMPRESSIONS, type Compression, type SaslConfig, type TlsConfig } from './kafka/settings.js';
export { LOG_LEVELS, type LogLevel } from './observability/logger.js';

const KNOWN = new Set(VARIABLES.map((v) => v.name));

/**
 * Reads one listed variable, or the flag that sets it; empty strings count as
 * unset (Helm renders unset values as ""). `label` names where a value came
 * from, for messages.
 */
function reader(env: Env, flags: Flags): Getter {
  const flagOf = new Map<string, ModelFlag>(Object.entries(MODEL_FLAGS).map(([f, v]) => [v, f as ModelFlag]));
  const fromFlag = (name: string): string | undefined => {
    const f = flagOf.get(name);
    return f === undefined ? undefined : flags[f];
  };
  const get = (name: string): string | undefined => {
    if (!KNOWN.has(name)) throw new TypeError(`config reads ${name}, which VARIABLES does not list`);
    const value = (fromFlag(name) ?? env[name])?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  return Object.assign(get, {
    label: (name: string) => (fromFlag(name) === undefined ? name : `--${flagOf.get(name)!}`),
    flagged: (name: string) => fromFlag(name) !== undefined,
  });
}

export interface ParsedConfig {
  readonly config: Config;
  /** Unknown KAFKA_*, SCHEMA_REGISTRY_* and CNER_* variables (probably typos). */
  readonly warnings: readonly string[];
}

export function parseConfig(env: Env, mode: ConfigMode = 'serve', flags: Flags = {}): Either<NonEmptyArray<string>, ParsedConfig> {
  const get = reader(env, flags);
  // A tool reads no Kafka settings: its environment may hold anything there.
  const tool = mode === 'tool' ? reader({}, {}) : get;
  const parsed = sequenceS(V)({
    kafka: kafkaConfig(tool, mode === 'tool' ? 'demo' : mode),
    registry: registryConfig(tool, mode === 'tool' ? 'demo' : mode),
    model: modelConfig(get, mode),
    maxTextLength: integer(get, 'CNER_MAX_TEXT_LENGTH', 100_000, 1, 10_000_000),
    httpPort: integer(get, 'CNER_HTTP_PORT', 9464, 0, 65_535),
    shutdownGraceMs: millisFromSeconds(integer(get, 'CNER_SHUTDOWN_GRACE_SECONDS', 30, 6, 86_400)),
    logLevel: oneOf(get, 'CNER_LOG_LEVEL', LOG_LEVELS, mode === 'tool' ? 'warn' : 'info'),
  });
  if (isLeft(parsed)) return parsed;
  return right({ config: deepFreeze(parsed.right), warnings: unknownVariables(env) });
}

/** parseConfig or a CnerError('INVALID_CONFIG') listing every problem. */
export function loadConfig(env: Env, mode: ConfigMode = 'serve', flags: Flags = {}): ParsedConfig {
  const parsed = parseConfig(env, mode, flags);
  if (isLeft(parsed)) {
    const where = mode === 'tool' ? 'the command\'s --help and README.md, Configuration' : 'README.md, Configuration';
    throw new CnerError('INVALID_CONFIG', `invalid configuration (see ${where}):\n- ${parsed.left.join('\n- ')}`, {
      context: { problems: parsed.left.length },
    });
  }
  return parsed.right;
}

function kafkaConfig(get: Getter, mode: ConfigMode): Validated<KafkaConfig> {
  const input = topic(get, 'KAFKA_INPUT_TOPIC', 'emr.records.raw');
  const prefix = name(get, 'KAFKA_TRANSACTIONAL_ID_PREFIX', 'cner');
  const instance = name(get, 'CNER_INSTANCE_ID', hostname());
  const parts = sequenceS(V)({
    brokers: brokers(get, mode),
    clientId: name(get, 'KAFKA_CLIENT_ID', 'cner'),
    groupId: name(get, 'KAFKA_GROUP_ID', 'cner'),
    inputTopic: input,
    outputTopic: topic(get, 'KAFKA_OUTPUT_TOPIC', 'emr.records.entities'),
    dltTopic: topic(get, 'KAFKA_DLT_TOPIC', isLeft(input) ? 'unused.DLT' : `${input.right}.DLT`),
    modelTopic: topic(get, 'KAFKA_MODEL_TOPIC', 'ner.models.versions'),
    transactionalIdPrefix: prefix,
    instanceId: instance,
    compression: oneOf(get, 'KAFKA_COMPRESSION', COMPRESSIONS, 'none'),
    tls: tls(get),
    sasl: sasl(get),
    sessionTimeoutMs: integer(get, 'KAFKA_SESSION_TIMEOUT_MS', 30_000, 1_000, 3_600_000),
    createTopics: bool(get, 'KAFKA_CREATE_TOPICS', true),
    topicPartitions: integer(get, 'KAFKA_TOPIC_PARTITIONS', 3, 1, 10_000),
    topicReplicationFactor: integer(get, 'KAFKA_TOPIC_REPLICATION_FACTOR', 1, 1, 100),
  });
  if (isLeft(parts)) return parts;
  const k = parts.right;
  const problems: string[] = [];
  const topics = [k.inputTopic, k.outputTopic, k.dltTopic];
  if (new Set(topics).size !== topics.length) {
    problems.push(`KAFKA_INPUT_TOPIC, KAFKA_OUTPUT_TOPIC and KAFKA_DLT_TOPIC must be three different topics, got ${topics.join(', ')}`);
  }
  if (problems.length > 0) return left(problems as NonEmptyArray<string>);
  return right(k);
}

function registryConfig(get: Getter, mode: ConfigMode): Validated<RegistryConfig> {
  const raw = get('SCHEMA_REGISTRY_URL');
  let url: Validated<string | null>;
  if (raw === undefined) {
    url = mode === 'serve' ? fail('SCHEMA_REGISTRY_URL is required: set it to the registry base URL, e.g. http://registry:8081 (Apicurio: http://registry:8080/apis/ccompat/v7)') : right(null);
  } else {
    url = parseUrl(raw);
  }
  const username = get('SCHEMA_REGISTRY_USERNAME');
  const password = get('SCHEMA_REGISTRY_PASSWORD');
  let auth: Validated<RegistryConfig['auth']>;
  if (username === undefined && password === undefined) auth = right(null);
  else if (username === undefined || password === undefined) auth = fail('SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD must be set together (basic auth), or neither');
  else auth = right({ username, password });
  return sequenceS(V)({ url, auth });
}

function parseUrl(raw: string): Validated<string> {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return fail(`SCHEMA_REGISTRY_URL must be an absolute http(s) URL, e.g. http://registry:8081; got ${JSON.stringify(redactUrl(raw))}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return fail(`SCHEMA_REGISTRY_URL must use http or https, got ${u.protocol}`);
  if (u.username !== '' || u.password !== '') {
    return fail('SCHEMA_REGISTRY_URL must not contain credentials: use SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD (so they are never logged)');
  }
  return right(raw.replace(/\/+$/, ''));
}

const redactUrl = (raw: string): string => raw.replace(/\/\/[^/@]*@/, '//***@');

function modelConfig(get: Getter, mode: ConfigMode): Validated<ModelConfig> {
  // --model is relative to the working directory; CNER_MODEL_DIR to the package root (the image's layout).
  const base = get.flagged('CNER_MODEL_DIR') ? process.cwd() : PACKAGE_ROOT;
  const linker = linkerSource(get);
  return sequenceS(V)({
    dir: right(resolveModelDir(get('CNER_MODEL_DIR') ?? DEFAULT_MODEL, base)),
    linker: right(linker),
    linkerDir: right(linker.kind === 'dir' ? linker.dir : null),
    cacheDir: right(get('CNER_MODEL_CACHE_DIR') ?? null),
    executionProviders: providers(get),
    // The stream loop never runs the model on its own thread; a command may.
    workers: integer(get, 'CNER_INFERENCE_WORKERS', 1, mode === 'tool' ? 0 : 1, 256),
    intraOpThreads: integer(get, 'CNER_INTRA_OP_THREADS', 1, 0, 1024),
    maxBatchSize: integer(get, 'CNER_MAX_BATCH_SIZE', 4, 1, 4096),
    maxWaitMs: integer(get, 'CNER_MAX_WAIT_MS', 5, 0, 60_000),
    shadowFraction: fraction(get, 'CNER_SHADOW_FRACTION', 0),
  });
}

/** CNER_LINKER_DIR: `bundle`, `none` (either case), or a linker bundle by name (default: the shipped `icd10`) or directory (--linker: relative to the working directory). */
function linkerSource(get: Getter): LinkerSource {
  const raw = get('CNER_LINKER_DIR') ?? DEFAULT_LINKER;
  const keyword = raw.toLowerCase();
  if (keyword === 'bundle') return BUNDLE_LINKER;
  if (keyword === 'none') return NO_LINKER;
  return Object.freeze({ kind: 'dir', dir: resolveModelDir(raw, get.flagged('CNER_LINKER_DIR') ? process.cwd() : PACKAGE_ROOT) });
}

/** What a command that loads a model passes to openModel, from the one configuration. */
export function modelOptionsOf(model: ModelConfig, logger?: ModelOptions['logger']): ModelOptions {
  return {
    workers: model.workers,
    maxBatchSize: model.maxBatchSize,
    maxWaitMs: model.maxWaitMs,
    session: { executionProviders: model.executionProviders, intraOpThreads: model.intraOpThreads, graphOptimizationLevel: 'all' },
    ...(logger === undefined ? {} : { logger }),
  };
}

/**
 * What a command passes to openLinker: the tagger's workers and sessions (a
 * command may run the linker on its own thread; the stream never does); the
 * cache keeps openLinker's default.
 */
export function linkerOptionsOf(model: ModelConfig, logger?: LinkerOptions['logger']): LinkerSetup {
  const { workers, session } = modelOptionsOf(model);
  return { workers, session, ...(logger === undefined ? {} : { logger }) };
}

export type LinkerSetup = Pick<LinkerOptions, 'workers' | 'session' | 'logger'>;

type Getter = ((name: string) => string | undefined) & { readonly label: (name: string) => string; readonly flagged: (name: string) => boolean };

function brokers(get: Getter, mode: ConfigMode): Validated<readonly string[]> {
  const raw = get('KAFKA_BROKERS');
  if (raw === undefined) {
    return mode === 'serve' ? fail('KAFKA_BROKERS is required: set it to the bootstrap brokers, e.g. kafka-0:9092,kafka-1:9092') : right([]);
  }
  const list = raw.split(',').map((b) => b.trim()).filter((b) => b.length > 0);
  const bad = list.filter((b) => !/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$/.test(b) || Number(b.slice(b.lastIndexOf(':') + 1)) > 65_535);
  if (list.length === 0 || bad.length > 0) {
    return fail(`KAFKA_BROKERS must be a comma-separated list of host:port, e.g. kafka-0:9092,kafka-1:9092; invalid: ${JSON.stringify(list.length === 0 ? raw : bad.join(','))}`);
  }
  return right(list);
}

function tls(get: Getter): Validated<TlsConfig | null> {
  const enabled = bool(get, 'KAFKA_SSL', false);
  const files = {
    KAFKA_SSL_CA_FILE: get('KAFKA_SSL_CA_FILE'),
    KAFKA_SSL_CERT_FILE: get('KAFKA_SSL_CERT_FILE'),
    KAFKA_SSL_KEY_FILE: get('KAFKA_SSL_KEY_FILE'),
  };
  if (isLeft(enabled)) return enabled;
  const problems: string[] = [];
  const set = Object.entries(files).filter(([, v]) => v !== undefined);
  if (!enabled.right) {
    if (set.length > 0) problems.push(`${set.map(([k]) => k).join(', ')} set but KAFKA_SSL is false: set KAFKA_SSL=true or unset them`);
    return problems.length > 0 ? left(problems as NonEmptyArray<string>) : right(null);
  }
  if ((files.KAFKA_SSL_CERT_FILE === undefined) !== (files.KAFKA_SSL_KEY_FILE === undefined)) {
    problems.push('KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE must be set together (mutual TLS), or neither');
  }
  for (const [k, file] of set) {
    try {
      accessSync(file!, fsConstants.R_OK);
    } catch {
      problems.push(`${k}=${file}: file does not exist or is not readable; mount it or fix the path`);
    }
  }
  if (problems.length > 0) return left(problems as NonEmptyArray<string>);
  return right({ caFile: files.KAFKA_SSL_CA_FILE ?? null, certFile: files.KAFKA_SSL_CERT_FILE ?? null, keyFile: files.KAFKA_SSL_KEY_FILE ?? null });
}

function sasl(get: Getter): Validated<SaslConfig | null> {
  const raw = get('KAFKA_SASL_MECHANISM');
  const username = get('KAFKA_SASL_USERNAME');
  const password = get('KAFKA_SASL_PASSWORD');
  if (raw === undefined) {
    if (username !== undefined || password !== undefined) {
      return fail('KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD set but KAFKA_SASL_MECHANISM is not: set it to plain, scram-sha-256 or scram-sha-512');
    }
    return right(null);
  }
  const problems: string[] = [];
  const mechanism = raw.toLowerCase();
  if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
    problems.push(`KAFKA_SASL_MECHANISM must be one of ${SASL_MECHANISMS.join(', ')}; got ${JSON.stringify(raw)}`);
  }
  if (username === undefined) problems.push(`KAFKA_SASL_USERNAME is required with KAFKA_SASL_MECHANISM=${raw}`);
  if (password === undefined) problems.push(`KAFKA_SASL_PASSWORD is required with KAFKA_SASL_MECHANISM=${raw}`);
  if (problems.length > 0) return left(problems as NonEmptyArray<string>);
  return right({ mechanism: mechanism as SaslMechanism, username: username!, password: password! });
}

function providers(get: Getter): Validated<readonly ExecutionProvider[]> {
  const raw = get('CNER_EXECUTION_PROVIDERS') ?? 'cpu';
  const list = raw.split(',').map((p) => p.trim().toLowerCase()).filter((p) => p.length > 0);
  const unknown = list.filter((p) => !isExecutionProvider(p));
  if (list.length === 0 || unknown.length > 0) {
    return fail(`${get.label('CNER_EXECUTION_PROVIDERS')} must be a comma-separated list of cpu, cuda, tensorrt, coreml, dml, webgpu (e.g. cuda,cpu); unknown: ${JSON.stringify(unknown.join(',') || raw)}`);
  }
  return right(list as ExecutionProvider[]);
}

function integer(get: Getter, key: string, fallback: number, min: number, max: number): Validated<number> {
  const raw = get(key);
  if (raw === undefined) return right(fallback);
  const n = /^-?\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) return fail(`${get.label(key)} must be a whole number from ${min} to ${max}; got ${JSON.stringify(raw)} (default ${fallback})`);
  return right(n);
}

const millisFromSeconds = (v: Validated<number>): Validated<number> => (isLeft(v) ? v : right(v.right * 1000));

function fraction(get: Getter, key: string, fallback: number): Validated<number> {
  const raw = get(key);
  if (raw === undefined) return right(fallback);
  const n = /^\d*\.?\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= 0 && n <= 1)) return fail(`${get.label(key)} must be a number from 0 to 1, e.g. 0.05; got ${JSON.stringify(raw)}`);
  return right(n);
}

function bool(get: Getter, key: string, fallback: boolean): Validated<boolean> {
  const raw = get(key);
  if (raw === undefined) return right(fallback);
  const v = raw.toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return right(true);
  if (v === 'false' || v === '0' || v === 'no') return right(false);
  return fail(`${get.label(key)} must be true or false; got ${JSON.stringify(raw)}`);
}

function oneOf<T extends string>(get: Getter, key: string, values: readonly T[], fallback: T): Validated<T> {
  const raw = get(key);
  if (raw === undefined) return right(fallback);
  const v = raw.toLowerCase();
  return (values as readonly string[]).includes(v) ? right(v as T) : fail(`${get.label(key)} must be one of ${values.join(', ')}; got ${JSON.stringify(raw)}`);
}

/** Kafka's topic rule: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
function topic(get: Getter, key: string, fallback: string): Validated<string> {
  const value = get(key) ?? fallback;
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(value) || value === '.' || value === '..') {
    return fail(`${key} must be a Kafka topic name (1-249 characters of letters, digits, '.', '_', '-'); got ${JSON.stringify(value)}`);
  }
  return right(value);
}

function name(get: Getter, key: string, fallback: string): Validated<string> {
  const value = get(key) ?? fallback;
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(value)) return fail(`${key} must be 1-200 characters of letters, digits, '.', '_', '-'; got ${JSON.stringify(value)}`);
  return right(value);
}

function unknownVariables(env: Env): string[] {
  return Object.keys(env)
    .filter((k) => /^(KAFKA_|SCHEMA_REGISTRY_|CNER_)/.test(k) && !KNOWN.has(k) && !/^CNER_(TRAIN|STACK)_/.test(k))
    .sort()
    .map((k) => `${k} is not a known variable (typo?); see README.md, Configuration`);
}

/** The loggable view: no passwords, no key material. */
export function describeConfig(config: Config): Record<string, unknown> {
  const { kafka, registry } = config;
  return {
    kafka: {
      ...kafka,
      sasl: kafka.sasl === null ? null : { mechanism: kafka.sasl.mechanism, username: kafka.sasl.username, password: '[redacted]' },
    },
    registry: { url: registry.url, auth: registry.auth === null ? null : { username: registry.auth.username, password: '[redacted]' } },
    model: config.model,
    maxTextLength: config.maxTextLength,
    httpPort: config.httpPort,
    logLevel: config.logLevel,
  };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
