// Decoding one input message into an EmrRecord, at the edge. The value is
// Confluent-framed Avro (first byte 0) or UTF-8 JSON with the same fields.
// The result is an Either: Left = why this record can never be tagged (a
// dead-letter code and a message), Right = the record. Field problems are
// all collected (applicative validation). Nothing here quotes the text.
// Only an unavailable registry throws: that is not the record's fault.

import { sequenceS } from 'fp-ts/lib/Apply.js';
import { type Either, getApplicativeValidation, isLeft, left, mapLeft, right } from 'fp-ts/lib/Either.js';
import { type NonEmptyArray, getSemigroup } from 'fp-ts/lib/NonEmptyArray.js';
import { type DeadLetterCode, isDeadLetterCode, isCnerError } from '../errors.js';
import { codePointLength, firstLoneSurrogate } from '../pipeline/unicode.js';
import { type AvroReader, isAvroFramed } from './avro.js';

export interface EmrRecord {
  readonly recordId: string;
  readonly text: string;
  readonly sourceSystem: string;
  /** Epoch milliseconds. */
  readonly timestamp: number;
  readonly metadata: Readonly<Record<string, string>> | null;
}

export type ValueFormat = 'avro' | 'json';

export interface DecodeFailure {
  readonly code: DeadLetterCode;
  /** Safe for logs and headers: names fields and positions, never their content. */
  readonly message: string;
  readonly format: ValueFormat | 'unknown';
}

export interface Decoded {
  readonly record: EmrRecord;
  readonly format: ValueFormat;
}

export interface DecodeOptions {
  /** Longest text, in code points. */
  readonly maxTextLength: number;
  readonly avro: AvroReader;
}

export interface Issue {
  readonly code: DeadLetterCode;
  readonly field: string;
  readonly problem: string;
}

const MAX_ID_LENGTH = 256;

/** The code a record's failure is filed under when it has several problems. */
const PRIORITY: readonly DeadLetterCode[] = ['MISSING_TEXT', 'INVALID_UTF16', 'TEXT_TOO_LONG', 'INVALID_RECORD'];

const utf8 = new TextDecoder('utf-8', { fatal: true });

export async function decodeMessage(key: Buffer | null, value: Buffer | null, options: DecodeOptions): Promise<Either<DecodeFailure, Decoded>> {
  if (value === null || value.length === 0) return left({ code: 'UNDECODABLE_VALUE', message: 'value is empty', format: 'unknown' });
  const keyText = key === null ? null : decodeUtf8(key);

  if (isAvroFramed(value)) {
    let decoded: unknown;
    try {
      decoded = await options.avro.decode(value);
    } catch (e) {
      if (isCnerError(e) && isDeadLetterCode(e.code)) return left({ code: e.code, message: e.message, format: 'avro' });
      throw e; // registry unavailable, or a bug
    }
    return withFormat(validateRecord(decoded, keyText, options.maxTextLength), 'avro');
  }

  const text = decodeUtf8(value);
  if (text === null) return left({ code: 'UNDECODABLE_VALUE', message: 'value is neither Avro (magic byte 0) nor valid UTF-8 JSON', format: 'unknown' });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // (JSON.parse's message quotes the input: not used)
    return left({ code: 'UNDECODABLE_VALUE', message: 'value is neither Avro (magic byte 0) nor valid JSON', format: 'json' });
  }
  return withFormat(validateRecord(json, keyText, options.maxTextLength), 'json');
}

function withFormat(result: Either<NonEmptyArray<Issue>, EmrRecord>, format: ValueFormat): Either<DecodeFailure, Decoded> {
  if (isLeft(result)) return mapLeft((issues: NonEmptyArray<Issue>) => failureOf(issues, format))(result);
  return right({ record: result.right, format });
}

export function failureOf(issues: NonEmptyArray<Issue>, format: ValueFormat | 'unknown'): DecodeFailure {
  const code = PRIORITY.find((c) => issues.some((i) => i.code === c)) ?? issues[0].code;
  return { code, message: `invalid record: ${issues.map((i) => `${i.field} ${i.problem}`).join('; ')}`, format };
}

