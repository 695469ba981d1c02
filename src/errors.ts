// The one closed set of error codes, for the pipeline, the model and the
// stream processor alike. What a failure's scope is (one record for good,
// the slice again, the whole Kafka session again, or nothing: fix the cause)
// is data on the code, never an `instanceof` check or a list kept elsewhere.
// Anything thrown that is not a CnerError (TypeError, RangeError, …) is a
// programmer error: it is never retried.
//
// Messages and context never contain record text (patient data): they end up
// in logs and dead-letter headers. This module imports nothing, so the pure
// pipeline may use it.

/**
 * What is tried again after a failure with this code:
 * - `record`: nothing; the record alone can never be processed and goes to the dead-letter topic;
 * - `slice`: the slice (its transaction aborted) is read again by the same consumer after backoff;
 * - `session`: the consumer and its producers start again after backoff, from the committed offsets;
 * - `none`: nothing; fix the cause (configuration, credentials, bundle) or the bug.
 */
export type RetryScope = 'record' | 'slice' | 'session' | 'none';

export const ERROR_CODES = {
  // One record can never be processed: it goes to the dead-letter topic.
  /** The value is empty, not valid UTF-8 JSON, or not decodable Avro. */
  UNDECODABLE_VALUE: { retry: 'record' },
  /** The Avro value names a schema id the registry does not know. */
  UNKNOWN_SCHEMA: { retry: 'record' },
  /** The writer schema cannot be read as EmrRecord (schema resolution failed). */
  INCOMPATIBLE_SCHEMA: { retry: 'record' },
  /** The text field is missing, null or empty. */
  MISSING_TEXT: { retry: 'record' },
  /** The text has more code points than CNER_MAX_TEXT_LENGTH. */
  TEXT_TOO_LONG: { retry: 'record' },
  /** The text is not well-formed UTF-16 (a lone surrogate). */
  INVALID_UTF16: { retry: 'record' },
  /** Another field (recordId, sourceSystem, timestamp, metadata) is invalid, or an input failed validation. */
  INVALID_RECORD: { retry: 'record' },
  /** The record's event is larger than the output topic accepts (max.message.bytes): too many entities. */
  EVENT_TOO_LARGE: { retry: 'record' },
  /** Tagging or encoding this one record failed for good (a bug); dead-lettered so the stream goes on. */
  PROCESSING_FAILED: { retry: 'record' },

  // The model: bundles, sessions, workers.
  /** A configuration value or option is invalid. Fix it; never retried. */
  INVALID_CONFIG: { retry: 'none' },
  /** The model bundle directory or one of its files is missing. */
  BUNDLE_NOT_FOUND: { retry: 'none' },
  /** A bundle file is malformed or inconsistent with the contract. */
  BUNDLE_INVALID: { retry: 'none' },
  /** A bundle file's sha256 differs from manifest.json. */
  BUNDLE_CHECKSUM_MISMATCH: { retry: 'none' },
  /** onnxruntime could not create a session from model.onnx. */
  MODEL_LOAD_FAILED: { retry: 'none' },
  /** session.run failed (e.g. device out of memory); may succeed on a later try. */
  INFERENCE_FAILED: { retry: 'slice' },
  /** An inference worker died while it held the batch; it is replaced. */
  WORKER_CRASHED: { retry: 'slice' },
  /** The model (pool, batcher) was closed: shutting down. */
  MODEL_CLOSED: { retry: 'none' },
  /** A model version from the model topic failed verification (context.reason says which check). */
  MODEL_REJECTED: { retry: 'none' },

  // The processor's surroundings: retried with backoff, never per record.
  /** No broker answers, or a request timed out. */
  BROKER_UNAVAILABLE: { retry: 'session' },
  /** The schema registry does not answer, or answers 5xx/429. */
  REGISTRY_UNAVAILABLE: { retry: 'slice' },
  /** An input/output/dead-letter topic does not exist and may not be created. */
  TOPIC_MISSING: { retry: 'slice' },
  /** A transaction could not be committed; it was aborted and the batch is read again. */
  TRANSACTION_FAILED: { retry: 'slice' },
  /** A newer producer with the partition's transactional id took over (the partition moved); this one is dropped. */
  PRODUCER_FENCED: { retry: 'slice' },
  /** Any other Kafka client failure (e.g. an invalid transaction state): the session starts again. */
  KAFKA_ERROR: { retry: 'session' },
  /** Kafka refused our credentials or an operation (SASL, ACLs). Fix the configuration. */
  KAFKA_NOT_AUTHORIZED: { retry: 'none' },
  /** The registry refused a request for good: bad credentials (401/403) or an incompatible schema (409/422). */
  REGISTRY_REJECTED: { retry: 'none' },
  /** An unexpected error outside one record: a bug. Never retried. */
  INTERNAL: { retry: 'none' },
} as const satisfies Record<string, { readonly retry: RetryScope }>;

