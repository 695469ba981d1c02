// Loading a model bundle directory (docs/contract.md "Model bundle"): every
// file in manifest.files is checked against its sha256 before anything is
// parsed, then all files are validated and every problem is reported at once.
// A bundle may carry its ICD-10 linker in `linker/` (a complete linker bundle,
// docs/contract.md): the manifest then has a `linker` entry and lists the
// linker's files as `linker/<file>`, so they are checked like the others.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { inflateSync } from 'node:zlib';
import { isLeft } from 'fp-ts/lib/Either.js';
import { MAX_CHUNK_LEN } from '../pipeline/chunk.js';
import { type Crf, parseCrf } from '../pipeline/crf.js';
import { type Vocab, parseVocab } from '../pipeline/encode.js';
import { CnerError } from '../errors.js';
import { TAGS } from '../pipeline/labels.js';
import { LEXICON_FEATURES, type Lexicon, decodeLexiconTrie, parseLexicon } from '../pipeline/lexicon.js';

export interface BundleManifest {
  readonly name: string;
  readonly version: string;
  readonly created: string | null;
  readonly trainingDataSha256: string | null;
  readonly gitCommit: string | null;
  readonly files: Readonly<Record<string, string>>;
  readonly metrics: Readonly<Record<string, unknown>>;
  /** The linker the bundle carries in `linker/` (`cner-train link-attach`); null: none. */
  readonly linker: LinkerEntry | null;
}

/** A tagger manifest's `linker` entry: what its `linker/` folder holds, from the linker's own manifest. */
export interface LinkerEntry {
  readonly name: string;
  readonly version: string;
  readonly system: string;
  readonly metrics: Readonly<Record<string, unknown>>;
}

/** The subfolder of a model bundle that holds its linker bundle. */
export const LINKER_SUBDIR = 'linker';

export interface ModelBundle {
  readonly dir: string;
  readonly modelPath: string;
  readonly manifest: BundleManifest;
  /** The version stamped on every event (manifest.version). */
  readonly version: string;
  readonly labels: readonly string[];
  readonly vocab: Vocab;
  readonly crf: Crf;
  /** The word lists of a model that reads lexicon features (config.json inputs name lexicon_features); else null. */
  readonly lexicon: Lexicon | null;
  readonly config: Readonly<Record<string, unknown>>;
  /** The directory of the linker bundle it carries (`<dir>/linker`), or null. */
  readonly linkerDir: string | null;
}

export const BUNDLE_FILES = ['model.onnx', 'crf.json', 'labels.json', 'vocab.txt', 'config.json'] as const;

const SHA256_HEX = /^[0-9a-f]{64}$/;

export async function loadBundle(dirArg: string): Promise<ModelBundle> {
  const { dir, manifest } = await openBundleDir(dirArg, BUNDLE_FILES);

  const errors: string[] = [];
  const labels = decodeLabels(await readJson(dir, 'labels.json'), errors);
  const crf = parseCrf(await readJson(dir, 'crf.json'), TAGS.length);
  if (isLeft(crf)) errors.push(...crf.left.map((e) => `crf.json: ${e}`));
  const vocab = parseVocab(await readText(dir, 'vocab.txt'));
  if (isLeft(vocab)) errors.push(...vocab.left.map((e) => `vocab.txt: ${e}`));
  const config = decodeConfig(await readJson(dir, 'config.json'), errors);
  let lexicon: Lexicon | null = null;
  if (readsLexicon(config)) {
    if (!(LEXICON_FILE in manifest.files)) errors.push(`manifest.json: files must list ${LEXICON_FILE} (config.json inputs name lexicon_features)`);
    else {
      // The precomputed trie when the bundle has one (cner-train writes it since 2026-12); else built from the TSV.
      const [file, parsed] =
        LEXICON_TRIE_FILE in manifest.files
          ? [LEXICON_TRIE_FILE, decodeLexiconTrie(await readBytes(dir, LEXICON_TRIE_FILE), (body) => inflateSync(body))]
          : [LEXICON_FILE, parseLexicon(await readText(dir, LEXICON_FILE))];
      if (isLeft(parsed)) errors.push(...parsed.left.map((e) => `${file}: ${e}`));
      else lexicon = parsed.right;
    }
  }

  if (errors.length > 0 || isLeft(crf) || isLeft(vocab)) {
    throw new CnerError('BUNDLE_INVALID', `model bundle ${dir} is invalid:\n- ${errors.join('\n- ')}`, { context: { dir, errors } });
  }
  return Object.freeze({
    dir,
    modelPath: path.join(dir, 'model.onnx'),
    manifest,
    version: manifest.version,
    labels,
    vocab: vocab.right,
    crf: crf.right,
    lexicon,
    config,
    linkerDir: manifest.linker === null ? null : path.join(dir, LINKER_SUBDIR),
  });
}

