// Decoding of one input record ({id, text, source, timestamp}) from JSON, at
// the edge: every problem is collected, and none of them quotes the text
// (it is patient data and these messages end up in logs and dead letters).

import { sequenceS } from 'fp-ts/lib/Apply.js';
import { type Either, getApplicativeValidation, left, right } from 'fp-ts/lib/Either.js';
import { type NonEmptyArray, getSemigroup } from 'fp-ts/lib/NonEmptyArray.js';
import { CnerError } from '../errors.js';

export interface InputRecord {
  readonly id: string;
  readonly text: string;
  readonly source: string | null;
  /** Epoch milliseconds. */
  readonly timestamp: number | null;
}

export interface RecordIssue {
  readonly field: string;
  readonly problem: string;
}

export interface RecordLimits {
  /** Longest accepted text, in code points. */
  readonly maxTextLength: number;
  readonly maxIdLength: number;
}

export const DEFAULT_LIMITS: RecordLimits = Object.freeze({ maxTextLength: 20_000, maxIdLength: 256 });

type Validated<A> = Either<NonEmptyArray<RecordIssue>, A>;

const invalid = (field: string, problem: string): Validated<never> => left([{ field, problem }]);
const validation = getApplicativeValidation(getSemigroup<RecordIssue>());

/** Decodes an already parsed JSON value. */
export function decodeRecord(json: unknown, limits: RecordLimits = DEFAULT_LIMITS): Validated<InputRecord> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return invalid('$', 'must be a JSON object');
  const obj = json as Record<string, unknown>;
  return sequenceS(validation)({
    id: decodeId(obj['id'], limits),
    text: decodeText(obj['text'], limits),
    source: decodeSource(obj['source']),
    timestamp: decodeTimestamp(obj['timestamp']),
  });
}

/** Parses and decodes a raw message value (UTF-8 JSON). */
export function parseRecord(raw: string, limits: RecordLimits = DEFAULT_LIMITS): Validated<InputRecord> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return invalid('$', 'is not valid JSON');
  }
  return decodeRecord(json, limits);
}

/** The INVALID_RECORD error for a failed decode (issues carry no text). */
export function invalidRecordError(issues: readonly RecordIssue[], context: Readonly<Record<string, unknown>> = {}): CnerError {
  const summary = issues.map((i) => `${i.field} ${i.problem}`).join('; ');
  return new CnerError('INVALID_RECORD', `invalid record: ${summary}`, { context: { ...context, issues } });
}

function decodeId(value: unknown, limits: RecordLimits): Validated<string> {
  if (typeof value !== 'string') return invalid('id', 'must be a string');
  if (value.length === 0) return invalid('id', 'must not be empty');
  if (value.length > limits.maxIdLength) return invalid('id', `must be at most ${limits.maxIdLength} characters`);
  if (firstLoneSurrogate(value) >= 0) return invalid('id', 'is not well-formed UTF-16 (lone surrogate)');
  return right(value);
}

function decodeText(value: unknown, limits: RecordLimits): Validated<string> {
  if (value === undefined || value === null) return invalid('text', 'is missing');
  if (typeof value !== 'string') return invalid('text', 'must be a string');
  if (value.length === 0) return invalid('text', 'must not be empty');
  const length = codePointLength(value);
  if (length > limits.maxTextLength) {
    return invalid('text', `has ${length} code points, more than the limit of ${limits.maxTextLength}`);
  }
  const bad = firstLoneSurrogate(value);
  if (bad >= 0) return invalid('text', `is not well-formed UTF-16: lone surrogate at code point ${codePointIndex(value, bad)}`);
  return right(value);
}

function decodeSource(value: unknown): Validated<string | null> {
  if (value === undefined || value === null) return right(null);
  if (typeof value !== 'string') return invalid('source', 'must be a string or null');
  return right(value);
}

/** Epoch milliseconds, or an ISO-8601 date-time string. */
function decodeTimestamp(value: unknown): Validated<number | null> {
  if (value === undefined || value === null) return right(null);
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value >= 0 ? right(value) : invalid('timestamp', 'must be non-negative epoch milliseconds');
  }
  if (typeof value === 'string') {
    const ms = ISO_DATE_TIME.test(value) ? Date.parse(value) : Number.NaN;
    return Number.isNaN(ms) ? invalid('timestamp', 'must be an ISO-8601 date-time with a time zone') : right(ms);
  }
  return invalid('timestamp', 'must be epoch milliseconds or an ISO-8601 string');
}

const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** UTF-16 index of the first unpaired surrogate, or -1. */
export function firstLoneSurrogate(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1); // NaN past the end
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return i;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return i;
    }
  }
  return -1;
}

export function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

const codePointIndex = (s: string, utf16Index: number): number => codePointLength(s.slice(0, utf16Index));
