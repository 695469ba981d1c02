// A loaded model ready for `tagRecord`: bundle + inference (worker pool, or
// in-process) + dynamic batcher behind the pipeline's TaggingModel interface,
// and the linker it links with (CNER_LINKER_DIR): the one its bundle carries
// in linker/ (`bundle`), a linker bundle of its own, or none. A model and the
// linker it opened are closed together, so a served version's tagger and
// linker switch, and are released, as one.

import path from 'node:path';
import type { PackedBatch } from '../pipeline/encode.js';
import { CnerError } from '../errors.js';
import type { TaggingModel } from '../pipeline/tag.js';
import { autoIntraOpThreads } from './cpus.js';
import { DynamicBatcher } from './batcher.js';
import { BUNDLE_FILES, type BundleManifest, LINKER_SUBDIR, type ModelBundle, loadBundle, openBundleDir } from './bundle.js';
import { type Linker, type LinkerOptions, openLinker } from './linker.js';
import { type Logger, silentLogger } from './log.js';
import { DEFAULT_SESSION_CONFIG, type SessionConfig, createSession } from './onnx-session.js';
import { createWorkerPool } from './worker-pool.js';

export interface ModelOptions {
  /**
   * Inference worker threads. 0 runs onnxruntime on the calling thread, which
   * blocks its event loop during every run: fine for a CLI, not for a consumer.
   */
  readonly workers: number;
  readonly session: SessionConfig;
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  readonly logger?: Logger;
  /** The linker opened with the tagger (default: none). */
  readonly linker?: LinkerUse;
  /** How a linker this opens runs (default: openLinker's defaults). */
  readonly linkerOptions?: Partial<LinkerOptions>;
}

/** Which linker a model links with (CNER_LINKER_DIR, `--linker`). */
export type LinkerSource =
  /** No linking. */
  | { readonly kind: 'none' }
  /** The linker the model bundle carries in linker/, if it carries one; else none. */
  | { readonly kind: 'bundle' }
  /** This linker bundle, whatever the model. */
  | { readonly kind: 'dir'; readonly dir: string };

/** A LinkerSource, or a linker opened by the caller and shared by several models (not closed with any of them). */
export type LinkerUse = LinkerSource | { readonly kind: 'shared'; readonly linker: Linker };

export const NO_LINKER: LinkerSource = Object.freeze({ kind: 'none' });
export const BUNDLE_LINKER: LinkerSource = Object.freeze({ kind: 'bundle' });

export const DEFAULT_MODEL_OPTIONS: ModelOptions = Object.freeze({
  workers: 1,
  session: DEFAULT_SESSION_CONFIG,
  maxBatchSize: 4,
  maxWaitMs: 5,
  linker: NO_LINKER,
});

export interface LoadedModel extends TaggingModel {
  readonly bundle: ModelBundle;
  /** Execution provider in use ("cpu", "cuda", …). */
  readonly provider: string;
  /** Every row of `inferEach` together: result[k] is [sequences[k].length, 13]. */
  infer(sequences: readonly Int32Array[], features?: readonly Uint8Array[] | null): Promise<readonly Float32Array[]>;
  /** The linker for this model's entities (its version stamps the events); null: no linking. */
  readonly linker: Linker | null;
  /** Finishes pending inference, then frees workers and sessions, the linker's too unless it was shared. */
  close(): Promise<void>;
}

export async function openModel(dir: string, overrides: Partial<ModelOptions> = {}): Promise<LoadedModel> {
  const options: ModelOptions = { ...DEFAULT_MODEL_OPTIONS, ...overrides };
  if (!Number.isInteger(options.workers) || options.workers < 0) {
    throw new CnerError('INVALID_CONFIG', `workers must be an integer >= 0, got ${options.workers}`);
  }
  const log = options.logger ?? silentLogger;
  const bundle = await loadBundle(dir);
  const runner = options.workers === 0 ? await inProcessRunner(bundle, options) : await poolRunner(bundle, options);
  const batcher = new DynamicBatcher({ maxBatchSize: options.maxBatchSize, maxWaitMs: options.maxWaitMs, run: (batch) => runner.run(batch) });
  const use = options.linker ?? NO_LINKER;
  let linker: Linker | null;
  try {
    linker = await linkerFor(use, bundle.dir, bundle.manifest, { ...(options.logger === undefined ? {} : { logger: options.logger }), ...options.linkerOptions });
  } catch (e) {
    await batcher.close();
    await runner.close();
    throw e;
  }
  const ownsLinker = use.kind !== 'shared';
  log.info(
    { model: bundle.manifest.name, version: bundle.version, provider: runner.provider, workers: options.workers, linker: linker?.version ?? null, linkerFrom: use.kind },
    'model loaded',
  );
  return {
    bundle,
    version: bundle.version,
    vocab: bundle.vocab,
    crf: bundle.crf,
    lexicon: bundle.lexicon,
    provider: runner.provider,
    infer: (sequences, features) => batcher.infer(sequences, features ?? null),
    inferEach: (sequences, features) => batcher.inferEach(sequences, features ?? null),
    linker,
    async close() {
      try {
        await batcher.close();
        await runner.close();
      } finally {
        if (ownsLinker) await linker?.close();
      }
    },
  };
}

