// The consume-transform-produce loop, exactly once:
//
//   for each batch of one partition, in slices of at most N records:
//     plan   = decode + tag + encode (no Kafka writes yet)
//     commit = one transaction of the partition's own producer: events + dead
//              letters + the consumer offset (sendOffsets), so a
//              read_committed reader sees all of it or none of it
//     resolve the offset locally and go on
//
// One transactional producer per input partition, with the id
// `<prefix>-<group>-<topic>-<partition>` (the design of Kafka Streams'
// exactly-once before KIP-447): whoever processes a partition uses the same
// id. Before the first transaction on a partition the processor initializes
// that producer, which fences the partition's earlier owner (its open
// transaction is aborted, and any commit it tries later fails), and only
// then reads the group's committed offset: after the fence nobody else can
// move it, so records below it, which the consumer may have fetched from an
// older position, are skipped, never processed twice. A paused or
// partitioned-away processor that wakes up after its partitions moved cannot
// commit anything: kafkajs's sendOffsets carries no group generation, so the
// fence is what stops it, not the group.
//
// A slice that fails for a reason that may pass (registry unavailable,
// inference failed, transaction aborted) is aborted, the partition is seeked
// back to its last committed position (the slice's first offset), and read
// again after an exponential backoff with jitter; heartbeats continue while
// we wait. A fenced producer is dropped: if the partition is still ours, the
// next batch fences again and rereads the committed offset. Anything that
// leaves the consumer unusable (broker gone) ends the session: producers and
// consumer are closed and started again after a backoff, from the committed
// offsets. Errors that are bugs are not retried: the processor stops (not live).
//
// Stopping (SIGTERM) drops work that has not entered a transaction (the next
// owner reads it again) and waits only for a commit in flight.
//
// While a slice is linked and committed, the next slice of the batch is
// already being tagged (its plan starts once the slice is tagged): the
// tagger never waits for the linker or the broker. A plan writes nothing, so
// the one ahead is simply dropped when its predecessor fails.
//
// Batches of different partitions are handled one after the other.

import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { Health } from '../observability/health.js';
import type { Metrics } from '../observability/metrics.js';
import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelay, retrying, settleWithin, sleep } from '../backoff.js';
import type { TransactionPlan } from './plan.js';
import type { BatchControl, InputBatch, InputMessage, KafkaClient, OffsetReader, StreamConsumer, TransactionalProducer } from '../kafka/port.js';

export interface StreamOptions {
  readonly kafka: KafkaClient;
  readonly inputTopic: string;
  /** Each partition's producer is `<prefix>-<group>-<topic>-<partition>` (see partitionTransactionalId). */
  readonly transactionalIdPrefix: string;
  /**
   * Decodes and tags a slice, writing nothing. It calls `onTagged` once the
   * slice's inference is done (before its linking and encoding end): the
   * next slice is planned from then on.
   */
  readonly plan: (messages: readonly InputMessage[], attempt: number, onTagged: () => void) => Promise<TransactionPlan>;
  /** Largest record batch one send may make (the topics' max.message.bytes); default: one send per transaction. */
  readonly maxBatchBytes?: number;
  /** Records per transaction (a fetched batch is cut into slices of this size). */
  readonly maxRecordsPerTransaction: number;
  /** Between session restarts. */
  readonly sessionBackoff?: BackoffOptions;
  /** Between reads of a failed slice. */
  readonly retryBackoff?: BackoffOptions;
  readonly heartbeatIntervalMs?: number;
  readonly health: Health;
  readonly metrics: Metrics;
  readonly log: Logger;
}

/**
 * The transactional id of the producer that writes the results of one input
 * partition: the same in every processor of the group, so that initializing
 * it fences whichever processor had the partition before.
 */
export function partitionTransactionalId(prefix: string, groupId: string, topic: string, partition: number): string {
  return `${prefix}-${groupId}-${topic}-${partition}`;
}

/** A partition's transactional producer, and the offset from which this processor may write. */
interface PartitionWriter {
  readonly producer: TransactionalProducer;
  /** The group's committed offset, read after the fence and advanced by our own commits (null: none yet). */
  next: bigint | null;
  /** The commit in flight, if any (a writer is closed only when idle). */
  busy: Promise<unknown>;
}