export type ErrorCode = keyof typeof ERROR_CODES;
export type DeadLetterCode = {
  [K in ErrorCode]: (typeof ERROR_CODES)[K]['retry'] extends 'record' ? K : never;
}[ErrorCode];

/** Whether a failure with `code` may pass on a later try (slice or session scope). */
export const isRetriable = (code: ErrorCode): boolean => ERROR_CODES[code].retry === 'slice' || ERROR_CODES[code].retry === 'session';

export interface CnerErrorOptions {
  readonly cause?: unknown;
  /** Facts for logs and dead-letter headers: topic, partition, offset, ids, sizes, paths; never record text. */
  readonly context?: Readonly<Record<string, unknown>>;
}

export class CnerError extends Error {
  override readonly name = 'CnerError';
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: CnerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = isRetriable(code);
    this.context = options.context ?? {};
  }
}

export const isCnerError = (e: unknown): e is CnerError => e instanceof CnerError;

export const isErrorCode = (value: unknown): value is ErrorCode => typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);

export const isDeadLetterCode = (code: string): code is DeadLetterCode => isErrorCode(code) && ERROR_CODES[code].retry === 'record';

/** What the loop needs to know about any thrown value. */
export interface ErrorInfo {
  readonly code: string;
  readonly retriable: boolean;
  /** Anything that is not a CnerError is a bug: `none`. */
  readonly retry: RetryScope;
  /** Safe to log and to put in a header: ours never quote record text; others' are withheld. */
  readonly message: string;
}

export function describeError(error: unknown): ErrorInfo {
  if (isCnerError(error)) return { code: error.code, retriable: error.retriable, retry: ERROR_CODES[error.code].retry, message: error.message };
  return { code: 'INTERNAL', retriable: false, retry: 'none', message: `${errorName(error)}: ${safeMessage(error)}` };
}

/**
 * Error messages we did not write may quote their input (JSON.parse quotes
 * the text it failed on, avsc quotes invalid values). They are kept only for
 * errors known not to carry payloads: network/system errors and KafkaJS's.
 */
export function safeMessage(error: unknown): string {
  if (isCnerError(error)) return error.message;
  if (!(error instanceof Error)) return 'non-Error value thrown';
  const errno = error as Error & { code?: unknown; syscall?: unknown };
  const trusted =
    error.name.startsWith('KafkaJS') ||
    error.name === 'AbortError' ||
    error.name === 'TimeoutError' ||
    typeof errno.syscall === 'string' ||
    (typeof errno.code === 'string' && /^E[A-Z]+$/.test(errno.code));
  return trusted ? error.message : '(message withheld: it may quote record data)';
}

const errorName = (error: unknown): string => (error instanceof Error ? error.name : typeof error);

/** A pino `err` serializer that keeps codes, context and causes but no untrusted messages. */
export function serializeError(error: unknown, depth = 0): Record<string, unknown> {
  if (!(error instanceof Error)) return { type: typeof error, message: 'non-Error value thrown' };
  const out: Record<string, unknown> = { type: error.name, message: safeMessage(error) };
  if (isCnerError(error)) {
    out['code'] = error.code;
    out['retriable'] = error.retriable;
    if (Object.keys(error.context).length > 0) out['context'] = error.context;
  } else {
    const extra = error as Error & { code?: unknown; type?: unknown; retriable?: unknown; broker?: unknown };
    if (typeof extra.code === 'string') out['code'] = extra.code;
    if (typeof extra.type === 'string') out['kafkaType'] = extra.type;
    if (typeof extra.retriable === 'boolean') out['retriable'] = extra.retriable;
    if (typeof extra.broker === 'string') out['broker'] = extra.broker;
    // Frames only: the first stack line repeats the (possibly withheld) message.
    if (error.stack !== undefined) out['stack'] = error.stack.split('\n').filter((l) => l.startsWith('    at ')).slice(0, 12).join('\n');
  }
  if (error.cause !== undefined && depth < 4) out['cause'] = serializeError(error.cause, depth + 1);
  return out;
}

