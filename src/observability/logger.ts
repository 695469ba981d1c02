// Structured JSON logs (pino). Rules, enforced here and tested with a canary:
// record text never appears (callers log ids, offsets, sizes and codes only;
// the `err` serializer withholds messages of errors that may quote input),
// and credentials never appear (redacted paths as a second line of defence).

import pino, { type DestinationStream, type Logger } from 'pino';
import { serializeError } from '../errors.js';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Paths that may carry secrets if someone logs a config or client options object. */
const REDACT = [
  'password',
  '*.password',
  '*.*.password',
  'sasl',
  '*.sasl',
  'ssl.key',
  '*.ssl.key',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
];

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Default: stdout. Tests pass a stream to inspect the lines. */
  readonly destination?: DestinationStream | 'stdout' | 'stderr';
  readonly base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'cner', ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError, error: serializeError, cause: serializeError },
      redact: { paths: REDACT, censor: '[redacted]' },
    },
    typeof options.destination === 'object' ? options.destination : pino.destination({ dest: options.destination === 'stderr' ? 2 : 1, sync: false }),
  );
}

/** Flushes an async destination (before process.exit). */
export function flushLogger(logger: Logger): Promise<void> {
  return new Promise((resolve) => {
    try {
      logger.flush(() => resolve());
    } catch {
      resolve();
    }
  });
}
