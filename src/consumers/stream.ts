// The consume-transform-produce loop, exactly once:
//
//   for each batch of one partition, in slices of at most N records:
//     plan   = decode + tag + encode (no Kafka writes yet)
//     commit = one transaction: events + dead letters + the consumer offset
//              (sendOffsets), so a read_committed reader sees all of it or
//              none of it
//     resolve the offset locally and go on
//
// A slice that fails for a reason that may pass (registry unavailable,
// inference failed, transaction aborted) is aborted, the partition is seeked
// back to its last committed position (the slice's first offset), and read
// again after an exponential backoff with jitter; heartbeats continue while
// we wait. Anything that leaves the producer or the consumer unusable (broker
// gone, producer fenced) ends the session: producer and consumer are closed
// and started again after a backoff, from the committed offsets. A restarted
// producer with the same transactional id fences its predecessor and aborts
// its open transaction, which is what makes a SIGKILL mid-transaction safe.
// Errors that are bugs are not retried: the processor stops (not live).
//
// One transaction at a time: batches of different partitions are handled one
// after the other (the transactional producer allows one open transaction).

import type { Logger } from 'pino';
import { describeError } from '../errors.js';
import type { Health } from '../observability/health.js';
import type { Metrics } from '../observability/metrics.js';
import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelay, settleWithin, sleep } from './backoff.js';
import type { TransactionPlan } from './processor.js';
import type { BatchControl, InputBatch, InputMessage, KafkaClient, StreamConsumer, TransactionalProducer } from './types.js';

export interface StreamOptions {
  readonly kafka: KafkaClient;
  readonly inputTopic: string;
  readonly transactionalId: string;
  readonly plan: (messages: readonly InputMessage[], attempt: number) => Promise<TransactionPlan>;
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

/** Codes after which the same producer and consumer go on (seek back, retry the slice). */
const IN_SESSION_RETRY = new Set(['TRANSACTION_FAILED', 'REGISTRY_UNAVAILABLE', 'INFERENCE_FAILED', 'WORKER_CRASHED', 'TOPIC_MISSING']);

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

