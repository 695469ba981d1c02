// The Kafka adapter: the only module that imports kafkajs. It implements the
// port in ./port.ts (consumer, transactional producer, topic admin) plus a few
// tools for the demo and the tests (plain produce, collect a topic, delete
// topics). kafkajs has no active maintainer; @confluentinc/kafka-javascript
// offers the same operations (its KafkaJS-compatible API), so swapping means
// rewriting this file only.
//
// kafkajs errors become CnerErrors here (see `classify`), and kafkajs log
// lines are forwarded to pino with an allowlist of fields.
//
// kafkajs reads only uncompressed and gzip batches by itself; snappy, lz4 and
// zstd are plugged in here (its CompressionCodecs table) from npm packages
// that are plain JavaScript or WebAssembly, so they install anywhere without
// a compiler or a download at install time.

import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Zstd } from '@hpcc-js/wasm-zstd';
import { decompress as zstdDecompress } from 'fzstd';
import kafkajs from 'kafkajs';
import snappyCodec from 'kafkajs-snappy';
import * as lz4 from 'lz4js';
import * as xxh32 from 'lz4js/xxh32.js';
import type { Admin, Batch, Consumer, EachBatchPayload, IHeaders, KafkaConfig, KafkaMessage, LogEntry, Producer, SASLOptions } from 'kafkajs';
import type { Logger } from 'pino';
import type { Compression, SaslConfig, TlsConfig } from './settings.js';
import { CnerError, isCnerError } from '../errors.js';
import type {
  BatchControl,
  BatchHandler,
  ConsumerEvents,
  HeaderValue,
  Headers,
  InputBatch,
  InputMessage,
  KafkaClient,
  ModelTopicClient,
  OffsetReader,
  OutputMessage,
  StreamConsumer,
  TailOptions,
  TopicPartitionOffset,
  TopicSpec,
  TopicTail,
  TransactionalProducer,
  ProducerOptions,
} from './port.js';
import { BATCH_OVERHEAD_BYTES, recordBytes } from './port.js';

const { Kafka, Partitioners, logLevel, CompressionTypes, CompressionCodecs, ConfigResourceTypes } = kafkajs;

// ---------------------------------------------------------------- codecs

interface Codec {
  compress(encoder: { buffer: Buffer }): Promise<Buffer>;
  decompress(buffer: Buffer): Promise<Buffer>;
}

let zstdModule: Promise<Zstd> | null = null;

/** LZ4 frames (lz4js: reads content sizes and checksums, writes none). */
const lz4Codec = (): Codec => ({
  compress: async (encoder) => lz4IndependentFrame(encoder.buffer),
  decompress: async (buffer) => Buffer.from(lz4.decompress(buffer)),
});

const LZ4_BLOCK_BYTES = 4 * 1024 * 1024; // lz4js's block size (descriptor BD 7)
const LZ4_HEADER_BYTES = 7; // magic, FLG, BD, header checksum
const LZ4_FLG_INDEPENDENT_BLOCKS = 0x60; // version 01, block independence

/**
 * lz4js writes its blocks as one dependent stream (without the block
 * independence flag), which Kafka's Java broker refuses ("Dependent block
 * stream is unsupported"). So each 4 MiB block is compressed as a frame of its
 * own, which makes the blocks independent, and they are put in one frame that
 * says so.
 */
function lz4IndependentFrame(src: Buffer): Buffer {
  const header = Buffer.from([0x04, 0x22, 0x4d, 0x18, LZ4_FLG_INDEPENDENT_BLOCKS, 0x70, 0]);
  header[6] = (xxh32.hash(0, header, 4, 2) >> 8) & 0xff;
  const blocks: Buffer[] = [];
  for (let at = 0; at < src.length; at += LZ4_BLOCK_BYTES) {
    const frame = lz4.compress(src.subarray(at, at + LZ4_BLOCK_BYTES));
    blocks.push(Buffer.from(frame.buffer, frame.byteOffset + LZ4_HEADER_BYTES, frame.length - LZ4_HEADER_BYTES - 4));
  }
  return Buffer.concat([header, ...blocks, Buffer.alloc(4)]);
}

/**
 * zstd: fzstd reads every frame (also those without a content size, as
 * streaming producers write them); the WebAssembly zstd library, loaded on
 * first use, writes (level 3, Kafka's default).
 */