/**
 * A bundle directory's manifest, decoded, with every file it lists checked
 * against its sha256 before anything else is read. `required`: the files the
 * reader of this kind of bundle needs, which the manifest must list.
 */
export async function openBundleDir(dirArg: string, required: readonly string[]): Promise<{ readonly dir: string; readonly manifest: BundleManifest }> {
  const dir = path.resolve(dirArg);
  const dirStat = await stat(dir).catch(() => undefined);
  if (dirStat === undefined || !dirStat.isDirectory()) {
    throw new CnerError('BUNDLE_NOT_FOUND', `model bundle directory ${dir} does not exist`, { context: { dir } });
  }
  const manifest = decodeManifest(await readJson(dir, 'manifest.json'), dir, required);
  await verifyChecksums(dir, manifest.files);
  return { dir, manifest };
}

/** Streams the file through sha256 (model.onnx can be hundreds of MB). */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function verifyChecksums(dir: string, files: Readonly<Record<string, string>>): Promise<void> {
  for (const [name, expected] of Object.entries(files)) {
    const file = path.join(dir, name);
    const actual = await sha256File(file).catch((cause: unknown) => {
      throw new CnerError('BUNDLE_NOT_FOUND', `${name}, listed in manifest.json, cannot be read in ${dir}`, { cause, context: { dir, file: name } });
    });
    if (actual !== expected) {
      throw new CnerError('BUNDLE_CHECKSUM_MISMATCH', `${name} in ${dir} has sha256 ${actual}, manifest.json says ${expected}`, {
        context: { dir, file: name, expected, actual },
      });
    }
  }
}

function decodeManifest(json: unknown, dir: string, required: readonly string[]): BundleManifest {
  const errors: string[] = [];
  const obj = isRecord(json) ? json : {};
  if (!isRecord(json)) errors.push('must be a JSON object');
  // Required strings must be non-empty; optional ones may be absent, null or "" (all read as null).
  const str = (key: string, required: boolean): string | null => {
    const v = obj[key];
    if (typeof v === 'string' && v.length > 0) return v;
    if (required) errors.push(`${key} must be a non-empty string`);
    else if (v !== undefined && v !== null && typeof v !== 'string') errors.push(`${key} must be a string or null`);
    return null;
  };
  const name = str('name', true);
  const version = str('version', true);
  const created = str('created', false);
  const trainingDataSha256 = str('training_data_sha256', false);
  const gitCommit = str('git_commit', false);
  const files: Record<string, string> = {};
  const rawFiles = obj['files'];
  if (!isRecord(rawFiles)) {
    errors.push('files must be an object of file name → sha256 hex');
  } else {
    for (const [file, sum] of Object.entries(rawFiles)) {
      if (!isInsideBundle(file)) errors.push(`files: ${JSON.stringify(file)} must be a relative path inside the bundle`);
      else if (typeof sum !== 'string' || !SHA256_HEX.test(sum)) errors.push(`files.${file} must be 64 lowercase hex digits`);
      else files[file] = sum;
    }
    // Every file the processor reads must be covered, or a swapped file would go unnoticed.
    for (const file of required) if (!(file in rawFiles)) errors.push(`files must list ${file}`);
  }
  const metrics = isRecord(obj['metrics']) ? obj['metrics'] : {};
  const linker = decodeLinkerEntry(obj['linker'], files, errors);
  if (errors.length > 0) {
    throw new CnerError('BUNDLE_INVALID', `manifest.json in ${dir} is invalid:\n- ${errors.join('\n- ')}`, { context: { dir, errors } });
  }
  return Object.freeze({
    name: name!,
    version: version!,
    created,
    trainingDataSha256,
    gitCommit,
    files: Object.freeze(files),
    metrics: Object.freeze({ ...metrics }),
    linker,
  });
}

/**
 * The `linker` entry: absent or null for a bundle without a linker. With one,
 * `files` must list `linker/manifest.json` (the linker's own manifest, which
 * lists and hashes the rest; the opener checks that the tagger's manifest
 * lists each of them with the same sha256); `linker/` files without the entry
 * are an error, so a linker is never half there.
 */
