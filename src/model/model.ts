// A loaded model ready for `tagRecord`: bundle + inference (worker pool, or
// in-process) + dynamic batcher behind the pipeline's TaggingModel interface.

import type { PackedBatch } from '../pipeline/encode.js';
import { CnerError } from '../errors.js';
import type { TaggingModel } from '../pipeline/tag.js';
import { autoIntraOpThreads } from './cpus.js';
import { DynamicBatcher } from './batcher.js';
import { type ModelBundle, loadBundle } from './bundle.js';
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
}

export const DEFAULT_MODEL_OPTIONS: ModelOptions = Object.freeze({
  workers: 1,
  session: DEFAULT_SESSION_CONFIG,
  maxBatchSize: 32,
  maxWaitMs: 5,
});

export interface LoadedModel extends TaggingModel {
  readonly bundle: ModelBundle;
  /** Execution provider in use ("cpu", "cuda", …). */
  readonly provider: string;
  /** Every row of `inferEach` together: result[k] is [sequences[k].length, 13]. */
  infer(sequences: readonly Int32Array[], features?: readonly Uint8Array[] | null): Promise<readonly Float32Array[]>;
  /** Finishes pending inference, then frees workers and sessions. */
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
  log.info(
    { model: bundle.manifest.name, version: bundle.version, provider: runner.provider, workers: options.workers },
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
    async close() {
      await batcher.close();
      await runner.close();
    },
  };
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
