// Fakes for the consumer tests: an in-memory Kafka behind the port in
// src/kafka/port.ts, a tagging model without onnxruntime, and loggers
// that keep their lines.

import path from 'node:path';
import pino, { type Logger } from 'pino';
import { type LogLevel, PACKAGE_ROOT } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';
import { CnerError } from '../src/errors.js';
import { type ModelBundle, loadBundle } from '../src/model/bundle.js';
import { NUM_TAGS } from '../src/pipeline/labels.js';
import type { EntityLinker } from '../src/pipeline/link.js';
import { type TaggingModel, observed } from '../src/pipeline/tag.js';
import { AvroReader, EventEncoder, loadSchema } from '../src/records/avro.js';
import type { ModelProvider } from '../src/versions/leases.js';
import type { ProcessorOptions } from '../src/stream/plan.js';
import { createMetrics } from '../src/observability/metrics.js';
import type {
  BatchHandler,
  ConsumerEvents,
  InputMessage,
  KafkaClient,
  OffsetReader,
  OutputMessage,
  StreamConsumer,
  TopicPartitionOffset,
  TopicSpec,
  TransactionalProducer,
} from '../src/kafka/port.js';

export const TINY_BUNDLE = path.join(PACKAGE_ROOT, 'fixtures', 'tiny-bundle');

let bundle: Promise<ModelBundle> | null = null;

/**
 * A TaggingModel over the tiny bundle's vocabulary and CRF whose emissions
 * come from `emit` (default: all zeros) and which can be made to fail.
 */
export async function fakeModel(options: { fail?: (sequences: readonly Int32Array[]) => Error | undefined } = {}): Promise<TaggingModel & { calls: number }> {
  bundle ??= loadBundle(TINY_BUNDLE);
  const b = await bundle;
  const model = {
    version: 'fake-1',
    vocab: b.vocab,
    crf: b.crf,
    calls: 0,
    inferEach(sequences: readonly Int32Array[]): Promise<Float32Array>[] {
      model.calls++;
      const failure = options.fail?.(sequences);
      // Strongly B-DIS on the first token, O elsewhere: one entity per chunk.
      return sequences.map(async (s) => {
        if (failure !== undefined) throw failure;
        const em = new Float32Array(s.length * NUM_TAGS);
        for (let t = 0; t < s.length; t++) em[t * NUM_TAGS + (t === 0 ? 1 : 0)] = 10;
        return em;
      });
    },
  };
  return model;
}

/**
 * `model` with every row held back until the test releases it, oldest first
 * (the order the rows were asked for), as batches that finish one at a time.
 */
export function heldModel(model: TaggingModel): TaggingModel & { readonly held: number; release(rows?: number): Promise<void> } {
  const gates: (() => void)[] = [];
  return {
    ...model,
    get held() {
      return gates.length;
    },
    inferEach(sequences, features) {
      return model.inferEach(sequences, features).map((row) => {
        void observed(row); // held until its gate opens, a failed row has no handler till then
        return new Promise<void>((open) => gates.push(open)).then(() => row);
      });
    },
    /** Lets the `rows` oldest held rows through, then waits until what they started (decoding, linker calls) has run. */
    async release(rows = 1) {
      for (const open of gates.splice(0, rows)) open();
      await new Promise((r) => setImmediate(r));
    },
  };
}

/** A linker of DIS mentions that records the texts of each call; each text's one concept is `C-<text>`. */
export function recordingLinker(): EntityLinker & { readonly calls: string[][] } {
  const calls: string[][] = [];
  return {
    version: 'recording-1',
    entityTypes: ['DIS'],
    calls,
    link: async (texts) => {
      calls.push([...texts]);
      return texts.map((text) => [{ system: 'ICD-10-BJ-v601', code: `C-${text}`, name: text, score: 0.9 }]);
    },
  };
}

/** The rejections left unhandled while `run` ran (and one turn of the event loop after). */
export async function unhandledRejections(run: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const record = (reason: unknown): void => void seen.push(reason);
  process.on('unhandledRejection', record);
  try {
    await run();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('unhandledRejection', record);
  }
  return seen;
}

/** The processor's own logger (serializers, redaction) writing into `lines`. */
/**
 * planTransaction's options for the unit tests: the real Avro decoding and
 * encoding (EmrRecord in, ClinicalEntities out, schema id 42), texts of at most
 * 50 code points, 3 attempts.
 */
