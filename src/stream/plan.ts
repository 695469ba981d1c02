// What one transaction publishes for a slice of input messages: decode each
// (Either), tag the valid ones concurrently (the model's batcher forms
// inference batches across them), linking each chunk's entities as soon as
// it is tagged, and fold every record once into an event on the output topic
// or a dead letter. No Kafka here: the loop in loop.ts commits the result.

import { isLeft } from 'fp-ts/lib/Either.js';
import type { Logger } from 'pino';
import { CnerError, describeError, isCnerError } from '../errors.js';
import { type LinkedEntity, buildEvent } from '../pipeline/event.js';
import type { EntityLinker } from '../pipeline/link.js';
import { tagAndLink } from '../pipeline/tag-link.js';
import type { Metrics } from '../observability/metrics.js';
import type { ModelLease, ModelProvider } from '../versions/leases.js';
import { type DeadLetterReason, deadLetterMessage, fitDeadLetter, traceHeaders } from './dead-letter.js';
import { type DecodeOptions, decodeMessage } from '../records/decode.js';
import type { EventEncoder } from '../records/avro.js';
import { BATCH_OVERHEAD_BYTES, type InputMessage, type OutputMessage, recordBytes } from '../kafka/port.js';

export interface ProcessorOptions {
  readonly outputTopic: string;
  readonly dltTopic: string;
  readonly groupId: string;
  /**
   * Asked once per slice (the ModelManager, or fixedModel()): the whole slice
   * is tagged, and its events stamped, by the model it lent, and linked by
   * that model's linker: codes for the entities of the types it links (ICD-10
   * for DIS), stamped with its version; none: empty codes, linkerVersion null.
   */
  readonly models: ModelProvider;
  /** How input values decode: the longest text, the Avro reader (registry schemas). */
  readonly records: DecodeOptions;
  /** Events out, with the registered ClinicalEntities schema. */
  readonly encoder: Pick<EventEncoder, 'encode'>;
  /**
   * A record whose tagging keeps failing with a retriable error is
   * dead-lettered on this attempt (so one poison record cannot stall its
   * partition forever).
   */
  readonly maxAttempts: number;
  /**
   * The largest record batch the output and dead-letter topics accept (their
   * max.message.bytes). An event over it is dead-lettered (EVENT_TOO_LARGE), a
   * dead letter over it is truncated: either would fail the transaction on
   * every try. Default: Kafka's default, 1048588.
   */
  readonly maxMessageBytes?: { readonly output: number; readonly dlt: number };
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly now?: () => number;
}

export interface TransactionPlan {
  /** Events and dead letters, in input order: what the transaction writes. */
  readonly messages: readonly OutputMessage[];
  /** What became of each input record, in input order (metrics and logs, once committed). */
  readonly records: readonly RecordOutcome[];
}

export type RecordOutcome =
  | {
      readonly kind: 'event';
      readonly format: string;
      /** Kafka timestamp of the input record (end-to-end latency). */
      readonly timestamp: number;
      /** The type code of each entity found. */
      readonly entityTypes: readonly string[];
    }
  | {
      readonly kind: 'dead';
      readonly format: string;
      readonly partition: number;
      readonly offset: string;
      readonly code: string;
      readonly reason: string;
    };

/** Kafka's default max.message.bytes (topics and brokers). */
const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

type Outcome = { readonly kind: 'event'; readonly message: OutputMessage; readonly entities: readonly LinkedEntity[] } | { readonly kind: 'dead'; readonly reason: DeadLetterReason };

/**
 * Throws (so the slice is aborted and read again) only when the failure is not
 * the records': registry unavailable, retriable inference failure (before
 * `maxAttempts`), the model closing.
 */
export async function planTransaction(messages: readonly InputMessage[], attempt: number, options: ProcessorOptions, onTagged: () => void = () => {}): Promise<TransactionPlan> {
  const lease: ModelLease = options.models.acquire();
  const shadows: Promise<void>[] = [];
  try {
    return await plan(messages, attempt, options, lease, shadows, onTagged);
  } finally {
    // Shadow runs finish in the background; the lease (and so both models) is held until they do.
    if (shadows.length === 0) lease.release();
    else void Promise.allSettled(shadows).then(() => lease.release());
  }
}

