// The processor, wired: HTTP side server → model → schemas registered →
// topics present → stream loop. Startup steps that need the registry or the
// broker wait for them with backoff (not ready meanwhile) instead of failing;
// a bad configuration or model bundle fails at once. `cner serve` and
// `cner demo` both run this.

import type { Logger } from 'pino';
import { type Config, describeConfig, linkerOptionsOf, modelOptionsOf } from './config.js';
import { CnerError, describeError } from './errors.js';
import os from 'node:os';
import path from 'node:path';
import { ModelManager } from './versions/manager.js';
import { type Linker, openLinker } from './model/linker.js';
import { type LinkerUse, openModel } from './model/model.js';
import { Health } from './observability/health.js';
import { type HttpServer, startHttpServer } from './observability/http.js';
import { type Metrics, createMetrics } from './observability/metrics.js';
import { AvroReader, EventEncoder, loadSchema } from './records/avro.js';
import { type BackoffOptions, DEFAULT_BACKOFF, retrying } from './backoff.js';
import { createKafkaClient } from './kafka/adapter.js';
import { modelTopicDecoder } from './versions/topic.js';
import { type ProcessorOptions, planTransaction } from './stream/plan.js';
import { SchemaRegistry } from './records/registry.js';
import { StreamProcessor } from './stream/loop.js';
import type { KafkaClient, ModelTopicClient } from './kafka/port.js';

export interface ServiceOptions {
  readonly config: Config;
  readonly log: Logger;
  /** Default: a kafkajs client from the configuration. */
  readonly kafka?: KafkaClient;
  /** The model topic's reader; default: the kafkajs client (null: serve CNER_MODEL_DIR only). */
  readonly modelTopic?: ModelTopicClient | null;
  /** How long startup waits to read the model topic to its end (default 30 s). */
  readonly modelCatchUpTimeoutMs?: number;
  /** Default: all interfaces. */
  readonly httpHost?: string;
  /** Backoff of startup waits and session restarts (tests use short ones). */
  readonly backoff?: BackoffOptions;
  /** Default 5: attempts before a record whose tagging keeps failing is dead-lettered. */
  readonly maxAttempts?: number;
  /** Aborting it stops a start that is waiting for the broker or the registry. */
  readonly signal?: AbortSignal;
}

export interface RunningService {
  readonly httpPort: number;
  readonly health: Health;
  readonly metrics: Metrics;
  /** Which model serves, from the model topic. */
  readonly models: ModelManager;
  /** Settles when the stream loop ends: resolves after stop(), rejects on a fatal error. */
  readonly done: Promise<void>;
  /** Graceful: drops work not yet in a transaction, waits for a commit in flight, leaves the group, closes everything. */
  stop(): Promise<void>;
}

