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
/** Entries of the first-level table: one per code point rank. */
const ROOT_SIZE = 0x110000;

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
  const root = new Int32Array(ROOT_SIZE);
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

/** `lexicon.trie`'s first 8 bytes (format 1). */
export const LEXICON_TRIE_MAGIC = 'CNERTRI1';
const TRIE_HEADER = 20; // magic + uint32 terms, nodes, first-level count

/**
 * The trie as `cner-train` writes it next to lexicon.tsv (`lexicon.trie`,
 * docs/contract.md "Lexicon trie"): the arrays buildTrie would make from the
 * same terms, so loading is a copy instead of parsing and sorting 193 k terms
 * (80 MB of transient heap for the default's lexicon). `inflate` undoes the
 * body's zlib compression (the caller owns node:zlib). The structure is
 * checked, so a walk always ends: every child and next sibling lies after its
 * node, siblings ascend.
 */
export function decodeLexiconTrie(file: Uint8Array, inflate: (body: Uint8Array) => Uint8Array): Either<readonly string[], Lexicon> {
  if (file.length < TRIE_HEADER || new TextDecoder().decode(file.subarray(0, 8)) !== LEXICON_TRIE_MAGIC) {
    return left([`must start with ${LEXICON_TRIE_MAGIC} (a lexicon.trie written by cner-train)`]);
  }
  const header = new DataView(file.buffer, file.byteOffset, TRIE_HEADER);
  const terms = header.getUint32(8, true);
  const nodes = header.getUint32(12, true);
  const first = header.getUint32(16, true);
  let body: Uint8Array;
  try {
    body = inflate(file.subarray(TRIE_HEADER));
  } catch (e) {
    return left([`its body does not inflate: ${e instanceof Error ? e.message : String(e)}`]);
  }
  const expected = 4 * (2 * first + 4 * nodes);
  if (body.length !== expected) return left([`its body holds ${body.length} bytes, the header's counts need ${expected}`]);
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const ints = new Int32Array(expected / 4);
  for (let i = 0; i < ints.length; i++) ints[i] = view.getInt32(4 * i, true);
  const at = (k: number, n: number): Int32Array => ints.subarray(k, k + n);
  const rootKeys = at(0, first);
  const rootNodes = at(first, first);
  const firstChild = at(2 * first, nodes);
  const nextSibling = at(2 * first + nodes, nodes);
  const order = at(2 * first + 2 * nodes, nodes);
  const categories = at(2 * first + 3 * nodes, nodes);
  const errors = checkTrie(rootKeys, rootNodes, firstChild, nextSibling, order, categories);
  if (errors.length > 0) return left(errors);
  const root = new Int32Array(ROOT_SIZE);
  for (let i = 0; i < first; i++) root[rootKeys[i]!] = rootNodes[i]!;
  return right(Object.freeze({ terms, root, firstChild, nextSibling, order, categories }));
}

function checkTrie(
  rootKeys: Int32Array,
  rootNodes: Int32Array,
  firstChild: Int32Array,
  nextSibling: Int32Array,
  order: Int32Array,
  categories: Int32Array,
): string[] {
  const nodes = order.length;
  const errors: string[] = [];
  const bad = (what: string): void => {
    if (errors.length < 10) errors.push(what);
  };
  for (let i = 0; i < rootKeys.length; i++) {
    const key = rootKeys[i]!;
    if (key < 0 || key >= ROOT_SIZE || (i > 0 && key <= rootKeys[i - 1]!)) bad(`first-level key ${i} (${key}) is not an ascending code point rank`);
    const node = rootNodes[i]!;
    if (node <= 0 || node >= nodes || order[node] !== key) bad(`first-level node ${i} (${node}) is not a node of key ${key}`);
  }
  for (let n = 1; n < nodes; n++) {
    const child = firstChild[n]!;
    const sibling = nextSibling[n]!;
    if (child !== 0 && (child <= n || child >= nodes)) bad(`node ${n}: first child ${child} must lie after it`);
    if (sibling !== 0 && (sibling <= n || sibling >= nodes || order[sibling]! <= order[n]!)) bad(`node ${n}: next sibling ${sibling} must lie after it, in ascending order`);
    if (order[n]! < 0 || order[n]! >= ROOT_SIZE) bad(`node ${n}: code point rank ${order[n]} out of range`);
    if (categories[n]! >>> LEXICON_CATEGORIES.length !== 0) bad(`node ${n}: category bits ${categories[n]} name no list`);
  }
  return errors;
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
