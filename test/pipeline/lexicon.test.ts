import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { deflateSync, inflateSync } from 'node:zlib';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isLeft, isRight } from 'fp-ts/lib/Either.js';
import { LEXICON_CATEGORIES, LEXICON_FEATURES, type Lexicon, decodeLexiconTrie, lexiconFeatures, parseLexicon } from '../../src/pipeline/lexicon.js';

const F = LEXICON_FEATURES;
const cat = (code: (typeof LEXICON_CATEGORIES)[number]): number => LEXICON_CATEGORIES.indexOf(code);

function lexicon(tsv: string): Lexicon {
  const parsed = parseLexicon(tsv);
  if (isLeft(parsed)) throw new Error(parsed.left.join('; '));
  return parsed.right;
}

function features(text: string, lex: Lexicon): Uint8Array {
  const chars = Array.from(text);
  return lexiconFeatures(chars, { start: 0, end: chars.length }, lex);
}

/** The (begin, inside, end) bits of category c at position t. */
const at = (f: Uint8Array, t: number, c: number): number[] => Array.from(f.subarray(t * F + 3 * c, t * F + 3 * c + 3));

describe('lexicon features', () => {
  it('marks begin, inside and end of every occurrence, per category (the Python test case)', () => {
    const lex = lexicon('DIS\t胃癌\nDIS\t胃癌根治\nANA\t胃\nANA\t腹腔\nDRU\t奥沙利铂\n');
    const f = features('胃癌根治术后予奥沙利铂', lex);
    assert.equal(f.length, 11 * F);
    assert.deepEqual([0, 1, 2, 3, 4].map((t) => at(f, t, cat('DIS'))), [[1, 0, 0], [0, 1, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0]]);
    assert.deepEqual(at(f, 0, cat('ANA')), [0, 0, 0], 'one-character terms are never matched');
    assert.deepEqual([7, 8, 9, 10].map((t) => at(f, t, cat('DRU'))), [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]);
    assert.equal(f.reduce((a, b) => a + b, 0), 9);
    assert.equal(lex.terms, 4);
  });

  it('normalizes terms and text alike; one term may be in several lists', () => {
    const lex = lexicon('EXA\tＣＴ检查\nCHK\tct检查\n');
    assert.equal(lex.terms, 1);
    const f = features('行CT检查', lex);
    assert.deepEqual(at(f, 1, cat('EXA')), [1, 0, 0]);
    assert.deepEqual(at(f, 1, cat('CHK')), [1, 0, 0]);
    assert.deepEqual(at(f, 4, cat('EXA')), [0, 0, 1]);
  });

  it('finds a term whose sibling in the trie is an astral character (code-unit vs code-point order)', () => {
    const lex = lexicon('DIS\t胃𠀀\nANA\t胃\ue000\n');
    assert.deepEqual(at(features('胃\ue000', lex), 1, cat('ANA')), [0, 0, 1]);
    assert.deepEqual(at(features('胃𠀀', lex), 1, cat('DIS')), [0, 0, 1]);
  });

  it('matches inside the chunk only, at chunk offsets', () => {
    const lex = lexicon('DIS\t肺炎\n');
    const chars = Array.from('肺炎。肺炎');
    const f = lexiconFeatures(chars, { start: 1, end: 5 }, lex); // 炎。肺炎: the first 肺炎 is cut
    assert.deepEqual([0, 1, 2, 3].map((t) => at(f, t, cat('DIS'))), [[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]]);
  });

  it('refuses unknown categories and lines without a tab, with line numbers', () => {
    const bad = parseLexicon('DIS\t肺炎\nXYZ\t术后\nno tab\n');
    assert.ok(isLeft(bad));
    assert.match(bad.left[0]!, /^line 2 /);
    assert.match(bad.left[1]!, /^line 3 /);
    assert.ok(isRight(parseLexicon('')));
  });

  it('agrees with a brute-force scan of every term at every offset', () => {
    // Astral characters and U+E000–U+FFFF sort differently by code unit and by code point: both are here.
    const alphabet = ['胃', '癌', '肝', '肺', '左', '叶', '术', '𠀀', '𝔸', '\ue000', 'ｚ', 'Z', 'z'];
    const term = fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 5 }).map((cs) => cs.join(''));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...LEXICON_CATEGORIES), term), { maxLength: 40 }),
        fc.array(fc.constantFrom(...alphabet), { maxLength: 40 }).map((cs) => cs.join('')),
        (entries, text) => {
          const lex = lexicon(entries.map(([c, t]) => `${c}\t${t}\n`).join(''));
          const norm = (s: string): string[] => Array.from(s, (ch) => (ch === 'ｚ' || ch === 'Z' ? 'z' : ch));
          const chars = norm(text);
          const want = new Uint8Array(chars.length * F);
          for (const [c, t] of entries) {
            const tc = norm(t);
            if (tc.length < 2) continue;
            for (let s = 0; s + tc.length <= chars.length; s++) {
              if (!tc.every((ch, k) => chars[s + k] === ch)) continue;
              const ci = cat(c);
              want[s * F + 3 * ci] = 1;
              for (let k = s + 1; k < s + tc.length - 1; k++) want[k * F + 3 * ci + 1] = 1;
              want[(s + tc.length - 1) * F + 3 * ci + 2] = 1;
            }
          }
          assert.deepEqual(features(text, lex), want);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('lexicon.trie (written by cner-train)', () => {
  const read = (bundle: string): { tsv: string; trie: Buffer } => ({
    tsv: readFileSync(new URL(`../../${bundle}/lexicon.tsv`, import.meta.url), 'utf8'),
    trie: readFileSync(new URL(`../../${bundle}/lexicon.trie`, import.meta.url)),
  });
  const decode = (trie: Uint8Array): Lexicon => {
    const d = decodeLexiconTrie(trie, inflateSync);
    if (isLeft(d)) throw new Error(d.left.join('; '));
    return d.right;
  };

  for (const bundle of ['models/default', 'fixtures/tiny-lexicon-bundle']) {
    it(`${bundle}: the Python-written trie is the one parseLexicon builds from lexicon.tsv, array for array`, () => {
      const { tsv, trie } = read(bundle);
      const built = lexicon(tsv);
      const loaded = decode(trie);
      assert.equal(loaded.terms, built.terms);
      for (const k of ['root', 'firstChild', 'nextSibling', 'order', 'categories'] as const) {
        assert.ok(Buffer.from(loaded[k].buffer, loaded[k].byteOffset, loaded[k].byteLength).equals(Buffer.from(built[k].buffer, built[k].byteOffset, built[k].byteLength)), k);
      }
    });
  }

  /** The default's trie with its body (int32 words) changed by `edit`, re-deflated. */
  const edited = (edit: (words: Int32Array, header: DataView) => void): Buffer => {
    const { trie } = read('models/default');
    const head = Buffer.from(trie.subarray(0, 20));
    const body = inflateSync(trie.subarray(20));
    const words = new Int32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length));
    edit(words, new DataView(head.buffer, head.byteOffset, 20));
    return Buffer.concat([head, deflateSync(Buffer.from(words.buffer))]);
  };
  const refused = (file: Uint8Array, pattern: RegExp): void => {
    const d = decodeLexiconTrie(file, inflateSync);
    assert.ok(isLeft(d), 'refused');
    assert.match(d.left.join('\n'), pattern);
  };

  it('refuses what is not a trie, a body of the wrong size, and a structure a walk could loop in', () => {
    refused(Buffer.from('DIS\t胃癌\n'), /must start with CNERTRI1/);
    refused(Buffer.concat([read('models/default').trie.subarray(0, 20), Buffer.from('not zlib')]), /does not inflate/);
    refused(edited((_, h) => h.setUint32(12, h.getUint32(12, true) + 1, true)), /the header's counts need/);
    const { trie } = read('models/default');
    const first = new DataView(trie.buffer, trie.byteOffset).getUint32(16, true);
    // node 1's first child pointing back at node 1; first-level keys out of order
    refused(edited((w) => (w[2 * first + 1] = 1)), /node 1: first child 1 must lie after it/);
    refused(edited((w) => (w[1] = w[0]!)), /first-level key 1 \(\d+\) is not an ascending/);
    assert.ok(isRight(decodeLexiconTrie(edited(() => undefined), inflateSync)), 'the unedited round trip loads');
  });
});