/** A slice of a fetched batch and its plan, under way. */
interface SlicePlan {
  /** The slice's first index in the batch. */
  readonly start: number;
  readonly slice: readonly InputMessage[];
  readonly attempt: number;
  readonly plan: Promise<TransactionPlan>;
  /** Resolves once the slice is tagged (or its plan succeeded without saying so); never, when the plan fails. */
  readonly tagged: Promise<void>;
}

export class StreamProcessor {
  readonly #o: StreamOptions;
  readonly #abort = new AbortController();
  #stopping = false;
  #session: Session | null = null;
  #done: Promise<void> | null = null;

  constructor(options: StreamOptions) {
    this.#o = options;
  }

  /** Starts the supervisor; `done` settles when it ends (stopped, or a fatal error). */
  start(): void {
    this.#done ??= this.#supervise();
  }

  get done(): Promise<void> {
    return this.#done ?? Promise.resolve();
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Drops work not yet in a transaction, waits for a commit in flight, leaves the group, closes the producers. */
  async stop(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#o.health.shuttingDown();
      this.#abort.abort();
      await this.#session?.close();
    }
    await this.done.catch(() => {});
  }

  async #supervise(): Promise<void> {
    const { health, metrics, log } = this.#o;
    try {
      await retrying(
        async (attempt) => {
          const session = new Session(this.#o, this);
          this.#session = session;
          const error = await session.run();
          await session.close();
          this.#session = null;
          health.set('consumerJoined', false);
          if (this.#stopping) return;
          if (session.joined) attempt.progressed();
          throw error;
        },
        {
          backoff: this.#o.sessionBackoff ?? DEFAULT_BACKOFF,
          signal: this.#abort.signal,
          onRetry: (err, info, attempt, retryInMs) => {
            metrics.retries.inc({ code: info.code });
            if (info.code === 'BROKER_UNAVAILABLE') health.setAvailable('kafka', false, { err, retryInMs });
            else if (info.code === 'REGISTRY_UNAVAILABLE') health.setAvailable('registry', false, { err, retryInMs });
            log.warn({ err, code: info.code, attempt, retryInMs }, 'Kafka session ended: starting producer and consumer again after backoff');
          },
        },
      );
    } catch (error) {
      if (!this.#stopping) {
        log.fatal({ err: error, code: describeError(error).code }, 'stream processor stopped: this error is not retried (fix the cause and restart)');
        health.dead();
        throw error;
      }
    }
    log.info('stream processor stopped');
  }
}

/** One consumer and the producers of its partitions, from start to crash or stop. */
class Session {
  readonly #o: StreamOptions;
  readonly #owner: StreamProcessor;
  /** Per partition, its writer being set up or ready (a failed setup is forgotten, so the next batch tries again). */
  readonly #writers = new Map<number, Promise<PartitionWriter>>();
  #consumer: StreamConsumer | null = null;
  /** Committed offsets, over one admin connection for the session. */
  readonly #offsets: OffsetReader;
  #end: ((error: unknown) => void) | null = null;
  readonly #ended: Promise<unknown>;
  /** Aborted when the session fails or closes: work not yet in a transaction is dropped. */
  readonly #stop = new AbortController();
  #failed = false;
  #closing: Promise<void> | null = null;
  #startup: Promise<void> = Promise.resolve();
  /**
   * Per partition: the first offset of its slice that last failed, and how
   * many times. Per partition, so that other partitions' commits do not reset
   * the count (a record failing retriably is dead-lettered after its attempts
   * even while the rest of the stream flows).
   */
  readonly #failures = new Map<number, { offset: string; attempt: number }>();
  joined = false;

  constructor(options: StreamOptions, owner: StreamProcessor) {
    this.#o = options;
    this.#owner = owner;
    this.#offsets = options.kafka.offsetReader();
    this.#ended = new Promise((resolve) => (this.#end = resolve));
  }