export async function startService(options: ServiceOptions): Promise<RunningService> {
  const { config, log } = options;
  if (config.kafka.brokers.length === 0 || config.registry.url === null) {
    throw new CnerError('INTERNAL', 'startService needs KAFKA_BROKERS and SCHEMA_REGISTRY_URL');
  }
  const backoff = options.backoff ?? DEFAULT_BACKOFF;
  const metrics = createMetrics();
  const health = new Health(metrics, log);
  const abort = new AbortController();
  options.signal?.addEventListener('abort', () => abort.abort(), { once: true });
  let model: ModelManager | null = null;
  /** The one linker of every version (CNER_LINKER_DIR a directory); null with `bundle` (each version opens the one its bundle carries) or `none`. */
  let sharedLinker: Linker | null = null;
  let stream: StreamProcessor | null = null;

  log.info({ config: describeConfig(config) }, 'starting the stream processor');
  const http: HttpServer = await startHttpServer({
    port: config.httpPort,
    ...(options.httpHost === undefined ? {} : { host: options.httpHost }),
    health: () => health.snapshot(),
    registry: metrics.registry,
  });
  log.info({ port: http.port }, 'HTTP side server listening (/livez, /readyz, /metrics)');

  const stopAll = async (): Promise<void> => {
    abort.abort();
    health.shuttingDown();
    await stream?.stop();
    await model?.close().catch((e: unknown) => log.warn({ err: e }, 'closing the model failed'));
    await sharedLinker?.close().catch((e: unknown) => log.warn({ err: e }, 'closing the linker failed'));
    await http.close();
  };

  try {
    const registry = new SchemaRegistry({ url: config.registry.url, auth: config.registry.auth });
    const kafkajs = options.kafka === undefined ? createKafkaClient({ ...config.kafka, log: log.child({ component: 'kafka' }) }) : null;
    const modelLog = log.child({ component: 'model' });
    const source = config.model.linker;
    const linkerOptions = linkerOptionsOf(config.model, log.child({ component: 'linker' }));
    if (source.kind === 'dir') sharedLinker = await openLinker(source.dir, linkerOptions);
    const linkerUse: LinkerUse = sharedLinker === null ? source : { kind: 'shared', linker: sharedLinker };
    model = new ModelManager({
      defaultDir: config.model.dir,
      cacheDir: config.model.cacheDir ?? path.join(os.tmpdir(), `cner-model-cache-${config.kafka.instanceId}`),
      topic: config.kafka.modelTopic,
      readerGroupId: `${config.kafka.groupId}.models.${config.kafka.instanceId}.${process.pid}.${Date.now().toString(36)}`,
      client: options.modelTopic === undefined ? kafkajs : options.modelTopic,
      decode: modelTopicDecoder(registry),
      // Each version's tagger opens with its linker (CNER_LINKER_DIR): they switch, and are closed, together.
      open: (dir) => openModel(dir, { ...modelOptionsOf(config.model, modelLog), linker: linkerUse, linkerOptions }),
      createTopic: config.kafka.createTopics,
      replicationFactor: config.kafka.topicReplicationFactor,
      shadowFraction: config.model.shadowFraction,
      metrics,
      log: modelLog,
      ...(options.modelCatchUpTimeoutMs === undefined ? {} : { catchUpTimeoutMs: options.modelCatchUpTimeoutMs }),
    });
    await model.openDefault();
    health.set('modelLoaded', true);

    const input = loadSchema('EmrRecord');
    const output = loadSchema('ClinicalEntities');
    const outputSchemaId = await untilAvailable('registry', health, log, backoff, abort.signal, () =>
      registerSchemas(registry, config, input.text, output.text, log),
    );
    if (abort.signal.aborted) throw new StartAborted();

    const kafka: KafkaClient = options.kafka ?? kafkajs!;
    await untilAvailable('kafka', health, log, backoff, abort.signal, () => ensureTopics(kafka, config, log));
    if (abort.signal.aborted) throw new StartAborted();
    // Read once: a change of max.message.bytes takes effect at the next start.
    const limits = await untilAvailable('kafka', health, log, backoff, abort.signal, () => topicLimits(kafka, config, log));
    if (abort.signal.aborted) throw new StartAborted();
    const maxMessageBytes = { output: limits[config.kafka.outputTopic] ?? 1_048_588, dlt: limits[config.kafka.dltTopic] ?? 1_048_588 };
    log.info({ maxMessageBytes }, 'largest record batches the output and dead-letter topics accept (max.message.bytes)');
    await model.follow();
    if (abort.signal.aborted) throw new StartAborted();

    const records = { maxTextLength: config.maxTextLength, avro: new AvroReader(input.type, registry) };
    const encoder = new EventEncoder(output.type, outputSchemaId);
    const processor: ProcessorOptions = {
      outputTopic: config.kafka.outputTopic,
      dltTopic: config.kafka.dltTopic,
      groupId: config.kafka.groupId,
      models: model,
      records,
      encoder,
      maxAttempts: options.maxAttempts ?? 5,
      maxMessageBytes,
      metrics,
      log,
    };
    stream = new StreamProcessor({
      kafka,
      inputTopic: config.kafka.inputTopic,
      transactionalIdPrefix: config.kafka.transactionalIdPrefix,
      maxRecordsPerTransaction: Math.max(16, 4 * config.model.maxBatchSize),
      maxBatchBytes: Math.min(maxMessageBytes.output, maxMessageBytes.dlt),
      sessionBackoff: backoff,
      retryBackoff: backoff,
      health,
      metrics,
      log,
      plan: (messages, attempt, onTagged) => planTransaction(messages, attempt, processor, onTagged),
    });
    stream.start();
  } catch (e) {
    await stopAll().catch(() => {});
    throw e;
  }

  const running = stream;
  const models = model;
  return {
    httpPort: http.port,
    models,
    health,
    metrics,
    done: running.done,
    stop: stopAll,
  };
}

/** startService was stopped (its signal aborted) before the processor ran. */
export class StartAborted extends Error {
  override readonly name = 'StartAborted';
  constructor() {
    super('stopped during startup');
  }
}

