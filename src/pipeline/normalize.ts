// Character normalization (docs/contract.md "Normalization and encoding"):
// one code point in, one code point out, so offsets never move. Shared by the
// vocabulary lookup and the lexicon matcher.

import { WHITESPACE } from './chunk.js';

/**
 * Contract rules 1–3: whitespace → U+0020, full-width ASCII → ASCII, A–Z → a–z.
 * Hot (every character of every record and lexicon term): an unchanged
 * character is returned as it came, without building a new string.
 */
export function normalizeChar(ch: string): string {
  let cp = ch.codePointAt(0)!;
  if (cp <= 0x20 || cp === 0xa0 || cp === 0x3000) return WHITESPACE.has(ch) ? ' ' : ch;
  if (cp >= 0xff01 && cp <= 0xff5e) cp -= 0xfee0;
  else if (cp > 0x5a) return ch;
  if (cp >= 0x41 && cp <= 0x5a) cp += 0x20;
  return String.fromCharCode(cp);
}
