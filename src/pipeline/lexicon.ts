// Lexicon match features, rule for rule as docs/contract.md "Lexicon
// features" and `Lexicon.features` in training/src/cner_train/lexicon.py: for
// each of 8 word lists, which characters of a chunk begin, continue or end an
// occurrence of one of its terms (2–40 characters, every occurrence, overlaps
// included), matched on the normalized characters.

import { type Either, left, right } from 'fp-ts/lib/Either.js';
import type { Chunk } from './chunk.js';
import { normalizeChar } from './normalize.js';

/** The lists, in feature order: the six entity types, mixed checks (CHK), symptoms (SYM). */
export const LEXICON_CATEGORIES = ['DIS', 'EXA', 'TES', 'OPE', 'DRU', 'ANA', 'CHK', 'SYM'] as const;
/** Per category: begin, inside, end; feature index = 3 × category + position. */
export const LEXICON_FEATURES = LEXICON_CATEGORIES.length * 3; // 24
const MIN_TERM = 2;
const MAX_TERM = 40;

/** The term normalized character by character (a new string only when something changes). */
function normalize(term: string): string {
  let out = '';
  let changed = false;
  for (const ch of term) {
    const n = normalizeChar(ch);
    changed ||= n !== ch;
    out += n;
  }
  return changed ? out : term;
}

/**
 * A code point's rank in UTF-16 code-unit order, in [0, 0x110000): astral
 * characters (lead units D800–DBFF) sort before U+E000–U+FFFF. The terms are
 * sorted with the native string sort, so sibling lists ascend in this order.
 * A lone surrogate (never in a term read from UTF-8) is −1 and matches nothing.
 */
function unitOrder(cp: number): number {
  if (cp < 0xd800) return cp;
  if (cp <= 0xdfff) return -1;
  return cp >= 0x10000 ? cp - 0x2800 : cp + 0xff800;
}

/**
 * The terms as a trie over normalized code points, in typed arrays: the
 * first character through a table indexed by code point, deeper ones through
 * sorted sibling lists (few children below the first level). A string-keyed
 * Map of every prefix cost 1 ms per chunk (hashing fresh cons-strings, 660 k
 * keys) and 12 s to load; this is about 60× faster.
 */
export interface Lexicon {
  readonly terms: number;
  /** [0x110000] first code point (as its unitOrder rank) → node, or 0 (node 0 is the root). */
  readonly root: Int32Array;
  readonly firstChild: Int32Array; // [nodes] 0 = none
  readonly nextSibling: Int32Array; // [nodes] 0 = none; siblings ascend by `order`
  readonly order: Int32Array; // [nodes] the node's code point as its unitOrder rank
  /** [nodes] category bits of the term ending here (bit c: list c), 0 if none. */
  readonly categories: Int32Array;
}

/**
 * `lexicon.tsv`: one `CATEGORY<TAB>term` per line. Terms are normalized here
 * too (the file holds them normalized already); those outside 2–40 characters
 * are skipped, as the training package skips them.
 */
export function parseLexicon(text: string): Either<readonly string[], Lexicon> {
  const errors: string[] = [];
  const masks = new Map<string, number>();
  const categories = new Map<string, number>(LEXICON_CATEGORIES.map((c, i) => [c, i]));
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const tab = line.indexOf('\t');
    const category = categories.get(tab < 0 ? line : line.slice(0, tab));
    if (tab < 0 || category === undefined) {
      if (errors.length < 10) errors.push(`line ${i + 1} must be CATEGORY<TAB>term with CATEGORY one of ${LEXICON_CATEGORIES.join(', ')}`);
      return;
    }
    const term = normalize(line.slice(tab + 1).trim());
    const length = codePointLength(term);
    if (length < MIN_TERM || length > MAX_TERM) return;
    masks.set(term, (masks.get(term) ?? 0) | (1 << category));
  });
  if (errors.length > 0) return left(errors);
  return right(buildTrie(masks));
}

function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++, n++) if (s.codePointAt(i)! > 0xffff) i++;
  return n;
}

function buildTrie(masks: ReadonlyMap<string, number>): Lexicon {
  const terms = [...masks.keys()].sort(); // UTF-16 order: terms sharing a prefix are contiguous
  let capacity = 1;
  for (const t of terms) capacity += t.length;
  const firstChild = new Int32Array(capacity);
  const lastChild = new Int32Array(capacity);
  const nextSibling = new Int32Array(capacity);
  const order = new Int32Array(capacity);
  const categories = new Int32Array(capacity);
  const root = new Int32Array(0x110000);
  let nodes = 1;
  for (const term of terms) {
    let node = 0;
    for (let i = 0; i < term.length; i++) {
      const cp = term.codePointAt(i)!;
      if (cp > 0xffff) i++;
      const key = unitOrder(cp);
      // In sorted order a child that exists is the last one added to its parent.
      let child = node === 0 ? root[key]! : lastChild[node]!;
      if (node !== 0 && (child === 0 || order[child] !== key)) child = 0;
      if (child === 0) {
        child = nodes++;
        order[child] = key;
        if (node === 0) root[key] = child;
        else if (firstChild[node] === 0) firstChild[node] = child;
        else nextSibling[lastChild[node]!] = child;
        lastChild[node] = child;
      }
      node = child;
    }
    categories[node] = masks.get(term)!;
  }
  return Object.freeze({
    terms: terms.length,
    root,
    firstChild: firstChild.slice(0, nodes),
    nextSibling: nextSibling.slice(0, nodes),
    order: order.slice(0, nodes),
    categories: categories.slice(0, nodes),
  });
}

/** Features of `chars[chunk.start..chunk.end)`: [length, LEXICON_FEATURES], 0 or 1. */
export function lexiconFeatures(chars: readonly string[], chunk: Chunk, lexicon: Lexicon): Uint8Array {
  const n = chunk.end - chunk.start;
  const out = new Uint8Array(n * LEXICON_FEATURES);
  const cps = new Int32Array(n);
  for (let i = 0; i < n; i++) cps[i] = unitOrder(normalizeChar(chars[chunk.start + i]!).codePointAt(0)!);
  const { root, firstChild, nextSibling, order, categories } = lexicon;
  for (let s = 0; s < n; s++) {
    let node = cps[s]! < 0 ? 0 : root[cps[s]!]!;
    for (let e = s + 2; node !== 0 && e <= n; e++) {
      // node: the trie node of cps[s..e-1); step to its child for cps[e-1]
      const c = cps[e - 1]!;
      let child = firstChild[node]!;
      while (child !== 0 && order[child]! < c) child = nextSibling[child]!;
      node = child !== 0 && order[child] === c ? child : 0;
      if (node !== 0 && categories[node] !== 0) mark(out, s, e, categories[node]!);
    }
  }
  return out;
}

function mark(out: Uint8Array, s: number, e: number, categories: number): void {
  const F = LEXICON_FEATURES;
  for (let c = 0; c < LEXICON_CATEGORIES.length; c++) {
    if ((categories & (1 << c)) === 0) continue;
    out[s * F + 3 * c] = 1; // begin
    for (let t = s + 1; t < e - 1; t++) out[t * F + 3 * c + 1] = 1; // inside
    out[(e - 1) * F + 3 * c + 2] = 1; // end
  }
}