  /** Resolves with the error that ended the session, or null when it was closed. */
  async run(): Promise<unknown> {
    this.#startup = this.#start().catch((e: unknown) => this.#fail(e));
    return this.#ended;
  }

  async #start(): Promise<void> {
    const { kafka, health, log } = this.#o;
    this.#consumer = kafka.consumer();
    await this.#consumer.run(this.#o.inputTopic, (batch, control) => this.#handle(batch, control), {
      onJoin: (assignment) => {
        this.joined = true;
        health.set('consumerJoined', true);
        const partitions = assignment[this.#o.inputTopic] ?? [];
        log.info({ groupId: kafka.groupId, assignment }, 'consumer joined the group');
        this.#closeRevoked(new Set(partitions));
        // Fence the earlier owners now rather than at the first batch: their
        // open transactions are aborted at once instead of holding back
        // read_committed readers until they time out.
        for (const p of partitions) this.#writerFor(this.#o.inputTopic, p).catch(() => {});
      },
      onCrash: (error) => this.#fail(error),
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#end?.(null);
      // Let a start in progress finish (bounded), so what it creates is closed too.
      await settleWithin(this.#startup, 5_000);
      // Waits for the batch handler, which returns at once unless a commit is in flight.
      await this.#consumer?.stop().catch((e: unknown) => this.#o.log.warn({ err: e }, 'consumer did not stop cleanly'));
      await Promise.all([...this.#writers.keys()].map((p) => this.#dropWriter(p)));
      await this.#offsets.close();
    })();
    return this.#closing;
  }

  #fail(error: unknown): void {
    this.#failed = true;
    this.#stop.abort();
    this.#end?.(error);
  }

  get #active(): boolean {
    return !this.#failed && this.#closing === null;
  }

  /** Producers of partitions this consumer no longer has are closed once idle (their new owner fences them anyway). */
  #closeRevoked(assigned: ReadonlySet<number>): void {
    for (const partition of this.#writers.keys()) if (!assigned.has(partition)) void this.#dropWriter(partition);
  }