  /** Finishes the transaction in flight, commits it, leaves the group, closes the producer. */
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
    let failures = 0;
    while (!this.#stopping) {
      const session = new Session(this.#o, this);
      this.#session = session;
      const error = await session.run();
      await session.close();
      this.#session = null;
      health.set('consumerJoined', false);
      if (this.#stopping) break;
      const info = describeError(error);
      if (!info.retriable) {
        log.fatal({ err: error, code: info.code }, 'stream processor stopped: this error is not retried (fix the cause and restart)');
        health.dead();
        throw error;
      }
      failures = session.joined ? 1 : failures + 1;
      const delay = backoffDelay(failures, this.#o.sessionBackoff ?? DEFAULT_BACKOFF);
      metrics.retries.inc({ code: info.code });
      if (info.code === 'BROKER_UNAVAILABLE') health.setAvailable('kafka', false, { err: error, retryInMs: delay });
      else if (info.code === 'REGISTRY_UNAVAILABLE') health.setAvailable('registry', false, { err: error, retryInMs: delay });
      log.warn({ err: error, code: info.code, attempt: failures, retryInMs: delay }, 'Kafka session ended: starting producer and consumer again after backoff');
      await sleep(delay, this.#abort.signal);
    }
    log.info('stream processor stopped');
  }
}

/** One producer + one consumer, from start to crash or stop. */
class Session {
  readonly #o: StreamOptions;
  readonly #owner: StreamProcessor;
  #producer: TransactionalProducer | null = null;
  #consumer: StreamConsumer | null = null;
  #end: ((error: unknown) => void) | null = null;
  readonly #ended: Promise<unknown>;
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
    this.#ended = new Promise((resolve) => (this.#end = resolve));
  }

  /** Resolves with the error that ended the session, or null when it was closed. */
  async run(): Promise<unknown> {
    this.#startup = this.#start().catch((e: unknown) => this.#fail(e));
    return this.#ended;
  }

  async #start(): Promise<void> {
    const { kafka, health, log } = this.#o;
    this.#producer = kafka.transactionalProducer(this.#o.transactionalId, this.#o.maxBatchBytes === undefined ? {} : { maxBatchBytes: this.#o.maxBatchBytes });
    await this.#producer.connect();
    if (this.#closing !== null || this.#failed) return;
    log.info({ transactionalId: this.#o.transactionalId }, 'transactional producer ready (any earlier producer with this id is fenced)');
    this.#consumer = kafka.consumer();
    await this.#consumer.run(this.#o.inputTopic, (batch, control) => this.#handle(batch, control), {
      onJoin: (assignment) => {
        this.joined = true;
        health.setAvailable('kafka', true);
        health.set('consumerJoined', true);
        log.info({ groupId: kafka.groupId, assignment }, 'consumer joined the group');
      },
      onCrash: (error) => this.#fail(error),
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#end?.(null);
      // Let a start in progress finish (bounded), so what it creates is closed too.
      await settleWithin(this.#startup, 5_000);
      await this.#consumer?.stop().catch((e: unknown) => this.#o.log.warn({ err: e }, 'consumer did not stop cleanly'));
      await this.#producer?.disconnect();
    })();
    return this.#closing;
  }

  #fail(error: unknown): void {
    this.#failed = true;
    this.#end?.(error);
  }

  async #handle(batch: InputBatch, control: BatchControl): Promise<void> {
    const { metrics, log } = this.#o;
    const { topic, partition, messages } = batch;
    const max = this.#o.maxRecordsPerTransaction;
    for (let i = 0; i < messages.length; ) {
      if (this.#failed || this.#closing !== null || !control.isRunning() || control.isStale()) return;
      const slice = messages.slice(i, i + max);
      const first = slice[0]!;
      const last = slice[slice.length - 1]!;
      const attempt = this.#attemptFor(partition, first.offset);

      let plan: TransactionPlan;
      try {
        plan = await this.#withHeartbeats(control, () => this.#o.plan(slice, attempt));
      } catch (e) {
        await this.#afterFailure(e, batch, first.offset, attempt, control);
        return;
      }
      const next = (BigInt(last.offset) + 1n).toString();
      try {
        await this.#producer!.commit(plan.messages, [{ topic, partition, offset: next }], this.#o.kafka.groupId);
      } catch (e) {
        metrics.transactions.inc({ result: 'aborted' });
        await this.#afterFailure(e, batch, first.offset, attempt, control);
        return;
      }

      control.resolveOffset(last.offset);
      this.#failures.delete(partition);
      this.#record(batch, slice, plan, next);
      i += slice.length;
      try {
        await control.heartbeat();
      } catch {
        log.debug({ topic, partition }, 'group is rebalancing: leaving the rest of the batch for after the rejoin');
        return;
      }
    }
  }

  #record(batch: InputBatch, slice: readonly InputMessage[], plan: TransactionPlan, next: string): void {
    const { metrics, health, log } = this.#o;
    const now = Date.now();
    metrics.transactions.inc({ result: 'committed' });
    metrics.batchSize.observe(slice.length);
    metrics.eventsOut.inc(plan.events);
    for (const f of plan.formats) metrics.recordsIn.inc({ format: f });
    for (const [type, n] of Object.entries(plan.entityCounts)) metrics.entities.inc({ type }, n);
    for (const ts of plan.eventTimestamps) if (Number.isFinite(ts) && ts > 0) metrics.endToEndSeconds.observe(Math.max(0, now - ts) / 1000);
    for (const d of plan.deadLetters) {
      metrics.deadLettered.inc({ code: d.code });
      log.warn({ topic: batch.topic, partition: d.partition, offset: d.offset, code: d.code, reason: d.reason }, 'record dead-lettered');
    }
    const lag = BigInt(batch.highWatermark) - BigInt(next);
    metrics.consumerLag.set({ topic: batch.topic, partition: String(batch.partition) }, Number(lag > 0n ? lag : 0n));
    health.setAvailable('kafka', true);
    health.setAvailable('registry', true);
    log.debug({ topic: batch.topic, partition: batch.partition, records: slice.length, events: plan.events, deadLetters: plan.deadLetters.length, nextOffset: next }, 'transaction committed');
  }

  /** Seek back and wait (same session), or end the session. */
  async #afterFailure(error: unknown, batch: InputBatch, offset: string, attempt: number, control: BatchControl): Promise<void> {
    const { metrics, health, log } = this.#o;
    const info = describeError(error);
    if (!IN_SESSION_RETRY.has(info.code) || this.#owner.stopping) {
      // The next session (or the next owner of the partition) reads from the committed offset.
      this.#fail(error);
      return;
    }
    const delay = backoffDelay(attempt, this.#o.retryBackoff ?? DEFAULT_BACKOFF);
    metrics.retries.inc({ code: info.code });
    const where = { topic: batch.topic, partition: batch.partition, offset, attempt, code: info.code, retryInMs: delay };
    if (info.code === 'REGISTRY_UNAVAILABLE') health.setAvailable('registry', false, { err: error, retryInMs: delay });
    else log.warn({ ...where, err: error }, 'batch failed and was aborted: reading it again from the last committed offset after backoff');
    control.seek(offset);
    this.#failures.set(batch.partition, { offset, attempt });
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
    while (Date.now() < until && !this.#owner.signal.aborted && this.#closing === null) {
      await sleep(Math.min(step, until - Date.now()), this.#owner.signal);
      await control.heartbeat().catch(() => {});
    }
  }
}