async function plan(messages: readonly InputMessage[], attempt: number, options: ProcessorOptions, lease: ModelLease, shadows: Promise<void>[], onTagged: () => void): Promise<TransactionPlan> {
  const now = options.now ?? Date.now;
  const model = lease.model;
  const linker = lease.linker;
  const decoded = await Promise.all(messages.map((m) => decodeMessage(m.key, m.value, options.records)));

  // Every record's chunks are queued for inference in this one synchronous
  // burst (the batcher cuts batches across the slice), and each chunk is
  // linked as soon as it is tagged, while later batches run. Once every
  // record is tagged, `onTagged` says so: the stream then starts the next
  // slice's inference while this one is linked and committed.
  const started = decoded.map((d) => {
    if (isLeft(d)) return null;
    const stop = options.metrics.inferenceSeconds.startTimer();
    const recordLinker = linker === null ? null : timedLinker(linker);
    return { stop, recordLinker, record: tagAndLink(d.right.record.text, model, recordLinker) };
  });
  void Promise.allSettled(started.flatMap((s) => (s === null ? [] : [s.record.tagged]))).then(onTagged);
  const tagged = await Promise.allSettled(
    decoded.map(async (d, i) => {
      const s = started[i]!;
      if (isLeft(d) || s === null) return null;
      const { stop, recordLinker, record } = s;
      const entities = await record.tagged; // a tagging failure is the record's, never said to be the linker's
      stop();
      if (lease.shadow !== null && lease.shadow.pick()) shadows.push(lease.shadow.compare(d.right.record.text, entities));
      if (recordLinker === null) return entities;
      try {
        return await record.linked;
      } finally {
        options.metrics.linkingSeconds.observe(recordLinker.seconds);
      }
    }),
  );

  // A failure that may pass (or the model closing) aborts the whole slice before anything is built.
  const retry = tagged.find((t): t is PromiseRejectedResult => {
    if (t.status !== 'rejected') return false;
    const info = describeError(t.reason);
    return info.code === 'MODEL_CLOSED' || (info.retriable && attempt < options.maxAttempts);
  });
  if (retry !== undefined) throw retry.reason;

  // Every record folded once: an event, or a dead letter.
  const outcomes: Outcome[] = messages.map((message, i) => {
    const d = decoded[i]!;
    if (isLeft(d)) return { kind: 'dead', reason: d.left };
    const t = tagged[i]!;
    // Never the record id (key or recordId: often a medical record number, patient data).
    const ctx = { topic: message.topic, partition: message.partition, offset: message.offset };
    if (t.status === 'rejected') {
      const info = describeError(t.reason);
      options.log.error({ ...ctx, code: info.code, attempt, err: t.reason }, 'tagging failed for good: dead-lettering the record');
      return { kind: 'dead', reason: { code: 'PROCESSING_FAILED', message: `tagging failed (${info.code}${info.retriable ? ` after ${attempt} attempts` : ''}): ${info.message}` } };
    }
    try {
      const event = buildEvent(d.right.record.recordId, model.version, t.value ?? [], now(), linker?.version ?? null);
      const out: OutputMessage = {
        topic: options.outputTopic,
        key: message.key ?? Buffer.from(d.right.record.recordId),
        value: options.encoder.encode(event),
        headers: traceHeaders(message.headers),
      };
      const limit = (options.maxMessageBytes?.output ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES) - BATCH_OVERHEAD_BYTES;
      const bytes = recordBytes(out);
      if (bytes > limit) {
        const reason = `the event has ${event.entities.length} entities and takes ${bytes} bytes, more than the output topic accepts (max.message.bytes ${limit + BATCH_OVERHEAD_BYTES})`;
        return { kind: 'dead', reason: { code: 'EVENT_TOO_LARGE', message: reason } };
      }
      return { kind: 'event', entities: t.value ?? [], message: out };
    } catch (e) {
      const info = describeError(e);
      options.log.error({ ...ctx, code: info.code, err: e }, 'encoding the event failed: dead-lettering the record');
      return { kind: 'dead', reason: { code: 'PROCESSING_FAILED', message: `encoding the event failed: ${info.message}` } };
    }
  });

  const out: OutputMessage[] = [];
  const records: RecordOutcome[] = [];
  outcomes.forEach((o, i) => {
    const message = messages[i]!;
    const d = decoded[i]!;
    const format = isLeft(d) ? d.left.format : d.right.format;
    if (o.kind === 'event') {
      out.push(o.message);
      records.push({ kind: 'event', format, timestamp: message.timestamp, entityTypes: o.entities.map((e) => e.code) });
    } else {
      const letter = deadLetterMessage(message, o.reason, options.dltTopic, options.groupId);
      const fitted = fitDeadLetter(letter, options.maxMessageBytes?.dlt ?? KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
      out.push(fitted);
      const note = fitted === letter ? '' : ' (dead letter truncated to fit the dead-letter topic\'s max.message.bytes)';
      records.push({ kind: 'dead', format, partition: message.partition, offset: message.offset, code: o.reason.code, reason: `${o.reason.message}${note}` });
    }
  });
  return { messages: out, records };
}

/**
 * The linker as one record uses it: its errors keep their code (and so the
 * same retry decision) but say they are the linker's (`linking: …`), and
 * `seconds` sums the time of its calls, one per chunk with entities of a
 * linked type: the record's linking time (calls of chunks linked at the same
 * time each count in full).
 */
function timedLinker(linker: EntityLinker): EntityLinker & { readonly seconds: number } {
  let seconds = 0;
  return {
    version: linker.version,
    entityTypes: linker.entityTypes,
    get seconds() {
      return seconds;
    },
    async link(texts) {
      const started = performance.now();
      try {
        return await linker.link(texts);
      } catch (e) {
        throw isCnerError(e) ? new CnerError(e.code, `linking: ${e.message}`, { cause: e, context: e.context }) : e;
      } finally {
        seconds += (performance.now() - started) / 1000;
      }
    },
  };
}
