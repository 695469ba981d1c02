// Character normalization (docs/contract.md "Normalization and encoding"):
// one code point in, one code point out, so offsets never move. Shared by the
// vocabulary lookup and the lexicon matcher.

import { WHITESPACE } from './chunk.js';

/** Contract rules 1–3: whitespace → U+0020, full-width ASCII → ASCII, A–Z → a–z. */
export function normalizeChar(ch: string): string {
  if (WHITESPACE.has(ch)) return ' ';
  let cp = ch.codePointAt(0)!;
  if (cp >= 0xff01 && cp <= 0xff5e) cp -= 0xfee0;
  if (cp >= 0x41 && cp <= 0x5a) cp += 0x20;
  return String.fromCodePoint(cp);
}