/**
 * The linker `source` names for the model bundle in `modelDir`, opened alone
 * (`cner link`): with `bundle`, the linker that bundle carries (null when it
 * carries none); the bundle's manifest is checked first, every file's sha256 included.
 */
export async function openLinkerOf(source: LinkerSource, modelDir: string, options: Partial<LinkerOptions> = {}): Promise<Linker | null> {
  if (source.kind !== 'bundle') return linkerFor(source, modelDir, null, options);
  const { dir, manifest } = await openBundleDir(modelDir, BUNDLE_FILES);
  return linkerFor(source, dir, manifest, options);
}

async function linkerFor(use: LinkerUse, dir: string, manifest: BundleManifest | null, options: Partial<LinkerOptions>): Promise<Linker | null> {
  switch (use.kind) {
    case 'none':
      return null;
    case 'shared':
      return use.linker;
    case 'dir':
      return openLinker(use.dir, options);
    case 'bundle':
      return manifest === null || manifest.linker === null ? null : openCarriedLinker(dir, manifest, options);
  }
}

/**
 * The linker a model bundle carries in linker/: opened (its own manifest and
 * sha256s checked), then held to the tagger's manifest: the same version as
 * its `linker` entry, and every file it lists listed there as `linker/<file>`
 * with the same sha256.
 */
async function openCarriedLinker(dir: string, manifest: BundleManifest, options: Partial<LinkerOptions>): Promise<Linker> {
  const linker = await openLinker(path.join(dir, LINKER_SUBDIR), options);
  const problems: string[] = [];
  if (linker.version !== manifest.linker!.version) problems.push(`${LINKER_SUBDIR}/manifest.json says version ${linker.version}, manifest.json's linker entry ${manifest.linker!.version}`);
  for (const [file, sha] of Object.entries(linker.bundle.manifest.files)) {
    const listed = manifest.files[`${LINKER_SUBDIR}/${file}`];
    if (listed !== sha) problems.push(`${LINKER_SUBDIR}/${file} ${listed === undefined ? 'is not listed in manifest.json' : `has sha256 ${listed} in manifest.json and ${sha} in ${LINKER_SUBDIR}/manifest.json`}`);
  }
  if (problems.length > 0) {
    await linker.close();
    throw new CnerError('BUNDLE_INVALID', `the linker model bundle ${dir} carries does not match its manifest:\n- ${problems.join('\n- ')}`, { context: { dir, errors: problems } });
  }
  return linker;
}

interface Runner {
  readonly provider: string;
  run(batch: PackedBatch): Promise<Float32Array>;
  close(): Promise<void>;
}

async function poolRunner(bundle: ModelBundle, options: ModelOptions): Promise<Runner> {
  // Unless told otherwise, share the usable CPUs (a pod's CPU limit, not the
  // node's cores) between the workers instead of letting every session start
  // one thread per core.
  const intraOpThreads = options.session.intraOpThreads > 0 ? options.session.intraOpThreads : autoIntraOpThreads(options.workers);
  const pool = await createWorkerPool({
    kind: 'tagger',
    modelPath: bundle.modelPath,
    size: options.workers,
    session: { ...options.session, intraOpThreads },
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  return {
    provider: pool.provider,
    run: async (batch) => {
      const out = await pool.run(batch);
      if (out.kind !== 'emissions') throw new CnerError('INTERNAL', `a tagger's worker answered with ${out.kind}`);
      return out.emissions;
    },
    close: () => pool.close(),
  };
}

async function inProcessRunner(bundle: ModelBundle, options: ModelOptions): Promise<Runner> {
  const session = await createSession(bundle.modelPath, options.session);
  for (const f of session.fallbacks) options.logger?.warn({ provider: f.provider, reason: f.reason }, 'execution provider unavailable, falling back');
  return {
    provider: session.provider,
    run: async (batch) => (await session.run(batch)).emissions,
    close: () => session.release(),
  };
}
