// The one closed set of error codes, for the pipeline, the model and the
// stream processor alike. Whether to retry, and whether a record goes to the
// dead-letter topic, is data on the code, never an `instanceof` check.
// Anything thrown that is not a CnerError (TypeError, RangeError, …) is a
// programmer error: it is never retried.
//
// Messages and context never contain record text (patient data): they end up
// in logs and dead-letter headers. This module imports nothing, so the pure
// pipeline may use it.

export const ERROR_CODES = {
  // One record can never be processed: it goes to the dead-letter topic.
  /** The value is empty, not valid UTF-8 JSON, or not decodable Avro. */
  UNDECODABLE_VALUE: { retriable: false, deadLetter: true },
  /** The Avro value names a schema id the registry does not know. */
  UNKNOWN_SCHEMA: { retriable: false, deadLetter: true },
  /** The writer schema cannot be read as EmrRecord (schema resolution failed). */
  INCOMPATIBLE_SCHEMA: { retriable: false, deadLetter: true },
  /** The text field is missing, null or empty. */
  MISSING_TEXT: { retriable: false, deadLetter: true },
  /** The text has more code points than CNER_MAX_TEXT_LENGTH. */
  TEXT_TOO_LONG: { retriable: false, deadLetter: true },
  /** The text is not well-formed UTF-16 (a lone surrogate). */
  INVALID_UTF16: { retriable: false, deadLetter: true },
  /** Another field (recordId, sourceSystem, timestamp, metadata) is invalid, or an input failed validation. */
  INVALID_RECORD: { retriable: false, deadLetter: true },
  /** The record's event is larger than the output topic accepts (max.message.bytes): too many entities. */
  EVENT_TOO_LARGE: { retriable: false, deadLetter: true },
  /** Tagging or encoding this one record failed for good (a bug); dead-lettered so the stream goes on. */
  PROCESSING_FAILED: { retriable: false, deadLetter: true },

  // The model: bundles, sessions, workers.
  /** A configuration value or option is invalid. Fix it; never retried. */
  INVALID_CONFIG: { retriable: false, deadLetter: false },
  /** The model bundle directory or one of its files is missing. */
  BUNDLE_NOT_FOUND: { retriable: false, deadLetter: false },
  /** A bundle file is malformed or inconsistent with the contract. */
  BUNDLE_INVALID: { retriable: false, deadLetter: false },
  /** A bundle file's sha256 differs from manifest.json. */
  BUNDLE_CHECKSUM_MISMATCH: { retriable: false, deadLetter: false },
  /** onnxruntime could not create a session from model.onnx. */
  MODEL_LOAD_FAILED: { retriable: false, deadLetter: false },
  /** session.run failed (e.g. device out of memory); may succeed on a later try. */
  INFERENCE_FAILED: { retriable: true, deadLetter: false },
  /** An inference worker died while it held the batch; it is replaced. */
  WORKER_CRASHED: { retriable: true, deadLetter: false },
  /** The model (pool, batcher) was closed: shutting down. */
  MODEL_CLOSED: { retriable: false, deadLetter: false },
  /** A model version from the model topic failed verification (context.reason says which check). */
  MODEL_REJECTED: { retriable: false, deadLetter: false },

  // The processor's surroundings: retried with backoff, never per record.
  /** No broker answers, or a request timed out. */
  BROKER_UNAVAILABLE: { retriable: true, deadLetter: false },
  /** The schema registry does not answer, or answers 5xx/429. */
  REGISTRY_UNAVAILABLE: { retriable: true, deadLetter: false },
  /** An input/output/dead-letter topic does not exist and may not be created. */
  TOPIC_MISSING: { retriable: true, deadLetter: false },
  /** A transaction could not be committed; it was aborted and the batch is read again. */
  TRANSACTION_FAILED: { retriable: true, deadLetter: false },
  /** Another producer with our transactional id took over; this one must start again. */
  PRODUCER_FENCED: { retriable: true, deadLetter: false },
  /** Any other Kafka client failure (e.g. an invalid transaction state): the session starts again. */
  KAFKA_ERROR: { retriable: true, deadLetter: false },
  /** Kafka refused our credentials or an operation (SASL, ACLs). Fix the configuration. */
  KAFKA_NOT_AUTHORIZED: { retriable: false, deadLetter: false },
  /** The registry refused a request for good: bad credentials (401/403) or an incompatible schema (409/422). */
  REGISTRY_REJECTED: { retriable: false, deadLetter: false },
  /** An unexpected error outside one record: a bug. Never retried. */
  INTERNAL: { retriable: false, deadLetter: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
export type DeadLetterCode = {
  [K in ErrorCode]: (typeof ERROR_CODES)[K]['deadLetter'] extends true ? K : never;
}[ErrorCode];

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
    this.retriable = ERROR_CODES[code].retriable;
    this.context = options.context ?? {};
  }
}

export const isCnerError = (e: unknown): e is CnerError => e instanceof CnerError;

export const isErrorCode = (value: unknown): value is ErrorCode => typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);

export const isDeadLetterCode = (code: string): code is DeadLetterCode => isErrorCode(code) && ERROR_CODES[code].deadLetter;

/** What the loop needs to know about any thrown value. */
export interface ErrorInfo {
  readonly code: string;
  readonly retriable: boolean;
  /** Safe to log and to put in a header: ours never quote record text; others' are withheld. */
  readonly message: string;
}

export function describeError(error: unknown): ErrorInfo {
  if (isCnerError(error)) return { code: error.code, retriable: error.retriable, message: error.message };
  return { code: 'INTERNAL', retriable: false, message: `${errorName(error)}: ${safeMessage(error)}` };
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

