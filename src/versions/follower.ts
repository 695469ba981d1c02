// Follows the model-version topic: one reader from the beginning (a group of
// this instance only: every instance reads every record), records handed over
// in offset order, and a note of when it has read up to the end offsets it
// saw at the start. A reader that cannot start or stops is started again,
// from the beginning, with jittered backoff; meanwhile the current model
// keeps serving.

import { type BackoffOptions, backoffDelay } from '../backoff.js';
import type { ModelTopicClient, TopicTail } from '../kafka/port.js';
import type { Logger } from '../model/log.js';

/** Between attempts to (re)start the reader (jittered, so that pods do not retry in step). */
const READER_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 1_000, maxMs: 30_000, multiplier: 2, jitter: 0.5 });

export interface FollowerOptions {
  readonly client: ModelTopicClient;
  readonly topic: string;
  /** Each reader joins `<groupId>.<n>`, a fresh group, so it reads from the beginning. */
  readonly groupId: string;
  readonly createTopic: boolean;
  readonly replicationFactor: number;
  readonly log: Logger;
  /** A new reader starts from the beginning: whatever was folded from the topic starts over. */
  readonly onRestart: () => void;
  /** One record, in offset order; a throw is logged and the record skipped. */
  readonly onRecord: (key: string, value: Buffer | null, offset: string) => Promise<void>;
  /** After each batch of records, once the reader has read up to the end offsets. */
  readonly onCaughtUpBatch: () => void;
}

export type FollowResult = 'caught-up' | 'behind' | 'failed';

export class TopicFollower {
  readonly #o: FollowerOptions;
  #generation = 0;
  #attempts = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  #tail: TopicTail | null = null;
  #queue: Promise<void> = Promise.resolve();
  #caughtUp: (() => void) | null = null;
  #endOffsets: Record<number, bigint> = {};
  readonly #readTo = new Map<number, bigint>();
  #closed = false;

  constructor(options: FollowerOptions) {
    this.#o = options;
  }

  /** True once the current reader has read to the end offsets seen when it started. */
  get caughtUp(): boolean {
    return this.#caughtUp === null && this.#tail !== null;
  }

  /**
   * Starts a reader and waits up to `waitMs` for it to catch up (and for the
   * records read so far to be handed over). 'failed': no reader (retry with
   * retryLater()).
   */
  async start(waitMs: number): Promise<FollowResult> {
    const { log, client, topic } = this.#o;
    try {
      const missing = await client.missingTopics([topic]);
      if (missing.length > 0) {
        if (!this.#o.createTopic) {
          if (this.#attempts === 0) log.warn({ topic }, 'model topic does not exist: serving the current model until it is created (KAFKA_CREATE_TOPICS=false)');
          return 'failed';
        }
        await client.createTopics([{ topic, partitions: 1, replicationFactor: this.#o.replicationFactor, config: { 'cleanup.policy': 'compact' } }]).catch(() => {});
      }
      const ends = await client.endOffsets(topic);
      this.#o.onRestart();
      this.#readTo.clear();
      this.#endOffsets = Object.fromEntries(Object.entries(ends).map(([p, o]) => [Number(p), BigInt(o)]));
      const caughtUp = new Promise<void>((resolve) => (this.#caughtUp = resolve));
      this.#checkCaughtUp();
      const generation = ++this.#generation;
      this.#tail = await client.tail(topic, {
        groupId: `${this.#o.groupId}.${generation}`,
        onMessages: (messages) => (generation === this.#generation ? this.#enqueue(messages) : Promise.resolve()),
        onCrash: (error) => {
          if (generation !== this.#generation || this.#closed) return;
          log.error({ err: error, topic }, 'model topic reader stopped: the current model keeps serving; reading again after backoff');
          this.#tail = null;
          this.retryLater();
        },
      });
      this.#attempts = 0;
      const timedOut = await Promise.race([caughtUp.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), waitMs).unref())]);
      if (timedOut) {
        if (waitMs > 0) log.warn({ topic, timeoutMs: waitMs }, 'model topic not read to its end in time: going on with the current model, switching later');
        return 'behind';
      }
      await this.#queue;
      return 'caught-up';
    } catch (e) {
      if (this.#attempts === 0) log.error({ err: e, topic }, 'cannot read the model topic: the current model keeps serving; trying again with backoff');
      return 'failed';
    }
  }

  /** Starts a reader again after a backoff, and again until one starts. */
  retryLater(): void {
    if (this.#closed || this.#retryTimer !== null) return;
    this.#attempts++;
    const delay = backoffDelay(this.#attempts, READER_BACKOFF);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#closed) return;
      void this.start(0).then((result) => {
        if (result === 'failed') this.retryLater();
        else if (result === 'caught-up') this.#o.onCaughtUpBatch();
      });
    }, delay);
    this.#retryTimer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    await this.#tail?.stop();
    await this.#queue.catch(() => {});
  }

  #enqueue(messages: readonly { key: Buffer | null; value: Buffer | null; offset: string; partition: number }[]): Promise<void> {
    const run = this.#queue.then(async () => {
      for (const m of messages) {
        if (this.#closed) return;
        await this.#o.onRecord(m.key?.toString('utf8') ?? '', m.value, m.offset);
        const next = BigInt(m.offset) + 1n;
        if ((this.#readTo.get(m.partition) ?? 0n) < next) this.#readTo.set(m.partition, next);
      }
      this.#checkCaughtUp();
      if (this.#caughtUp === null) this.#o.onCaughtUpBatch();
    });
    this.#queue = run.catch((e: unknown) => this.#o.log.error({ err: e }, 'model topic record failed'));
    return this.#queue;
  }

  #checkCaughtUp(): void {
    if (this.#caughtUp === null) return;
    const done = Object.entries(this.#endOffsets).every(([p, end]) => (this.#readTo.get(Number(p)) ?? 0n) >= end);
    if (done) {
      const resolve = this.#caughtUp;
      this.#caughtUp = null;
      resolve();
    }
  }
}