const zstdCodec = (): Codec => ({
  compress: async (encoder) => Buffer.from((await (zstdModule ??= Zstd.load())).compress(encoder.buffer, 3)),
  decompress: async (buffer) => Buffer.from(zstdDecompress(buffer)),
});

CompressionCodecs[CompressionTypes.Snappy] = snappyCodec;
CompressionCodecs[CompressionTypes.LZ4] = lz4Codec;
CompressionCodecs[CompressionTypes.ZSTD] = zstdCodec;

const COMPRESSION_TYPES: Readonly<Record<Compression, kafkajs.CompressionTypes>> = Object.freeze({
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
});

export interface KafkaAdapterOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  readonly groupId: string;
  readonly tls: TlsConfig | null;
  readonly sasl: SaslConfig | null;
  readonly sessionTimeoutMs: number;
  readonly log: Logger;
  /** How long the coordinator keeps a transaction open before aborting it (default 60 s). */
  readonly transactionTimeoutMs?: number;
  /** Connection attempts before a call fails (default 5; tests use fewer). */
  readonly retries?: number;
  /** Compression of what the processor writes (events, dead letters); default none. */
  readonly compression?: Compression;
}

export function createKafkaClient(options: KafkaAdapterOptions): KafkaClient & KafkaTools & ModelTopicClient {
  const kafka = new Kafka(kafkaConfig(options));
  return new KafkajsClient(kafka, options);
}

/** kafkajs client options; TLS files are read here, once. */
export function kafkaConfig(options: Omit<KafkaAdapterOptions, 'groupId' | 'sessionTimeoutMs'>): KafkaConfig {
  const config: KafkaConfig = {
    clientId: options.clientId,
    brokers: [...options.brokers],
    connectionTimeout: 3_000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 300, retries: options.retries ?? 5, maxRetryTime: 10_000 },
    logLevel: logLevel.INFO,
    logCreator: pinoLogCreator(options.log),
  };
  if (options.tls !== null) config.ssl = tlsOptions(options.tls);
  if (options.sasl !== null) config.sasl = saslOptions(options.sasl);
  return config;
}

function tlsOptions(tls: TlsConfig): ConnectionOptions | true {
  if (tls.caFile === null && tls.certFile === null) return true;
  const read = (file: string): string => readFileSync(file, 'utf8');
  return {
    ...(tls.caFile === null ? {} : { ca: [read(tls.caFile)] }),
    ...(tls.certFile === null ? {} : { cert: read(tls.certFile) }),
    ...(tls.keyFile === null ? {} : { key: read(tls.keyFile) }),
  };
}

function saslOptions(sasl: SaslConfig): SASLOptions {
  const { username, password } = sasl;
  switch (sasl.mechanism) {
    case 'plain':
      return { mechanism: 'plain', username, password };
    case 'scram-sha-256':
      return { mechanism: 'scram-sha-256', username, password };
    case 'scram-sha-512':
      return { mechanism: 'scram-sha-512', username, password };
  }
}

// ---------------------------------------------------------------- logging

/** Fields of kafkajs log entries worth keeping; anything else (e.g. request payloads) is dropped. */
const LOG_FIELDS = ['broker', 'clientId', 'groupId', 'memberId', 'topic', 'partition', 'retryCount', 'retryTime', 'transactionalId', 'type', 'code'];

/**
 * kafkajs warns when an idempotent producer has bounded retries. Ours are
 * bounded on purpose: a call that fails is aborted (transactions) and the
 * loop retries with its own backoff, so the warning is logged at debug.
 */
const CHATTY_NAMESPACES = new Set(['Connection', 'BrokerPool']);

const EXPECTED_WARNINGS = new Set(['Limiting retries for the idempotent producer may invalidate EoS guarantees']);

function pinoLogCreator(log: Logger): () => (entry: LogEntry) => void {
  const child = log.child({ component: 'kafkajs' });
  return () => (entry) => {
    const fields: Record<string, unknown> = { namespace: entry.namespace };
    for (const k of LOG_FIELDS) if (entry.log[k] !== undefined) fields[k] = entry.log[k];
    // kafkajs puts the error message (a string: broker and protocol errors, never record data) in `error`.
    if (typeof entry.log['error'] === 'string') fields['kafkaError'] = entry.log['error'];
    const msg = entry.log.message;
    if (EXPECTED_WARNINGS.has(msg)) {
      child.debug(fields, msg);
      return;
    }
    switch (entry.level) {
      case logLevel.ERROR:
      case logLevel.WARN:
        // Connection retries are logged by kafkajs on every attempt; the processor
        // reports unavailability itself, once per change (health.ts).
        if (CHATTY_NAMESPACES.has(entry.namespace)) child.debug(fields, msg);
        else child.warn(fields, msg);
        return;
      case logLevel.INFO:
        child.debug(fields, msg);
        return;
      default:
        child.trace(fields, msg);
    }
  };
}

