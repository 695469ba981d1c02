// Variants of fixtures/tiny-bundle for the model-version tests: another
// version name (another archive sha256), another label set, ONNX that does not
// load, ONNX with other input names. manifest.json is re-hashed so that only
// the intended check fails.

import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256File } from '../../src/model/bundle.js';

export const TINY = fileURLToPath(new URL('../../fixtures/tiny-bundle', import.meta.url));

export type Variant = 'ok' | 'labels' | 'onnx' | 'inputs';

export async function tinyVariant(version: string, variant: Variant = 'ok', into?: string): Promise<string> {
  const dir = into ?? (await mkdtemp(path.join(tmpdir(), `cner-variant-${version}-`)));
  await cp(TINY, dir, { recursive: true });
  const manifestPath = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { version: string; files: Record<string, string>; labels?: string[] };
  manifest.version = version;
  if (variant === 'labels') {
    const labels = JSON.parse(await readFile(path.join(dir, 'labels.json'), 'utf8')) as string[];
    labels[1] = 'B-SYM';
    labels[2] = 'I-SYM';
    await writeFile(path.join(dir, 'labels.json'), JSON.stringify(labels));
  }
  if (variant === 'onnx') {
    const onnx = await readFile(path.join(dir, 'model.onnx'));
    await writeFile(path.join(dir, 'model.onnx'), onnx.subarray(0, Math.floor(onnx.length / 3)));
  }
  if (variant === 'inputs') {
    // Same length, so the protobuf stays valid: the graph loads but its input is named input_idz.
    const onnx = await readFile(path.join(dir, 'model.onnx'));
    const from = Buffer.from('input_ids');
    const to = Buffer.from('input_idz');
    for (let i = onnx.indexOf(from); i >= 0; i = onnx.indexOf(from, i + 1)) to.copy(onnx, i);
    await writeFile(path.join(dir, 'model.onnx'), onnx);
  }
  for (const name of Object.keys(manifest.files)) manifest.files[name] = await sha256File(path.join(dir, name));
  await writeFile(manifestPath, JSON.stringify(manifest, null, 2));
  return dir;
}

export const TINY_LINKER = fileURLToPath(new URL('../../fixtures/tiny-linker-bundle', import.meta.url));
export const TINY_RERANKED_LINKER = fileURLToPath(new URL('../../fixtures/tiny-reranked-linker-bundle', import.meta.url));

/**
 * A tiny-bundle variant that carries `linker` in linker/, laid out as
 * `cner-train link-attach` writes it (training/tests/test_link_attach.py; the
 * Python-attached bundle is opened in test/model/model.test.ts): the linker's
 * files and manifest under linker/, listed in manifest.json with their sha256,
 * and a `linker` entry.
 */
export async function withLinker(version: string, linker = TINY_LINKER, into?: string): Promise<string> {
  return attachLinker(await tinyVariant(version, 'ok', into), linker);
}

/** `dir` (a model bundle that may be changed) made to carry `linker`, as withLinker; returns `dir`. */
export async function attachLinker(dir: string, linker = TINY_LINKER): Promise<string> {
  await cp(linker, path.join(dir, 'linker'), { recursive: true });
  const manifestPath = path.join(dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { files: Record<string, string>; linker?: unknown };
  const own = JSON.parse(await readFile(path.join(linker, 'manifest.json'), 'utf8')) as { name: string; version: string; system: string; metrics: unknown; files: Record<string, string> };
  for (const name of [...Object.keys(own.files), 'manifest.json']) manifest.files[`linker/${name}`] = await sha256File(path.join(dir, 'linker', name));
  manifest.linker = { name: own.name, version: own.version, system: own.system, metrics: own.metrics };
  await writeFile(manifestPath, JSON.stringify(manifest, null, 2));
  return dir;
}