type Validated<A> = Either<NonEmptyArray<Issue>, A>;
const V = getApplicativeValidation(getSemigroup<Issue>());
const invalid = (code: DeadLetterCode, field: string, problem: string): Validated<never> => left([{ code, field, problem }]);

/** Checks the fields of a decoded object (from Avro or JSON); the key stands in for a missing recordId. */
export function validateRecord(value: unknown, key: string | null, maxTextLength: number): Validated<EmrRecord> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return invalid('UNDECODABLE_VALUE', 'value', 'is not a JSON object');
  const obj = value as Record<string, unknown>;
  return sequenceS(V)({
    recordId: recordId(obj['recordId'] ?? key ?? undefined),
    text: text(obj['text'], maxTextLength),
    sourceSystem: sourceSystem(obj['sourceSystem']),
    timestamp: timestamp(obj['timestamp']),
    metadata: metadata(obj['metadata']),
  });
}

function recordId(value: unknown): Validated<string> {
  if (value === undefined || value === null) return invalid('INVALID_RECORD', 'recordId', 'is missing (and the message has no key)');
  if (typeof value !== 'string') return invalid('INVALID_RECORD', 'recordId', 'must be a string');
  if (value.length === 0) return invalid('INVALID_RECORD', 'recordId', 'must not be empty');
  if (value.length > MAX_ID_LENGTH) return invalid('INVALID_RECORD', 'recordId', `must be at most ${MAX_ID_LENGTH} characters`);
  if (firstLoneSurrogate(value) >= 0) return invalid('INVALID_RECORD', 'recordId', 'is not well-formed UTF-16 (lone surrogate)');
  return right(value);
}

function text(value: unknown, maxTextLength: number): Validated<string> {
  if (value === undefined || value === null) return invalid('MISSING_TEXT', 'text', 'is missing');
  if (typeof value !== 'string') return invalid('INVALID_RECORD', 'text', 'must be a string');
  if (value.length === 0) return invalid('MISSING_TEXT', 'text', 'is empty');
  const issues: Issue[] = [];
  const bad = firstLoneSurrogate(value);
  if (bad >= 0) issues.push({ code: 'INVALID_UTF16', field: 'text', problem: `is not well-formed UTF-16: lone surrogate at code point ${codePointLength(value.slice(0, bad))}` });
  const length = codePointLength(value);
  if (length > maxTextLength) issues.push({ code: 'TEXT_TOO_LONG', field: 'text', problem: `has ${length} code points, more than CNER_MAX_TEXT_LENGTH=${maxTextLength}` });
  const [first, ...rest] = issues;
  return first === undefined ? right(value) : left([first, ...rest]);
}

function sourceSystem(value: unknown): Validated<string> {
  if (value === undefined || value === null) return invalid('INVALID_RECORD', 'sourceSystem', 'is missing');
  if (typeof value !== 'string') return invalid('INVALID_RECORD', 'sourceSystem', 'must be a string');
  return right(value);
}

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** Epoch milliseconds (Avro timestamp-millis, JSON number) or, in JSON, an ISO-8601 date-time. */
function timestamp(value: unknown): Validated<number> {
  if (value === undefined || value === null) return invalid('INVALID_RECORD', 'timestamp', 'is missing');
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? right(value) : invalid('INVALID_RECORD', 'timestamp', 'must be non-negative epoch milliseconds');
  }
  if (typeof value === 'string') {
    const ms = ISO_DATE_TIME.test(value) ? Date.parse(value) : Number.NaN;
    return Number.isNaN(ms) ? invalid('INVALID_RECORD', 'timestamp', 'must be epoch milliseconds or an ISO-8601 date-time with a time zone') : right(ms);
  }
  return invalid('INVALID_RECORD', 'timestamp', 'must be epoch milliseconds or an ISO-8601 date-time');
}

function metadata(value: unknown): Validated<Readonly<Record<string, string>> | null> {
  if (value === undefined || value === null) return right(null);
  if (typeof value !== 'object' || Array.isArray(value)) return invalid('INVALID_RECORD', 'metadata', 'must be an object of strings or null');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.some(([, v]) => typeof v !== 'string')) return invalid('INVALID_RECORD', 'metadata', 'values must be strings');
  return right(Object.fromEntries(entries) as Record<string, string>);
}

function decodeUtf8(bytes: Buffer): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}
