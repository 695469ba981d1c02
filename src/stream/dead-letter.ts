// Dead-letter messages, Spring Kafka style so JVM tooling reads them: the
// original key, value and headers unchanged, plus `kafka_dlt-*` headers with
// the binary encodings of Spring's DeadLetterPublishingRecoverer (partition a
// 4-byte and offset/timestamp 8-byte big-endian integers, the rest UTF-8)
// and our error code. The message never quotes the record.

import { BATCH_OVERHEAD_BYTES, type Headers, type InputMessage, type OutputMessage, lastHeader, recordBytes } from '../kafka/port.js';

export const DLT_HEADERS = Object.freeze({
  originalTopic: 'kafka_dlt-original-topic',
  originalPartition: 'kafka_dlt-original-partition',
  originalOffset: 'kafka_dlt-original-offset',
  originalTimestamp: 'kafka_dlt-original-timestamp',
  originalConsumerGroup: 'kafka_dlt-original-consumer-group',
  exceptionFqcn: 'kafka_dlt-exception-fqcn',
  exceptionMessage: 'kafka_dlt-exception-message',
  errorCode: 'cner_error-code',
  /** The value was cut to fit the dead-letter topic's max.message.bytes; the header is its original size in bytes (decimal). */
  valueTruncated: 'cner_dlt-value-truncated',
  /** Even without its value the dead letter did not fit: the original headers were left out ("true"). */
  headersDropped: 'cner_dlt-original-headers-dropped',
});

/** Stands in for a Java exception class name in `kafka_dlt-exception-fqcn`. */
export const DLT_EXCEPTION_CLASS = 'health.cner.DeadLetter';

export interface DeadLetterReason {
  readonly code: string;
  readonly message: string;
}

export function deadLetterMessage(message: InputMessage, reason: DeadLetterReason, dltTopic: string, groupId: string): OutputMessage {
  const partition = Buffer.alloc(4);
  partition.writeInt32BE(message.partition);
  const offset = Buffer.alloc(8);
  offset.writeBigInt64BE(BigInt(message.offset));
  const timestamp = Buffer.alloc(8);
  timestamp.writeBigInt64BE(BigInt(Number.isSafeInteger(message.timestamp) ? message.timestamp : -1));
  return {
    topic: dltTopic,
    key: message.key,
    value: message.value,
    headers: {
      ...message.headers,
      [DLT_HEADERS.originalTopic]: Buffer.from(message.topic),
      [DLT_HEADERS.originalPartition]: partition,
      [DLT_HEADERS.originalOffset]: offset,
      [DLT_HEADERS.originalTimestamp]: timestamp,
      [DLT_HEADERS.originalConsumerGroup]: Buffer.from(groupId),
      [DLT_HEADERS.exceptionFqcn]: Buffer.from(DLT_EXCEPTION_CLASS),
      [DLT_HEADERS.exceptionMessage]: Buffer.from(`${reason.code}: ${reason.message}`),
      [DLT_HEADERS.errorCode]: Buffer.from(reason.code),
    },
  };
}

/**
 * A dead letter that the dead-letter topic accepts (`maxMessageBytes`, its
 * max.message.bytes): one that does not fit would fail its transaction on
 * every try and block the partition for good. The value is cut to what fits,
 * with a header giving its original size; if the key and headers alone do not
 * fit, the original headers are left out too (and a header says so).
 */
export function fitDeadLetter(m: OutputMessage, maxMessageBytes: number): OutputMessage {
  const limit = maxMessageBytes - BATCH_OVERHEAD_BYTES;
  if (recordBytes(m) <= limit) return m;
  const marked: OutputMessage = { ...m, headers: { ...m.headers, [DLT_HEADERS.valueTruncated]: Buffer.from(String(m.value?.length ?? 0)) } };
  const room = limit - recordBytes({ ...marked, value: null });
  if (room >= 0) return { ...marked, value: m.value === null ? null : m.value.subarray(0, room) };
  const ours = Object.fromEntries(Object.entries(marked.headers).filter(([name]) => (Object.values(DLT_HEADERS) as string[]).includes(name)));
  return { ...marked, value: Buffer.alloc(0), headers: { ...ours, [DLT_HEADERS.headersDropped]: Buffer.from('true') } };
}

/** The dead-letter headers, read back (for tools and tests). */
export interface DeadLetterInfo {
  readonly originalTopic: string;
  readonly originalPartition: number;
  readonly originalOffset: string;
  readonly errorCode: string;
  readonly message: string;
}

export function readDeadLetterHeaders(headers: Headers): DeadLetterInfo | null {
  const h = (name: string): Buffer | undefined => lastHeader(headers, name);
  const topic = h(DLT_HEADERS.originalTopic);
  const partition = h(DLT_HEADERS.originalPartition);
  const offset = h(DLT_HEADERS.originalOffset);
  const code = h(DLT_HEADERS.errorCode);
  if (topic === undefined || partition?.length !== 4 || offset?.length !== 8 || code === undefined) return null;
  return {
    originalTopic: topic.toString(),
    originalPartition: partition.readInt32BE(0),
    originalOffset: offset.readBigInt64BE(0).toString(),
    errorCode: code.toString(),
    message: h(DLT_HEADERS.exceptionMessage)?.toString() ?? '',
  };
}

/** W3C Trace Context headers carried from the input record to what we publish for it. */
export const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export function traceHeaders(headers: Headers): Headers {
  const out: Record<string, Buffer> = {};
  const parent = lastHeader(headers, 'traceparent');
  if (parent !== undefined && TRACEPARENT.test(parent.toString().trim())) {
    out['traceparent'] = parent;
    const state = lastHeader(headers, 'tracestate');
    if (state !== undefined) out['tracestate'] = state;
  }
  return out;
}
