// Cross-language agreement: fixtures/golden/golden.json and golden-lexicon.json are
// produced by the Python package (cner-train golden); every field must come out the same here.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isLeft } from 'fp-ts/lib/Either.js';
import { chunkText, codePoints } from '../../src/pipeline/chunk.js';
import { type Crf, constrain, parseCrf } from '../../src/pipeline/crf.js';
import { type Vocab, encodeChunk, parseVocab } from '../../src/pipeline/encode.js';
import { NUM_TAGS, TAGS } from '../../src/pipeline/labels.js';
import { LEXICON_FEATURES, type Lexicon, lexiconFeatures, parseLexicon } from '../../src/pipeline/lexicon.js';
import { CrfPosterior } from '../../src/pipeline/marginals.js';
import { spansFromTags, toEntity } from '../../src/pipeline/spans.js';
import { type TaggingModel, tagRecord } from '../../src/pipeline/tag.js';
import { ViterbiDecoder } from '../../src/pipeline/viterbi.js';

interface GoldenEntity {
  start: number;
  end: number;
  type: string;
  label: string;
  text: string;
  confidence: number;
}

interface GoldenCase {
  text: string;
  chunks: [number, number][];
  input_ids: number[][];
  emissions: number[][][]; // per chunk [seq][13]
  tags: string[][];
  entities: GoldenEntity[];
}

const fixture = (p: string): URL => new URL(`../../fixtures/${p}`, import.meta.url);
const golden = JSON.parse(readFileSync(fixture('golden/golden.json'), 'utf8')) as { bundle: string; cases: GoldenCase[] };

const vocab: Vocab = (() => {
  const v = parseVocab(readFileSync(fixture(`${golden.bundle}/vocab.txt`), 'utf8'));
  if (isLeft(v)) throw new Error(v.left.join('\n'));
  return v.right;
})();
const crf: Crf = (() => {
  const c = parseCrf(JSON.parse(readFileSync(fixture(`${golden.bundle}/crf.json`), 'utf8')));
  if (isLeft(c)) throw new Error(c.left.join('\n'));
  return c.right;
})();

const emissionsOf = (chunk: number[][]): Float32Array => Float32Array.from(chunk.flat()); // [seq, 13]
const label = (c: GoldenCase): string => JSON.stringify(c.text.length > 30 ? `${c.text.slice(0, 30)}…` : c.text);

describe('golden fixtures (Python reference)', () => {
  it('has cases', () => assert.ok(golden.cases.length > 0));

  for (const c of golden.cases) {
    describe(label(c), () => {
      it('chunks identically', () => {
        assert.deepEqual(
          chunkText(c.text).map((k) => [k.start, k.end]),
          c.chunks,
        );
      });

      it('encodes identical ids', () => {
        const chars = codePoints(c.text);
        assert.deepEqual(
          c.chunks.map(([start, end]) => Array.from(encodeChunk(chars, { start, end }, vocab))),
          c.input_ids,
        );
      });

      it('decodes identical Viterbi tags from the same emissions', () => {
        const viterbi = new ViterbiDecoder(constrain(crf));
        c.emissions.forEach((em, k) => {
          assert.equal(em.length * NUM_TAGS, emissionsOf(em).length);
          const tags = Array.from(viterbi.decode(emissionsOf(em), em.length), (t) => TAGS[t]);
          assert.deepEqual(tags, c.tags[k], `chunk ${k}`);
        });
      });

      it('finds the same entities with confidences within 1e-6', () => {
        const chars = codePoints(c.text);
        const constrained = constrain(crf);
        const viterbi = new ViterbiDecoder(constrained);
        const posterior = new CrfPosterior(constrained);
        const got = c.chunks.flatMap(([start], k) => {
          const em = emissionsOf(c.emissions[k]!);
          const n = c.emissions[k]!.length;
          posterior.compute(em, n);
          return spansFromTags(viterbi.decode(em, n)).map((s) => toEntity(chars, start, s, posterior.spanConfidence(s.start, s.end, s.typeIndex)));
        });
        assert.deepEqual(
          got.map((e) => ({ start: e.start, end: e.end, type: e.code, label: e.label, text: e.text })),
          c.entities.map((e) => ({ start: e.start, end: e.end, type: e.type, label: e.label, text: e.text })),
        );
        got.forEach((e, i) => {
          const want = c.entities[i]!.confidence;
          assert.ok(Math.abs(e.confidence - want) <= 1e-6, `${e.text}: ${e.confidence} vs ${want}`);
        });
      });

      it('gives the same entities through tagRecord', async () => {
        const model: TaggingModel = {
          version: 'golden',
          vocab,
          crf,
          inferEach(sequences) {
            assert.deepEqual(sequences.map((s) => Array.from(s)), c.input_ids);
            return c.emissions.map(async (em) => emissionsOf(em));
          },
        };
        const got = await tagRecord(c.text, model);
        assert.deepEqual(
          got.map((e) => [e.start, e.end, e.code, e.text]),
          c.entities.map((e) => [e.start, e.end, e.type, e.text]),
        );
      });
    });
  }
});

// The lexicon bundle's fixtures (fixtures/golden/golden-lexicon.json): the same
// features from the same word list, and through a real ONNX session the same
// entities (tests in test/model/model.test.ts run the bundle itself).
interface GoldenLexiconCase extends GoldenCase {
  lexicon_features: [number, number][][]; // per chunk, the [position, feature] pairs that are 1
}

const goldenLexicon = JSON.parse(readFileSync(fixture('golden/golden-lexicon.json'), 'utf8')) as { bundle: string; cases: GoldenLexiconCase[] };
const lexicon: Lexicon = (() => {
  const l = parseLexicon(readFileSync(fixture(`${goldenLexicon.bundle}/lexicon.tsv`), 'utf8'));
  if (isLeft(l)) throw new Error(l.left.join('\n'));
  return l.right;
})();

describe('golden lexicon features (Python reference)', () => {
  it('has cases with features', () => assert.ok(goldenLexicon.cases.some((c) => c.lexicon_features.some((f) => f.length > 0))));

  for (const c of goldenLexicon.cases) {
    it(`computes identical features for ${label(c)}`, () => {
      const chars = codePoints(c.text);
      c.chunks.forEach(([start, end], k) => {
        const f = lexiconFeatures(chars, { start, end }, lexicon);
        const ones: [number, number][] = [];
        f.forEach((v, i) => v === 1 && ones.push([Math.floor(i / LEXICON_FEATURES), i % LEXICON_FEATURES]));
        assert.deepEqual(ones, c.lexicon_features[k], `chunk ${k}`);
      });
    });
  }
});
