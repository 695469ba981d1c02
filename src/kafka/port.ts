// The Kafka port: the few operations the stream loop needs, in plain types.
// `adapter.ts` implements it with kafkajs; another client
// (@confluentinc/kafka-javascript) would implement the same interfaces and
// nothing else would change. No Kafka client type appears outside adapter.ts.

/** A header value: raw bytes, or null (legal in Kafka; Java producers send them). */
export type HeaderValue = Buffer | null;

/**
 * Headers by name. A header that occurs more than once keeps every value, in
 * order, as an array (dead letters must carry the original headers whole).
 */
export type Headers = Readonly<Record<string, HeaderValue | readonly HeaderValue[]>>;

/** The last non-null value of header `name` (as Java's `Headers.lastHeader`, skipping nulls), if any. */
export function lastHeader(headers: Headers, name: string): Buffer | undefined {
  const v = Object.hasOwn(headers, name) ? headers[name] : undefined;
  const values = v === undefined ? [] : Array.isArray(v) ? (v as readonly HeaderValue[]) : [v as HeaderValue];
  for (let i = values.length - 1; i >= 0; i--) {
    const value = values[i];
    if (value !== null && value !== undefined) return value;
  }
  return undefined;
}

export interface InputMessage {
  readonly topic: string;
  readonly partition: number;
  /** Decimal string (Kafka offsets are 64-bit). */
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Headers;
  /** The record's Kafka timestamp, epoch milliseconds. */
  readonly timestamp: number;
}

export interface InputBatch {
  readonly topic: string;
  readonly partition: number;
  /** Offset after the last record of the partition (decimal string). */
  readonly highWatermark: string;
  readonly messages: readonly InputMessage[];
}

export interface OutputMessage {
  readonly topic: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Headers;
}

/** Bytes of a record batch besides its records (Kafka's v2 batch header). */
export const BATCH_OVERHEAD_BYTES = 61;

/**
 * An upper bound of the bytes `m` takes in an uncompressed record batch: key,
 * value, header names and values, and at most 5 bytes for each varint (record
 * length, attributes, deltas, sizes). The broker compares the batch with
 * max.message.bytes (after compression, so compressed batches fit too).
 */
export function recordBytes(m: Pick<OutputMessage, 'key' | 'value' | 'headers'>): number {
  let n = 5 * 6 + (m.key?.length ?? 0) + (m.value?.length ?? 0);
  for (const [name, v] of Object.entries(m.headers)) {
    const values = Array.isArray(v) ? (v as readonly HeaderValue[]) : [v as HeaderValue];
    for (const value of values) n += 10 + Buffer.byteLength(name) + (value?.length ?? 0);
  }
  return n;
}

/** What the batch handler may do with the consumer while it holds a batch. */
export interface BatchControl {
  /** Marks everything up to `offset` (inclusive) processed: the next fetch starts after it. */
  resolveOffset(offset: string): void;
  /** Keeps the group membership alive during long work; throws when the group is rebalancing. */
  heartbeat(): Promise<void>;
  /** The next fetch of this partition starts at `offset` (the rest of this batch is dropped). */
  seek(offset: string): void;
  /** False once the consumer is stopping: finish the current transaction, start no new one. */
  isRunning(): boolean;
  /** True once this partition was seeked: the rest of the batch is stale. */
  isStale(): boolean;
}

export type BatchHandler = (batch: InputBatch, control: BatchControl) => Promise<void>;

export interface ConsumerEvents {
  /** The consumer joined its group and got these partitions. */
  onJoin(assignment: Readonly<Record<string, readonly number[]>>): void;
  /** The consumer stopped for good because of `error` (it does not restart itself). */
  onCrash(error: unknown): void;
}

export interface StreamConsumer {
  /** Connects, subscribes and starts calling `handler`, one batch at a time. Resolves once started. */
  run(topic: string, handler: BatchHandler, events: ConsumerEvents): Promise<void>;
  /** Lets the batch in progress finish, leaves the group and disconnects. */
  stop(): Promise<void>;
}

export interface TopicPartitionOffset {
  readonly topic: string;
  readonly partition: number;
  /** The next offset to read (last processed + 1). */
  readonly offset: string;
}

export interface TransactionalProducer {
  /** Initialises the transactional id: fences an older producer with the same id and aborts its open transaction. */
  connect(): Promise<void>;
  /**
   * One transaction: sends every message, adds the consumer offsets, commits.
   * On any failure it aborts (best effort) and throws; nothing of it is visible
   * to read_committed consumers.
   */
  commit(messages: readonly OutputMessage[], offsets: readonly TopicPartitionOffset[], groupId: string): Promise<void>;
  disconnect(): Promise<void>;
}

export interface TopicSpec {
  readonly topic: string;
  readonly partitions: number;
  readonly replicationFactor: number;
  /** Topic-level configuration (e.g. cleanup.policy=compact). */
  readonly config?: Readonly<Record<string, string>>;
}

/** A reader of a whole topic from its beginning, outside any shared consumer group (the model topic). */
export interface TopicTail {
  /** Stops reading and disconnects. */
  stop(): Promise<void>;
}

export interface TailOptions {
  /** A group id of this reader alone (nothing is committed under it). */
  readonly groupId: string;
  /** Called with each fetched batch of one partition, in offset order. */
  readonly onMessages: (messages: readonly InputMessage[]) => Promise<void>;
  /** The reader stopped for good because of `error`. */
  readonly onCrash: (error: unknown) => void;
}

/** What the model manager and the `cner model` commands need from Kafka. */
export interface ModelTopicClient {
  missingTopics(topics: readonly string[]): Promise<string[]>;
  createTopics(topics: readonly TopicSpec[]): Promise<void>;
  /** Offset after the last record, per partition (decimal strings). */
  endOffsets(topic: string): Promise<Record<number, string>>;
  /** Reads `topic` from the beginning, then follows it. Resolves once subscribed. */
  tail(topic: string, options: TailOptions): Promise<TopicTail>;
  /** Plain produce, acks=all, one request per message (parts are close to the broker's message size). */
  produceEach(topic: string, messages: readonly Omit<OutputMessage, 'topic'>[]): Promise<void>;
}

export interface ProducerOptions {
  /**
   * Largest record batch one send may make (the smallest max.message.bytes of
   * the topics written): a transaction's messages are sent in as many
   * requests as that takes. Default: all in one request.
   */
  readonly maxBatchBytes?: number;
}

export interface KafkaClient {
  readonly groupId: string;
  consumer(): StreamConsumer;
  transactionalProducer(transactionalId: string, options?: ProducerOptions): TransactionalProducer;
  /** The largest record batch each topic accepts (its max.message.bytes, or the broker's default), by topic. */
  maxMessageBytes(topics: readonly string[]): Promise<Record<string, number>>;
  /** Names of `topics` that do not exist. */
  missingTopics(topics: readonly string[]): Promise<string[]>;
  createTopics(topics: readonly TopicSpec[]): Promise<void>;
  /** A reader of the group's committed offsets over one connection, for the life of a Kafka session. */
  offsetReader(): OffsetReader;
}

export interface OffsetReader {
  /**
   * The group's committed offset of one partition (the next offset to read),
   * or null when the group committed none there. Read after the partition's
   * producer fenced its earlier owner, it is final: nobody else can commit.
   */
  committedOffset(topic: string, partition: number): Promise<string | null>;
  close(): Promise<void>;
}
