// Line-oriented I/O for the commands: read lines, process them concurrently
// (so the dynamic batcher can fill batches) and emit results in input order.

import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

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
