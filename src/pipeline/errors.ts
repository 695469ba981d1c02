// The closed set of error codes. Whether to retry is data on the code, never
// an `instanceof` check; programmer errors (TypeError, RangeError, …) are not
// CnerErrors and are never retried.

export const ERROR_CODES = {
  /** An input record failed validation; retrying cannot help (dead-letter it). */
  INVALID_RECORD: { retriable: false },
  /** A configuration value or option is invalid. */
  INVALID_CONFIG: { retriable: false },
  /** The model bundle directory or one of its files is missing. */
  BUNDLE_NOT_FOUND: { retriable: false },
  /** A bundle file is malformed or inconsistent with the contract. */
  BUNDLE_INVALID: { retriable: false },
  /** A bundle file's sha256 differs from manifest.json. */
  BUNDLE_CHECKSUM_MISMATCH: { retriable: false },
  /** onnxruntime could not create a session from model.onnx. */
  MODEL_LOAD_FAILED: { retriable: false },
  /** session.run failed (e.g. device out of memory); may succeed on a later try. */
  INFERENCE_FAILED: { retriable: true },
  /** An inference worker died while it held the batch; it is replaced. */
  WORKER_CRASHED: { retriable: true },
  /** The model (pool, batcher) was closed: shutting down. */
  MODEL_CLOSED: { retriable: false },
  /** A model version from the model topic failed verification (context.reason says which check). */
  MODEL_REJECTED: { retriable: false },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface CnerErrorOptions {
  readonly cause?: unknown;
  /** Facts for logs and dead-letter headers: ids, sizes, paths; never record text. */
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

export const isErrorCode = (value: unknown): value is ErrorCode =>
  typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