/**
 * Registers ClinicalEntities under `<output topic>-value` (idempotent), and
 * EmrRecord under `<input topic>-value` unless that subject already has
 * versions of its own (producers own the input schema; ours must not become
 * its latest version). Subjects we create get BACKWARD compatibility (the
 * registry library sets it on a subject's first registration); a subject at
 * NONE is raised to BACKWARD, any other level is kept. Returns the output
 * schema id.
 */
export async function registerSchemas(registry: SchemaRegistry, config: Config, inputSchema: string, outputSchema: string, log: Logger): Promise<number> {
  const outSubject = `${config.kafka.outputTopic}-value`;
  const outputId = await registry.register(outSubject, outputSchema);
  await requireBackward(registry, outSubject, log);
  const inSubject = `${config.kafka.inputTopic}-value`;
  let inputId = await registry.lookup(inSubject, inputSchema);
  if (inputId === null) {
    const latestId = await registry.latestSchemaId(inSubject);
    if (latestId === null) {
      inputId = await registry.register(inSubject, inputSchema);
      await requireBackward(registry, inSubject, log);
    } else {
      log.info({ subject: inSubject, latestSchemaId: latestId }, 'input subject has its own versions: EmrRecord not registered there (values are read with their writer schema)');
    }
  }
  log.info({ outputSubject: outSubject, outputSchemaId: outputId, inputSubject: inSubject, inputSchemaId: inputId }, 'schemas registered');
  return outputId;
}

async function requireBackward(registry: SchemaRegistry, subject: string, log: Logger): Promise<void> {
  const level = await registry.compatibility(subject);
  if (level !== null && level !== 'NONE') return;
  try {
    await registry.setCompatibility(subject, 'BACKWARD');
    log.info({ subject }, 'compatibility of the subject set to BACKWARD');
  } catch (e) {
    if (describeError(e).retriable) throw e;
    log.warn({ subject, err: e }, 'could not set the subject\'s compatibility to BACKWARD (no permission?); set it in the registry');
  }
}

/** Makes sure the three topics exist; creates missing ones when allowed. */
export async function ensureTopics(kafka: KafkaClient, config: Config, log: Logger): Promise<void> {
  const { inputTopic, outputTopic, dltTopic, createTopics, topicPartitions, topicReplicationFactor } = config.kafka;
  const missing = await kafka.missingTopics([inputTopic, outputTopic, dltTopic]);
  if (missing.length === 0) return;
  if (!createTopics) {
    throw new CnerError('TOPIC_MISSING', `topics ${missing.join(', ')} do not exist: create them, or set KAFKA_CREATE_TOPICS=true`, { context: { missing } });
  }
  await kafka.createTopics(missing.map((topic) => ({ topic, partitions: topicPartitions, replicationFactor: topicReplicationFactor })));
  log.info({ topics: missing, partitions: topicPartitions, replicationFactor: topicReplicationFactor }, 'created missing topics');
}

/**
 * max.message.bytes of the output and dead-letter topics. Reading topic
 * configs needs the DescribeConfigs ACL, which a processor did not need
 * before: without it Kafka's default is assumed (and said), rather than
 * refusing to start.
 */
export async function topicLimits(kafka: KafkaClient, config: Config, log: Logger): Promise<Record<string, number>> {
  try {
    return await kafka.maxMessageBytes([config.kafka.outputTopic, config.kafka.dltTopic]);
  } catch (e) {
    if (!(e instanceof CnerError) || e.code !== 'KAFKA_NOT_AUTHORIZED') throw e;
    log.warn({ err: e }, 'may not read the topics\' max.message.bytes (grant DescribeConfigs on the output and dead-letter topics): assuming Kafka\'s default, 1048588');
    return {};
  }
}

/** Retries `fn` with backoff while it fails retriably, keeping the dependency marked unavailable. */
async function untilAvailable<T>(dependency: 'kafka' | 'registry', health: Health, log: Logger, backoff: BackoffOptions, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  try {
    const value = await retrying(() => raceAbort(fn(), signal), {
      backoff,
      signal,
      onRetry: (err, info, _attempt, retryInMs) => {
        if (info.code === 'TOPIC_MISSING') log.warn({ err, retryInMs }, 'waiting for topics: not ready until they exist');
        else health.setAvailable(dependency, false, { err, retryInMs });
      },
    });
    health.setAvailable(dependency, true);
    return value;
  } catch (e) {
    throw signal.aborted ? new StartAborted() : e;
  }
}

/** `promise`, or StartAborted as soon as `signal` aborts (the promise is left to settle unobserved). */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(new StartAborted());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new StartAborted());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