// ---------------------------------------------------------------- errors

const FENCED_TYPES = new Set(['INVALID_PRODUCER_EPOCH', 'TRANSACTION_COORDINATOR_FENCED', 'INVALID_PRODUCER_ID_MAPPING', 'PRODUCER_FENCED']);
const PRODUCER_FENCED_CODE = 90; // not in kafkajs's table (newer than kafkajs)
const AUTH_TYPES = new Set([
  'SASL_AUTHENTICATION_FAILED',
  'TOPIC_AUTHORIZATION_FAILED',
  'GROUP_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'UNSUPPORTED_SASL_MECHANISM',
  'ILLEGAL_SASL_STATE',
]);
const UNAVAILABLE_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSTimeout',
  'KafkaJSLockTimeout',
]);

interface KafkajsErrorShape {
  readonly name?: string;
  readonly type?: string;
  readonly code?: number | string;
  readonly retriable?: boolean;
  readonly cause?: unknown;
}

/** Maps any error out of kafkajs to a CnerError (non-KafkaJS errors are bugs: INTERNAL). */
export function classify(error: unknown, what: string): CnerError {
  if (isCnerError(error)) return error;
  const chain: KafkajsErrorShape[] = [];
  for (let e: unknown = error; e instanceof Error && chain.length < 8; e = (e as KafkajsErrorShape).cause) chain.push(e);
  const top = chain[0];
  const root = chain[chain.length - 1];
  if (top === undefined || root === undefined || !(top.name ?? '').startsWith('KafkaJS')) {
    return new CnerError('INTERNAL', `${what} failed unexpectedly`, { cause: error });
  }
  const types = chain.map((e) => e.type).filter((t): t is string => t !== undefined);
  const context = { kafkaError: root.name, ...(types.length > 0 ? { kafkaType: types[types.length - 1] } : {}) };
  if (chain.some((e) => (e.type !== undefined && FENCED_TYPES.has(e.type)) || e.code === PRODUCER_FENCED_CODE)) {
    return new CnerError('PRODUCER_FENCED', `${what}: another producer with the same transactional id took over (another instance with the same CNER_INSTANCE_ID, or a restart of this one)`, { cause: error, context });
  }
  if (chain.some((e) => e.name === 'KafkaJSSASLAuthenticationError' || (e.type !== undefined && AUTH_TYPES.has(e.type)))) {
    return new CnerError('KAFKA_NOT_AUTHORIZED', `${what}: Kafka refused the credentials or the operation; check KAFKA_SASL_* and the ACLs of this principal`, { cause: error, context });
  }
  if (chain.some((e) => UNAVAILABLE_NAMES.has(e.name ?? '')) || (root.retriable === true && (root.name ?? '').startsWith('KafkaJS'))) {
    return new CnerError('BROKER_UNAVAILABLE', `${what}: Kafka is unavailable (${messageOf(error)})`, { cause: error, context });
  }
  return new CnerError('KAFKA_ERROR', `${what}: ${messageOf(error)}`, { cause: error, context });
}

// KafkaJS messages name brokers, topics and protocol errors, never record data.
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

// ---------------------------------------------------------------- client

class KafkajsClient implements KafkaClient, KafkaTools, ModelTopicClient {
  readonly groupId: string;
  readonly #kafka: InstanceType<typeof Kafka>;
  readonly #options: KafkaAdapterOptions;

  constructor(kafka: InstanceType<typeof Kafka>, options: KafkaAdapterOptions) {
    this.#kafka = kafka;
    this.#options = options;
    this.groupId = options.groupId;
  }