export function processorOptions(models: ModelProvider, lines: string[] = [], overrides: Partial<ProcessorOptions> = {}): ProcessorOptions {
  const emr = loadSchema('EmrRecord');
  const reader = new AvroReader(emr.type, { writerType: async () => emr.type });
  const encoder = new EventEncoder(loadSchema('ClinicalEntities').type, 42);
  return {
    outputTopic: 'out',
    dltTopic: 'in.DLT',
    groupId: 'g',
    models,
    records: { maxTextLength: 50, avro: reader },
    encoder,
    maxAttempts: 3,
    metrics: createMetrics({ defaultMetrics: false }),
    log: memoryLogger(lines),
    ...overrides,
  };
}

export function memoryLogger(lines: string[], level: LogLevel = 'debug'): Logger {
  return createLogger({ level, destination: { write: (chunk: string) => void lines.push(chunk) } });
}

export const silent = (): Logger => pino({ level: 'silent' });

export function message(partition: number, offset: number, value: string | Buffer | null, extra: Partial<InputMessage> = {}): InputMessage {
  return {
    topic: 'in',
    partition,
    offset: String(offset),
    key: Buffer.from(`k-${partition}-${offset}`),
    value: typeof value === 'string' ? Buffer.from(value) : value,
    headers: {},
    timestamp: Date.now() - 10,
    ...extra,
  };
}

export interface Committed {
  readonly messages: readonly OutputMessage[];
  readonly offsets: readonly TopicPartitionOffset[];
}

/**
 * In-memory Kafka: partitions of input messages, a group offset per
 * partition, transactions that either commit atomically or leave no trace.
 * Each consumer starts from the committed offsets, like a real one after a
 * restart or rebalance.
 */
export class FakeKafka implements KafkaClient {
  readonly groupId = 'group';
  readonly partitions = new Map<number, InputMessage[]>();
  readonly committedOffsets = new Map<number, bigint>();
  readonly transactions: Committed[] = [];
  aborted = 0;
  producersCreated = 0;
  consumersCreated = 0;
  readonly seeks: { partition: number; offset: string }[] = [];
  /** Called before each commit; may throw to make it fail. */
  beforeCommit: (messages: readonly OutputMessage[]) => void = () => {};
  /** Awaited at the start of each commit (a commit in flight). */
  commitDelay: () => Promise<void> = async () => {};
  /** Thrown by the next transactionalProducer().connect() calls while > 0. */
  connectFailures: Error[] = [];
  missing: string[] = [];
  readonly created: TopicSpec[] = [];

  add(partition: number, values: readonly (string | Buffer | null)[]): void {
    const list = this.partitions.get(partition) ?? [];
    for (const v of values) list.push(message(partition, list.length, v));
    this.partitions.set(partition, list);
  }

  output(): OutputMessage[] {
    return this.transactions.flatMap((t) => t.messages);
  }

  consumer(): StreamConsumer {
    this.consumersCreated++;
    return new FakeConsumer(this);
  }

  /** The current epoch of each transactional id: connecting bumps it, fencing older producers of that id. */
  readonly epochs = new Map<string, number>();

  transactionalProducer(transactionalId: string): TransactionalProducer {
    this.producersCreated++;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the returned object's methods have their own `this`
    const kafka = this;
    let epoch = -1;
    return {
      async connect() {
        const failure = kafka.connectFailures.shift();
        if (failure !== undefined) throw failure;
        epoch = (kafka.epochs.get(transactionalId) ?? 0) + 1;
        kafka.epochs.set(transactionalId, epoch);
      },
      async commit(messages, offsets) {
        await kafka.commitDelay();
        if (kafka.epochs.get(transactionalId) !== epoch) {
          kafka.aborted++;
          throw new CnerError('PRODUCER_FENCED', `${transactionalId} was fenced`);
        }
        try {
          kafka.beforeCommit(messages);
        } catch (e) {
          kafka.aborted++;
          throw e;
        }
        kafka.transactions.push({ messages, offsets });
        for (const o of offsets) kafka.committedOffsets.set(o.partition, BigInt(o.offset));
      },
      async disconnect() {},
    };
  }

  async missingTopics(topics: readonly string[]): Promise<string[]> {
    return topics.filter((t) => this.missing.includes(t));
  }

