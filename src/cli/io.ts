// Line-oriented I/O for the commands: read lines, process them concurrently
// (so the dynamic batcher can fill batches) and emit results in input order.

import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { firstLoneSurrogate } from '../pipeline/unicode.js';

export async function* readLines(input: Readable): AsyncGenerator<string> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) yield line;
}

/**
 * Applies `fn` to every item with at most `concurrency` calls in flight and
 * yields the results in input order.
 */
export async function* mapOrdered<T, R>(source: AsyncIterable<T>, concurrency: number, fn: (item: T, index: number) => Promise<R>): AsyncGenerator<R> {
  const window: Promise<R>[] = [];
  let index = 0;
  for await (const item of source) {
    const p = fn(item, index++);
    p.catch(() => {}); // awaited below, in order; this only stops an early "unhandled rejection"
    window.push(p);
    if (window.length >= concurrency) yield await window.shift()!;
  }
  while (window.length > 0) yield await window.shift()!;
}

/** Writes, waiting for 'drain' when the stream's buffer is full. */
export async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
}

/** A line's error, reported in place of its result. */
export interface LineError {
  readonly id?: unknown;
  readonly error: { readonly code: string; readonly message: string };
}

/**
 * One input line of the text commands: a JSON object with the text under the
 * first of `keys` present and an optional "id" (echoed as given); or the
 * reason it cannot be read.
 */
export function parseTextLine(line: string, keys: readonly string[]): { readonly id: { id?: unknown }; readonly text: string } | LineError {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    return { error: { code: 'INVALID_RECORD', message: 'line is not valid JSON' } };
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    return { error: { code: 'INVALID_RECORD', message: 'line is not a JSON object' } };
  }
  const rec = obj as Record<string, unknown>;
  const id = 'id' in rec ? { id: rec['id'] } : {};
  const text = keys.map((k) => rec[k]).find((v) => v !== undefined && v !== null);
  if (typeof text !== 'string') return { ...id, error: { code: 'INVALID_RECORD', message: `needs a string ${keys.map((k) => JSON.stringify(k)).join(' or ')}` } };
  if (firstLoneSurrogate(text) >= 0) return { ...id, error: { code: 'INVALID_RECORD', message: 'text is not well-formed UTF-16 (lone surrogate)' } };
  return { id, text };
}