  async #dropWriter(partition: number): Promise<void> {
    const pending = this.#writers.get(partition);
    if (pending === undefined) return;
    this.#writers.delete(partition);
    const writer = await pending.catch(() => null);
    if (writer === null) return;
    await writer.busy.catch(() => {});
    await writer.producer.disconnect();
  }

  /**
   * The partition's producer, initialized (which fences the partition's
   * earlier owner and aborts its open transaction), and the group's committed
   * offset read after that.
   */
  #writerFor(topic: string, partition: number): Promise<PartitionWriter> {
    let pending = this.#writers.get(partition);
    if (pending === undefined) {
      pending = this.#openWriter(topic, partition);
      this.#writers.set(partition, pending);
      const forgetOnFailure = pending;
      pending.catch(() => {
        if (this.#writers.get(partition) === forgetOnFailure) this.#writers.delete(partition);
      });
    }
    return pending;
  }

  async #openWriter(topic: string, partition: number): Promise<PartitionWriter> {
    const { kafka, health, log } = this.#o;
    const transactionalId = partitionTransactionalId(this.#o.transactionalIdPrefix, kafka.groupId, topic, partition);
    const producer = kafka.transactionalProducer(transactionalId, this.#o.maxBatchBytes === undefined ? {} : { maxBatchBytes: this.#o.maxBatchBytes });
    const started = Date.now();
    try {
      await producer.connect();
      const committed = await this.#offsets.committedOffset(topic, partition);
      health.setAvailable('kafka', true);
      log.info({ topic, partition, transactionalId, committedOffset: committed, ms: Date.now() - started }, 'transactional producer of the partition ready (its earlier owner is fenced)');
      return { producer, next: committed === null ? null : BigInt(committed), busy: Promise.resolve() };
    } catch (e) {
      await producer.disconnect();
      throw e;
    }
  }

  async #handle(batch: InputBatch, control: BatchControl): Promise<void> {
    const { topic, partition, messages } = batch;
    if (messages.length === 0 || !this.#active) return;
    let writer: PartitionWriter;
    try {
      writer = await this.#writerFor(topic, partition);
    } catch (e) {
      const first = messages[0]!.offset;
      await this.#afterFailure(e, batch, first, this.#attemptFor(partition, first), control);
      return;
    }
    // Records below the committed offset were processed by an earlier owner
    // after this consumer fetched them (it read the offset before the fence).
    let start = 0;
    while (start < messages.length && writer.next !== null && BigInt(messages[start]!.offset) < writer.next) start++;
    if (start > 0) {
      control.resolveOffset(messages[start - 1]!.offset);
      this.#o.metrics.skippedCommitted.inc(start);
      this.#o.log.info({ topic, partition, records: start, committedOffset: String(writer.next) }, 'skipped records that an earlier owner of the partition had already committed');
    }

    // The next slice is planned as soon as this one is tagged: its inference
    // runs while this slice is linked and committed, so the tagger does not
    // wait for the linker nor for the broker. A plan writes nothing: one that
    // is not used (this slice failed, the session stopped) is dropped.
    let left = false;
    let current: SlicePlan | null = start < messages.length ? this.#startPlan(messages, start, partition) : null;
    try {
      while (current !== null) {
        if (!this.#active || !control.isRunning() || control.isStale()) return;
        const { slice, attempt } = current;
        const first = slice[0]!;
        const last = slice[slice.length - 1]!;
        const after = current.start + slice.length;
        const ahead = after < messages.length ? current.tagged.then(() => (left ? null : this.#startPlan(messages, after, partition))) : Promise.resolve(null);

        let plan: TransactionPlan | null;
        try {
          plan = await this.#withHeartbeats(control, () => this.#untilStopped(current!.plan));
        } catch (e) {
          left = true;
          await this.#afterFailure(e, batch, first.offset, attempt, control);
          return;
        }
        // Stopping: work that has not entered a transaction is dropped (read again by the next owner).
        if (plan === null || !this.#active) return;
        const next = (BigInt(last.offset) + 1n).toString();
        const commit = writer.producer.commit(plan.messages, [{ topic, partition, offset: next }], this.#o.kafka.groupId);
        writer.busy = commit;
        try {
          await commit;
        } catch (e) {
          left = true;
          this.#o.metrics.transactions.inc({ result: 'aborted' });
          if (describeError(e).code === 'PRODUCER_FENCED') await this.#dropWriter(partition);
          await this.#afterFailure(e, batch, first.offset, attempt, control);
          return;
        }

        writer.next = BigInt(next);
        control.resolveOffset(last.offset);
        this.#failures.delete(partition);
        this.#record(batch, slice, plan, next);
        try {
          await control.heartbeat();
        } catch {
          this.#o.log.debug({ topic, partition }, 'group is rebalancing: leaving the rest of the batch for after the rejoin');
          return;
        }
        current = await ahead; // started when the slice was tagged, before its plan settled
      }
    } finally {
      left = true;
    }
  }

  /** The plan of the slice of `messages` from `start`, started now. */
  #startPlan(messages: readonly InputMessage[], start: number, partition: number): SlicePlan {
    const slice = messages.slice(start, start + this.#o.maxRecordsPerTransaction);
    const attempt = this.#attemptFor(partition, slice[0]!.offset);
    let onTagged: () => void = () => {};
    const tagged = new Promise<void>((resolve) => (onTagged = resolve));
    const plan = this.#o.plan(slice, attempt, onTagged);
    // A plan that never says so is tagged when it is done; one that fails starts nothing after it
    // (and, when it is the one ahead that is dropped, fails unobserved).
    plan.then(onTagged, () => {});
    return { start, slice, attempt, plan, tagged };
  }

  /** `work`'s value, or null as soon as the session stops (the work is left to finish unobserved). */
  async #untilStopped<T>(work: Promise<T>): Promise<T | null> {
    const signal = this.#stop.signal;
    if (signal.aborted) {
      work.catch(() => {});
      return null;
    }
    let onAbort: () => void = () => {};
    const stopped = new Promise<null>((resolve) => {
      onAbort = () => resolve(null);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([work, stopped]);
    } finally {
      signal.removeEventListener('abort', onAbort);
      work.catch(() => {});
    }
  }

  #record(batch: InputBatch, slice: readonly InputMessage[], plan: TransactionPlan, next: string): void {
    const { metrics, health, log } = this.#o;
    const now = Date.now();
    metrics.transactions.inc({ result: 'committed' });
    metrics.batchSize.observe(slice.length);
    let events = 0;
    for (const r of plan.records) {
      metrics.recordsIn.inc({ format: r.format });
      if (r.kind === 'event') {
        events++;
        for (const type of r.entityTypes) metrics.entities.inc({ type });
        if (Number.isFinite(r.timestamp) && r.timestamp > 0) metrics.endToEndSeconds.observe(Math.max(0, now - r.timestamp) / 1000);
      } else {
        metrics.deadLettered.inc({ code: r.code });
        log.warn({ topic: batch.topic, partition: r.partition, offset: r.offset, code: r.code, reason: r.reason }, 'record dead-lettered');
      }
    }
    metrics.eventsOut.inc(events);
    const lag = BigInt(batch.highWatermark) - BigInt(next);
    metrics.consumerLag.set({ topic: batch.topic, partition: String(batch.partition) }, Number(lag > 0n ? lag : 0n));
    health.setAvailable('kafka', true);
    health.setAvailable('registry', true);
    log.debug({ topic: batch.topic, partition: batch.partition, records: slice.length, events, deadLetters: plan.records.length - events, nextOffset: next }, 'transaction committed');
  }

  /** Seek back and wait (same session), or end the session. */
  async #afterFailure(error: unknown, batch: InputBatch, offset: string, attempt: number, control: BatchControl): Promise<void> {
    const { metrics, health, log } = this.#o;
    const info = describeError(error);
    if (!this.#active) return; // stopping: the next owner reads from the committed offset
    if (info.retry !== 'slice' || this.#owner.stopping) {
      // The next session (or the next owner of the partition) reads from the committed offset.
      this.#fail(error);
      return;
    }
    control.seek(offset);
    metrics.retries.inc({ code: info.code });
    const where = { topic: batch.topic, partition: batch.partition, offset, attempt, code: info.code };
    if (info.code === 'PRODUCER_FENCED') {
      // Usually the partition moved while this processor was paused: the
      // group tells us at the next heartbeat, and the new owner keeps it. Not
      // a failure of the slice (its attempt count stays).
      try {
        await control.heartbeat();
      } catch {
        log.warn(where, 'the partition moved to another processor: its transaction here was aborted (fenced); rejoining the group');
        return;
      }
      log.warn(where, 'the partition\'s producer was fenced although this processor still has the partition: fencing again after backoff');
    } else {
      this.#failures.set(batch.partition, { offset, attempt });
    }
    const delay = backoffDelay(attempt, this.#o.retryBackoff ?? DEFAULT_BACKOFF);
    if (info.code === 'REGISTRY_UNAVAILABLE') health.setAvailable('registry', false, { err: error, retryInMs: delay });
    else if (info.code !== 'PRODUCER_FENCED') log.warn({ ...where, err: error, retryInMs: delay }, 'batch failed and was aborted: reading it again from the last committed offset after backoff');
    await this.#sleepWithHeartbeats(delay, control);
  }

  #attemptFor(partition: number, offset: string): number {
    const f = this.#failures.get(partition);
    return f !== undefined && f.offset === offset ? f.attempt + 1 : 1;
  }

  async #withHeartbeats<T>(control: BatchControl, fn: () => Promise<T>): Promise<T> {
    const timer = setInterval(() => void control.heartbeat().catch(() => {}), this.#o.heartbeatIntervalMs ?? 3_000);
    try {
      return await fn();
    } finally {
      clearInterval(timer);
    }
  }

  async #sleepWithHeartbeats(ms: number, control: BatchControl): Promise<void> {
    const step = this.#o.heartbeatIntervalMs ?? 3_000;
    const until = Date.now() + ms;
    while (Date.now() < until && !this.#owner.signal.aborted && this.#active) {
      await sleep(Math.min(step, until - Date.now()), this.#stop.signal);
      await control.heartbeat().catch(() => {});
    }
  }
}
