// Paths and expectations for the hand-made table bundle
// (fixtures/make_table_bundle.py): its emissions are E[id] · mask.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256File } from '../../src/model/bundle.js';

export const TABLE_BUNDLE = fileURLToPath(new URL('./fixtures/table-bundle', import.meta.url));

const table = JSON.parse(readFileSync(new URL('./fixtures/table-emissions.json', import.meta.url), 'utf8')) as {
  vocab: string[];
  embedding: number[][];
};
export const TABLE_VOCAB = table.vocab;
export const TABLE_EMBEDDING = table.embedding.map((row) => Float32Array.from(row));

/** Expected emissions [batch, seq, 13] for padded ids and mask (the model multiplies, so −0 where masked). */
export function expectedEmissions(ids: BigInt64Array, mask: BigInt64Array): Float32Array {
  const out = new Float32Array(ids.length * 13);
  ids.forEach((id, k) => {
    const row = TABLE_EMBEDDING[Number(id)]!;
    for (let j = 0; j < 13; j++) out[k * 13 + j] = row[j]! * Number(mask[k]);
  });
  return out;
}

/** A throw-away copy of the table bundle; `edit` may change files (manifest is re-hashed unless told not to). */
export async function bundleCopy(
  edit: (dir: string) => Promise<void> = async () => {},
  rehash = true,
  source: string = TABLE_BUNDLE,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(path.join(tmpdir(), 'cner-bundle-'));
  const dir = path.join(root, 'bundle');
  await cp(source, dir, { recursive: true });
  await edit(dir);
  if (rehash) {
    const manifestPath = path.join(dir, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { files: Record<string, string> };
    for (const name of Object.keys(manifest.files)) {
      manifest.files[name] = await sha256File(path.join(dir, name)).catch(() => manifest.files[name]!);
    }
    await writeFile(manifestPath, JSON.stringify(manifest, null, 2));
  }
  return { dir, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** The Python side's random tiny bundle and the golden cases computed with it. */
export const TINY_BUNDLE = fileURLToPath(new URL('../../fixtures/tiny-bundle', import.meta.url));

export interface GoldenCase {
  readonly text: string;
  readonly chunks: [number, number][];
  readonly input_ids: number[][];
  readonly emissions: number[][][]; // per chunk [seq][13]
  readonly tags: string[][];
  readonly entities: { start: number; end: number; type: string; label: string; text: string; confidence: number }[];
}

export function goldenCases(file = 'golden.json'): GoldenCase[] {
  const url = new URL(`../../fixtures/golden/${file}`, import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { cases: GoldenCase[] }).cases;
}

/** The Python side's random tiny character model that reads lexicon features, and its golden cases. */
export const TINY_LEXICON_BUNDLE = fileURLToPath(new URL('../../fixtures/tiny-lexicon-bundle', import.meta.url));
export const goldenLexiconCases = (): GoldenCase[] => goldenCases('golden-lexicon.json');

/**
 * The Python side's random tiny BERT tagger (transformers BertModel, [CLS]/[SEP]
 * framing inside the graph, lexicon features, float16-stored weights), built
 * like the bge-small-zh taggers, and its golden cases.
 */
export const TINY_BERT_BUNDLE = fileURLToPath(new URL('../../fixtures/tiny-bert-bundle', import.meta.url));
export const goldenBertCases = (): GoldenCase[] => goldenCases('golden-bert.json');

/** Tags every case (concurrently, so the batcher pads short chunks next to long ones) and checks entities and confidences. */
export async function assertGoldenEntities(
  cases: readonly GoldenCase[],
  tag: (text: string) => Promise<readonly { start: number; end: number; code: string; text: string; confidence: number }[]>,
): Promise<void> {
  const all = await Promise.all(cases.map((c) => tag(c.text)));
  cases.forEach((c, k) => {
    assert.deepEqual(
      all[k]!.map((e) => [e.start, e.end, e.code, e.text]),
      c.entities.map((e) => [e.start, e.end, e.type, e.text]),
    );
    all[k]!.forEach((e, i) => assert.ok(Math.abs(e.confidence - c.entities[i]!.confidence) < 1e-3));
  });
}