function decodeLinkerEntry(raw: unknown, files: Readonly<Record<string, string>>, errors: string[]): LinkerEntry | null {
  const listed = Object.keys(files).filter((f) => f.startsWith(`${LINKER_SUBDIR}/`));
  if (raw === undefined || raw === null) {
    if (listed.length > 0) errors.push(`files lists ${listed.join(', ')} and there is no "linker" entry`);
    return null;
  }
  if (!isRecord(raw)) {
    errors.push('linker must be an object {name, version, system, metrics} or null');
    return null;
  }
  const text = (key: string): string => {
    const v = raw[key];
    if (typeof v !== 'string' || v.length === 0) errors.push(`linker.${key} must be a non-empty string`);
    return typeof v === 'string' ? v : '';
  };
  const entry = { name: text('name'), version: text('version'), system: text('system'), metrics: Object.freeze(isRecord(raw['metrics']) ? { ...raw['metrics'] } : {}) };
  if (!(`${LINKER_SUBDIR}/manifest.json` in files)) errors.push(`files must list ${LINKER_SUBDIR}/manifest.json (the bundle has a "linker" entry)`);
  for (const f of listed) {
    if (f.split('/').length !== 2) errors.push(`files: ${JSON.stringify(f)} must be a file directly in ${LINKER_SUBDIR}/`);
  }
  return Object.freeze(entry);
}

function decodeLabels(json: unknown, errors: string[]): readonly string[] {
  if (!Array.isArray(json) || json.some((t) => typeof t !== 'string')) {
    errors.push('labels.json must be a JSON array of tag names');
    return [];
  }
  const labels = json as string[];
  if (labels.length !== TAGS.length || labels.some((t, i) => t !== TAGS[i])) {
    errors.push(`labels.json must be exactly ${JSON.stringify(TAGS)} (the contract's order), found ${JSON.stringify(labels)}`);
  }
  return Object.freeze([...labels]);
}

/** The settings the TypeScript side hard-codes must agree with the bundle's. */
function decodeConfig(json: unknown, errors: string[]): Readonly<Record<string, unknown>> {
  if (!isRecord(json)) {
    errors.push('config.json must be a JSON object');
    return {};
  }
  const expect = (key: string, expected: unknown): void => {
    if (JSON.stringify(json[key]) !== JSON.stringify(expected)) {
      errors.push(`config.json: ${key} must be ${JSON.stringify(expected)}, found ${JSON.stringify(json[key] ?? null)}`);
    }
  };
  expect('max_length', MAX_CHUNK_LEN);
  expect('add_special_tokens', false);
  expect('pad_token', '[PAD]');
  expect('unk_token', '[UNK]');
  expect('space_token', '[SPACE]');
  expect('inputs', readsLexicon(json) ? ['input_ids', 'attention_mask', 'lexicon_features'] : ['input_ids', 'attention_mask']);
  if (readsLexicon(json)) {
    const lex = json['lexicon'];
    const features = isRecord(lex) ? lex['features'] : undefined;
    if (features !== LEXICON_FEATURES) errors.push(`config.json: lexicon.features must be ${LEXICON_FEATURES}, found ${JSON.stringify(features ?? null)}`);
  }
  expect('output', 'emissions');
  return Object.freeze({ ...json });
}

const LEXICON_FILE = 'lexicon.tsv';
const LEXICON_TRIE_FILE = 'lexicon.trie';

const readsLexicon = (config: Readonly<Record<string, unknown>>): boolean =>
  Array.isArray(config['inputs']) && config['inputs'].includes('lexicon_features');

export async function readText(dir: string, name: string): Promise<string> {
  return (await readBytes(dir, name)).toString('utf8');
}

async function readBytes(dir: string, name: string): Promise<Buffer> {
  try {
    return await readFile(path.join(dir, name));
  } catch (cause) {
    throw new CnerError('BUNDLE_NOT_FOUND', `${name} is missing from model bundle ${dir}`, { cause, context: { dir, file: name } });
  }
}

export async function readJson(dir: string, name: string): Promise<unknown> {
  const text = await readText(dir, name);
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new CnerError('BUNDLE_INVALID', `${name} in model bundle ${dir} is not valid JSON`, { cause, context: { dir, file: name } });
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A relative path that stays inside the bundle directory. */
function isInsideBundle(name: string): boolean {
  if (name.length === 0 || name.includes('\0') || path.isAbsolute(name)) return false;
  const normal = path.posix.normalize(name.replaceAll('\\', '/'));
  return normal !== '.' && normal !== '..' && !normal.startsWith('../');
}
