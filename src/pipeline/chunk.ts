// Chunking, rule for rule as docs/contract.md "Chunking" and `chunk_text` in
// training/src/cner_train/text.py. Offsets are code points, end exclusive.

export const MAX_CHUNK_LEN = 128;

export interface Chunk {
  readonly start: number;
  readonly end: number; // exclusive
}

const SENTENCE_END = '。';

/** Explicit set: JavaScript's `\s` and Python's `str.isspace` disagree. */
export const WHITESPACE: ReadonlySet<string> = new Set([
  '\u0020',
  '\u0009',
  '\u000A',
  '\u000D',
  '\u000B',
  '\u000C',
  '\u00A0',
  '\u3000',
]);

// Secondary boundaries for over-long sentences, strongest first.
const SECONDARY_TIERS: readonly ReadonlySet<string>[] = [new Set(['；']), new Set(['，']), new Set(['、']), WHITESPACE];

/** Code points of `text` (astral characters stay whole). */
export const codePoints = (text: string): string[] => Array.from(text);

/**
 * Splits a text, given as its code points, into contiguous chunks of at most
 * `maxLen` code points that cover it exactly.
 */
export function chunkCodePoints(chars: readonly string[], maxLen: number = MAX_CHUNK_LEN): Chunk[] {
  if (!Number.isInteger(maxLen) || maxLen < 1) throw new RangeError(`maxLen must be an integer >= 1, got ${maxLen}`);
  const n = chars.length;
  if (n === 0) return [];

  // 1–2: sentences, over-long ones cut at secondary boundaries.
  const pieces: Chunk[] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    if (chars[i] === SENTENCE_END) {
      splitLong(chars, start, i + 1, maxLen, pieces);
      start = i + 1;
    }
  }
  if (start < n) splitLong(chars, start, n, maxLen, pieces);

  // 3: greedy packing so the model sees neighbouring sentences as context.
  const chunks: Chunk[] = [];
  let curStart = pieces[0]!.start;
  let curEnd = pieces[0]!.end;
  for (let k = 1; k < pieces.length; k++) {
    const p = pieces[k]!;
    if (p.end - curStart <= maxLen) {
      curEnd = p.end;
    } else {
      chunks.push({ start: curStart, end: curEnd });
      curStart = p.start;
      curEnd = p.end;
    }
  }
  chunks.push({ start: curStart, end: curEnd });
  return chunks;
}

export const chunkText = (text: string, maxLen: number = MAX_CHUNK_LEN): Chunk[] =>
  chunkCodePoints(codePoints(text), maxLen);

function splitLong(chars: readonly string[], start: number, end: number, maxLen: number, out: Chunk[]): void {
  while (end - start > maxLen) {
    let cut = start + maxLen;
    for (const tier of SECONDARY_TIERS) {
      const found = lastIn(chars, start, start + maxLen, tier);
      if (found >= 0) {
        cut = found + 1;
        break;
      }
    }
    out.push({ start, end: cut });
    start = cut;
  }
  out.push({ start, end });
}

function lastIn(chars: readonly string[], start: number, end: number, set: ReadonlySet<string>): number {
  for (let p = end - 1; p >= start; p--) if (set.has(chars[p]!)) return p;
  return -1;
}