  consumer(): StreamConsumer {
    return new KafkajsStreamConsumer(
      this.#kafka.consumer({
        groupId: this.groupId,
        sessionTimeout: this.#options.sessionTimeoutMs,
        rebalanceTimeout: Math.max(60_000, this.#options.sessionTimeoutMs),
        heartbeatInterval: Math.min(3_000, Math.floor(this.#options.sessionTimeoutMs / 3)),
        readUncommitted: false,
        allowAutoTopicCreation: false,
        maxWaitTimeInMs: 500,
        // kafkajs must not restart itself: the stream loop restarts the whole
        // session (producer and consumer) with its own backoff.
        retry: { initialRetryTime: 300, retries: this.#options.retries ?? 5, restartOnFailure: async () => false },
      }),
    );
  }

  transactionalProducer(transactionalId: string, options: ProducerOptions = {}): TransactionalProducer {
    return new KafkajsTransactionalProducer(
      this.#kafka.producer({
        transactionalId,
        idempotent: true,
        maxInFlightRequests: 1,
        transactionTimeout: this.#options.transactionTimeoutMs ?? 60_000,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner, // murmur2, as the Java client: same key, same partition
      }),
      transactionalId,
      COMPRESSION_TYPES[this.#options.compression ?? 'none'],
      options.maxBatchBytes ?? Number.POSITIVE_INFINITY,
    );
  }

  async maxMessageBytes(topics: readonly string[]): Promise<Record<string, number>> {
    return this.#withAdmin('reading topic configs', async (admin) => {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['max.message.bytes'] })),
      });
      const out: Record<string, number> = {};
      for (const r of resources) {
        const value = Number(r.configEntries.find((e) => e.configName === 'max.message.bytes')?.configValue);
        // (The topic's value, or the broker's message.max.bytes it inherits; Kafka's default when unreadable.)
        out[r.resourceName] = Number.isSafeInteger(value) && value > 0 ? value : 1_048_588;
      }
      return out;
    });
  }

  async missingTopics(topics: readonly string[]): Promise<string[]> {
    return this.#withAdmin('listing topics', async (admin) => {
      const existing = new Set(await admin.listTopics());
      return topics.filter((t) => !existing.has(t));
    });
  }

  async createTopics(topics: readonly TopicSpec[]): Promise<void> {
    await this.#withAdmin('creating topics', async (admin) => {
      await admin.createTopics({
        waitForLeaders: true,
        topics: topics.map((t) => ({
          topic: t.topic,
          numPartitions: t.partitions,
          replicationFactor: t.replicationFactor,
          ...(t.config === undefined ? {} : { configEntries: Object.entries(t.config).map(([name, value]) => ({ name, value })) }),
        })),
      });
    });
  }

  offsetReader(): OffsetReader {
    return new KafkajsOffsetReader(this.#kafka.admin(), this.groupId);
  }

  async endOffsets(topic: string): Promise<Record<number, string>> {
    return this.#withAdmin('fetching end offsets', async (admin) => Object.fromEntries((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p.high])));
  }

  async tail(topic: string, options: TailOptions): Promise<TopicTail> {
    const consumer = this.#kafka.consumer({
      groupId: options.groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 500,
      maxBytesPerPartition: 4 * 1024 * 1024,
      retry: { initialRetryTime: 300, retries: this.#options.retries ?? 5, restartOnFailure: async () => false },
    });
    let stopped = false;
    consumer.on(consumer.events.CRASH, (e) => {
      if (!stopped) options.onCrash(classify(e.payload.error, `reading ${topic}`));
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => options.onMessages(batch.messages.map((m) => toInputMessage(batch, m))),
      });
    } catch (e) {
      await consumer.disconnect().catch(() => {});
      throw classify(e, `reading ${topic}`);
    }
    return {
      stop: async () => {
        stopped = true;
        await consumer.disconnect().catch(() => {});
      },
    };
  }

  async produceEach(topic: string, messages: readonly Omit<OutputMessage, 'topic'>[]): Promise<void> {
    const producer = this.#kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner, idempotent: true, maxInFlightRequests: 1 });
    try {
      await producer.connect();
      for (const m of messages) await producer.send({ topic, acks: -1, messages: [toKafkaMessage(m)] });
    } catch (e) {
      throw classify(e, `producing to ${topic}`);
    } finally {
      await producer.disconnect().catch(() => {});
    }
  }

  async deleteTopics(topics: readonly string[]): Promise<void> {
    await this.#withAdmin('deleting topics', (admin) => admin.deleteTopics({ topics: [...topics] }));
  }

  async describeGroup(groupId: string): Promise<{ state: string; members: number }> {
    return this.#withAdmin('describing a group', async (admin) => {
      const { groups } = await admin.describeGroups([groupId]);
      const g = groups[0];
      return { state: g?.state ?? 'Unknown', members: g?.members.length ?? 0 };
    });
  }

  async committedOffsets(groupId: string, topic: string): Promise<Record<number, string>> {
    return this.#withAdmin('fetching committed offsets', async (admin) => {
      const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return Object.fromEntries((entry?.partitions ?? []).map((p) => [p.partition, p.offset]));
    });
  }

  async produce(topic: string, messages: readonly Omit<OutputMessage, 'topic'>[], options: ProduceOptions = {}): Promise<void> {
    const producer = this.#kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner, idempotent: true });
    try {
      await producer.connect();
      await producer.send({ topic, acks: -1, compression: COMPRESSION_TYPES[options.compression ?? 'none'], messages: messages.map(toKafkaMessage) });
    } catch (e) {
      throw classify(e, `producing to ${topic}`);
    } finally {
      await producer.disconnect().catch(() => {});
    }
  }

  async collect(topic: string, options: CollectOptions): Promise<InputMessage[]> {
    const consumer = this.#kafka.consumer({
      groupId: options.groupId ?? `cner-collect-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
      readUncommitted: options.readUncommitted ?? false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 200,
      retry: { retries: 3, restartOnFailure: async () => false },
    });
    const seen: InputMessage[] = [];
    try {
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => resolve(), options.timeoutMs);
        const check = (): void => {
          if (options.until !== undefined && options.until(seen)) {
            clearTimeout(timer);
            resolve();
          }
        };
        consumer.on(consumer.events.CRASH, (e) => {
          clearTimeout(timer);
          reject(classify(e.payload.error, `reading ${topic}`));
        });
        consumer
          .run({
            eachBatch: async ({ batch }) => {
              seen.push(...batch.messages.map((m) => toInputMessage(batch, m)));
              check();
            },
          })
          .then(check, reject);
      });
    } finally {
      await consumer.disconnect().catch(() => {});
    }
    return seen;
  }

  async #withAdmin<T>(what: string, fn: (admin: ReturnType<InstanceType<typeof Kafka>['admin']>) => Promise<T>): Promise<T> {
    const admin = this.#kafka.admin();
    try {
      await admin.connect();
      return await fn(admin);
    } catch (e) {
      throw classify(e, what);
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
}

/**
 * One admin connection, opened at the first read and kept until close(): a
 * rebalance reads the committed offset of every partition it assigns, each
 * right after that partition's producer fenced its earlier owner (so reads are
 * never shared), and a connection per read cost a TCP and metadata round trip each.
 */
class KafkajsOffsetReader implements OffsetReader {
  readonly #admin: Admin;
  readonly #groupId: string;
  #connected: Promise<void> | null = null;

  constructor(admin: Admin, groupId: string) {
    this.#admin = admin;
    this.#groupId = groupId;
  }

  async committedOffset(topic: string, partition: number): Promise<string | null> {
    try {
      this.#connected ??= this.#admin.connect();
      await this.#connected;
      const [entry] = await this.#admin.fetchOffsets({ groupId: this.#groupId, topics: [topic] });
      const offset = entry?.partitions.find((p) => p.partition === partition)?.offset;
      return offset === undefined || offset === '-1' ? null : offset;
    } catch (e) {
      this.#connected = null; // connect again next time
      throw classify(e, 'fetching the committed offset');
    }
  }

  async close(): Promise<void> {
    if (this.#connected === null) return;
    this.#connected = null;
    await this.#admin.disconnect().catch(() => {});
  }
}

// ---------------------------------------------------------------- consumer

class KafkajsStreamConsumer implements StreamConsumer {
  readonly #consumer: Consumer;
  #stopped = false;

  constructor(consumer: Consumer) {
    this.#consumer = consumer;
  }

  async run(topic: string, handler: BatchHandler, events: ConsumerEvents): Promise<void> {
    const c = this.#consumer;
    c.on(c.events.GROUP_JOIN, (e) => events.onJoin(e.payload.memberAssignment));
    c.on(c.events.CRASH, (e) => {
      if (!this.#stopped) events.onCrash(classify(e.payload.error, 'consuming'));
    });
    try {
      await c.connect();
      // fromBeginning only matters for a new group: records produced before its first start are not skipped.
      await c.subscribe({ topic, fromBeginning: true });
    } catch (e) {
      throw classify(e, `subscribing to ${topic}`);
    }
    // Resolves once the group is joined; a failure to join arrives as a CRASH event.
    await c.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1, // one transaction at a time per producer
      eachBatch: async (payload) => handler(toInputBatch(payload.batch), control(payload, c)),
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    // disconnect = stop (waits for the batch in progress) + leave the group + close connections
    await this.#consumer.disconnect();
  }
}

function control(payload: EachBatchPayload, consumer: Consumer): BatchControl {
  const { topic, partition } = payload.batch;
  return {
    resolveOffset: (offset) => payload.resolveOffset(offset),
    heartbeat: () => payload.heartbeat(),
    seek: (offset) => consumer.seek({ topic, partition, offset }),
    isRunning: () => payload.isRunning(),
    isStale: () => payload.isStale(),
  };
}

function toInputBatch(batch: Batch): InputBatch {
  return {
    topic: batch.topic,
    partition: batch.partition,
    highWatermark: batch.highWatermark,
    messages: batch.messages.map((m) => toInputMessage(batch, m)),
  };
}

function toInputMessage(batch: Pick<Batch, 'topic' | 'partition'>, m: KafkaMessage): InputMessage {
  return {
    topic: batch.topic,
    partition: batch.partition,
    offset: m.offset,
    key: m.key ?? null,
    value: m.value ?? null,
    headers: fromKafkaHeaders(m.headers),
    timestamp: Number(m.timestamp),
  };
}

/**
 * Every value of every header, nulls included: kafkajs gives a repeated header
 * as an array and a null value as null (legal in Kafka; Java producers send
 * them). Strings cannot occur on the read path, but the type allows them.
 */
function fromKafkaHeaders(headers: IHeaders | undefined): Headers {
  const out: Record<string, HeaderValue | HeaderValue[]> = {};
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v.map(toHeaderValue) : toHeaderValue(v);
  }
  return out;
}

const toHeaderValue = (v: Buffer | string | null): HeaderValue => (v === null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v));

/**
 * The header that lists the headers written with an empty value in place of
 * null: kafkajs 2.2.4 cannot encode a null header value (it measures the value
 * with Buffer.byteLength before checking for null: kafkajs issue 1789), so a
 * dead letter that carries a null header says which values were null. Its
 * value is JSON, `[[name, index], ...]`, index among that header's values.
 */
export const NULL_HEADERS = 'cner_null-header-values';

function toKafkaHeaders(headers: Headers): IHeaders {
  const out: IHeaders = {};
  const nulls: [string, number][] = [];
  for (const [k, v] of Object.entries(headers)) {
    const values = Array.isArray(v) ? (v as readonly HeaderValue[]) : [v as HeaderValue];
    const bytes = values.map((value, i) => {
      if (value !== null) return value;
      nulls.push([k, i]);
      return Buffer.alloc(0);
    });
    out[k] = Array.isArray(v) ? bytes : bytes[0];
  }
  if (nulls.length > 0) out[NULL_HEADERS] = Buffer.from(JSON.stringify(nulls));
  return out;
}

const toKafkaMessage = (m: Omit<OutputMessage, 'topic'>): { key: Buffer | null; value: Buffer | null; headers: IHeaders } => ({
  key: m.key,
  value: m.value,
  headers: toKafkaHeaders(m.headers),
});

// ---------------------------------------------------------------- producer

class KafkajsTransactionalProducer implements TransactionalProducer {
  readonly #producer: Producer;
  readonly #transactionalId: string;
  readonly #compression: kafkajs.CompressionTypes;
  readonly #maxBatchBytes: number;

  constructor(producer: Producer, transactionalId: string, compression: kafkajs.CompressionTypes, maxBatchBytes: number) {
    this.#producer = producer;
    this.#transactionalId = transactionalId;
    this.#compression = compression;
    this.#maxBatchBytes = maxBatchBytes;
  }

  async connect(): Promise<void> {
    try {
      await this.#producer.connect();
      // kafkajs's connect() does not send the transactional InitProducerId:
      // it waits for the first transaction(), so a producer would fence the
      // earlier one only at its first commit, after work was planned from
      // offsets read before the fence (a measured duplicate). Beginning a
      // transaction sends it now (the coordinator bumps the epoch, fencing
      // every older producer with this id and aborting its open transaction,
      // or completing one already committing); aborting a transaction that
      // has no partitions yet sends nothing.
      const tx = await this.#producer.transaction();
      await tx.abort();
    } catch (e) {
      throw classify(e, `starting the transactional producer ${this.#transactionalId}`);
    }
  }

  async commit(messages: readonly OutputMessage[], offsets: readonly TopicPartitionOffset[], groupId: string): Promise<void> {
    let tx: Awaited<ReturnType<Producer['transaction']>>;
    try {
      tx = await this.#producer.transaction();
    } catch (e) {
      throw classify(e, 'beginning a transaction');
    }
    try {
      // In as many requests as keep each record batch under the topics' limit
      // (one request makes one batch per partition), in order.
      for (const chunk of chunks(messages, this.#maxBatchBytes)) {
        const byTopic = new Map<string, ReturnType<typeof toKafkaMessage>[]>();
        for (const m of chunk) {
          const list = byTopic.get(m.topic) ?? [];
          list.push(toKafkaMessage(m));
          byTopic.set(m.topic, list);
        }
        await tx.sendBatch({ acks: -1, compression: this.#compression, topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })) });
      }
      await tx.sendOffsets({
        consumerGroupId: groupId,
        topics: groupOffsets(offsets),
      });
      await tx.commit();
    } catch (e) {
      const cause = classify(e, 'committing a transaction');
      try {
        await tx.abort();
      } catch {
        throw cause; // the producer is unusable
      }
      if (cause.code === 'PRODUCER_FENCED') throw cause; // a newer producer owns the id: this one is done
      throw new CnerError('TRANSACTION_FAILED', `transaction aborted: ${cause.message}`, { cause, context: cause.context });
    }
  }

  async disconnect(): Promise<void> {
    await this.#producer.disconnect().catch(() => {});
  }
}

/** Consecutive runs of messages whose records add up to at most `maxBytes` (a larger message alone). */
function chunks(messages: readonly OutputMessage[], maxBytes: number): OutputMessage[][] {
  const out: OutputMessage[][] = [];
  let current: OutputMessage[] = [];
  let bytes = BATCH_OVERHEAD_BYTES;
  for (const m of messages) {
    const size = recordBytes(m);
    if (current.length > 0 && bytes + size > maxBytes) {
      out.push(current);
      current = [];
      bytes = BATCH_OVERHEAD_BYTES;
    }
    current.push(m);
    bytes += size;
  }
  if (current.length > 0) out.push(current);
  return out;
}

function groupOffsets(offsets: readonly TopicPartitionOffset[]): { topic: string; partitions: { partition: number; offset: string }[] }[] {
  const byTopic = new Map<string, { partition: number; offset: string }[]>();
  for (const o of offsets) {
    const list = byTopic.get(o.topic) ?? [];
    list.push({ partition: o.partition, offset: o.offset });
    byTopic.set(o.topic, list);
  }
  return [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
}

// ---------------------------------------------------------------- tools

export interface CollectOptions {
  /** Stop as soon as this returns true for what was read so far. */
  readonly until?: (seen: readonly InputMessage[]) => boolean;
  /** Stop after this long in any case. */
  readonly timeoutMs: number;
  /** Default false: read_committed (only committed transactions). */
  readonly readUncommitted?: boolean;
  readonly groupId?: string;
}

export interface ProduceOptions {
  /** Default none. */
  readonly compression?: Compression;
}

/** Operations the demo and the integration tests need besides the processor's port. */
export interface KafkaTools {
  /** Plain (non-transactional) produce, acks=all, in one request. */
  produce(topic: string, messages: readonly Omit<OutputMessage, 'topic'>[], options?: ProduceOptions): Promise<void>;
  /** Reads a topic from the beginning with a fresh group until `until` or the timeout. */
  collect(topic: string, options: CollectOptions): Promise<InputMessage[]>;
  deleteTopics(topics: readonly string[]): Promise<void>;
  /** State (Stable, Empty, …) and member count of a consumer group. */
  describeGroup(groupId: string): Promise<{ state: string; members: number }>;
  /** The group's committed offset per partition of `topic` ("-1": none). */
  committedOffsets(groupId: string, topic: string): Promise<Record<number, string>>;
}