  /** Offset readers open now (each session opens one and must close it). */
  openOffsetReaders = 0;

  offsetReader(): OffsetReader {
    this.openOffsetReaders++;
    let open = true;
    return {
      committedOffset: async (_topic, partition) => {
        if (!open) throw new Error('offset reader used after close');
        const o = this.committedOffsets.get(partition);
        return o === undefined ? null : String(o);
      },
      close: async () => {
        if (open) this.openOffsetReaders--;
        open = false;
      },
    };
  }

  /** Kafka's default for every topic unless set here. */
  readonly limits: Record<string, number> = {};

  async maxMessageBytes(topics: readonly string[]): Promise<Record<string, number>> {
    return Object.fromEntries(topics.map((t) => [t, this.limits[t] ?? 1_048_588]));
  }

  async createTopics(topics: readonly TopicSpec[]): Promise<void> {
    this.created.push(...topics);
    this.missing = this.missing.filter((m) => !topics.some((t) => t.topic === m));
  }
}

class FakeConsumer implements StreamConsumer {
  readonly #kafka: FakeKafka;
  #running = false;
  #loop: Promise<void> = Promise.resolve();

  constructor(kafka: FakeKafka) {
    this.#kafka = kafka;
  }

  async run(topic: string, handler: BatchHandler, events: ConsumerEvents): Promise<void> {
    this.#running = true;
    const position = new Map<number, bigint>();
    for (const p of this.#kafka.partitions.keys()) position.set(p, this.#kafka.committedOffsets.get(p) ?? 0n);
    events.onJoin({ [topic]: [...this.#kafka.partitions.keys()] });
    this.#loop = (async () => {
      while (this.#running) {
        let delivered = false;
        for (const [p, all] of this.#kafka.partitions) {
          if (!this.#running) break;
          const from = position.get(p) ?? 0n;
          const messages = all.filter((m) => BigInt(m.offset) >= from);
          if (messages.length === 0) continue;
          delivered = true;
          let stale = false;
          await handler(
            { topic, partition: p, highWatermark: String(all.length), messages },
            {
              resolveOffset: (o) => position.set(p, BigInt(o) + 1n),
              heartbeat: async () => {},
              seek: (o) => {
                stale = true;
                this.#kafka.seeks.push({ partition: p, offset: o });
                position.set(p, BigInt(o));
              },
              isRunning: () => this.#running,
              isStale: () => stale,
            },
          );
        }
        if (!delivered) await new Promise((r) => setTimeout(r, 2));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }
}

export const retriable = (code: 'TRANSACTION_FAILED' | 'REGISTRY_UNAVAILABLE' | 'BROKER_UNAVAILABLE' | 'PRODUCER_FENCED' | 'INFERENCE_FAILED', message = 'test failure'): CnerError =>
  new CnerError(code, message);

export async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** An Avro zig-zag varint of an integer below 2^53 in magnitude (for hand-made payloads). */
export function avroVarint(n: number): Buffer {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z >= 128) {
    out.push((z % 128) | 0x80);
    z = Math.floor(z / 128);
  }
  out.push(z);
  return Buffer.from(out);
}

/** An Avro string or bytes value: its length as a varint, then the bytes. */
export const avroString = (b: Buffer): Buffer => Buffer.concat([avroVarint(b.length), b]);

/**
 * An EmrRecord body of 19 bytes (recordId, text and sourceSystem empty,
 * timestamp 0) whose metadata map declares a block of 2^40 entries.
 */
export const HUGE_MAP_EMR_BODY: Buffer = Buffer.concat([Buffer.from([0, 0, 0, 0]), avroVarint(1), avroVarint(2 ** 40), avroString(Buffer.from('k')), avroString(Buffer.from('v'))]);

/** An EmrRecord body whose text is not valid UTF-8 (a 3-byte character, then 0xff 0xfe). */
export function emrBodyWithInvalidUtf8(recordId: string): Buffer {
  return Buffer.concat([avroString(Buffer.from(recordId)), avroString(Buffer.from([0xe6, 0x82, 0xa3, 0xff, 0xfe])), avroString(Buffer.from('it')), avroVarint(1), avroVarint(0)]);
}

/** mulberry32: a small seeded generator, the same sequence on every platform (fuzz and soak runs can be replayed). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
