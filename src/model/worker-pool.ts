// N inference workers, each with its own onnxruntime session (all a
// tagger's, or all a linker's), fed from one queue. Batches go to whichever worker is idle; their buffers are
// transferred (not copied) both ways. A worker that dies is replaced, and
// the batch it held fails with a retriable WORKER_CRASHED.

import { Worker } from 'node:worker_threads';
import { CnerError, type ErrorCode, isErrorCode } from '../errors.js';
import { type Logger, silentLogger } from './log.js';
import type { SessionConfig } from './onnx-session.js';
import { type FromWorker, type SerializedError, type SessionKind, type ToWorker, type WorkerInit, type WorkerInputs, type WorkerOutput, inputBuffers } from './protocol.js';

export interface WorkerPoolOptions {
  /** What the sessions are: a tagger's (emissions out), a linker's (nearest names out) or its re-ranker's (probabilities out). */
  readonly kind: SessionKind;
  readonly modelPath: string;
  readonly size: number;
  readonly session: SessionConfig;
  readonly logger?: Logger;
  /** The worker entry; tests swap in their own. */
  readonly workerUrl?: URL;
  /** How long `close()` waits for a worker to exit before terminating it. */
  readonly closeTimeoutMs?: number;
}

export interface WorkerPool {
  readonly size: number;
  /** Execution provider the workers' sessions use (e.g. "cpu", "cuda"). */
  readonly provider: string;
  /**
   * Runs one batch; resolves to what the session gives (emissions [batch,
   * seq, tags] for a tagger). Takes ownership of the input arrays: their
   * buffers are transferred to the worker and are empty afterwards.
   */
  run(batch: WorkerInputs): Promise<WorkerOutput>;
  /** Finishes queued and running batches, then stops the workers. */
  close(): Promise<void>;
}

// Source (.ts under tsx) or compiled (.js in dist): the worker sits next to this file.
const SELF_EXT = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const DEFAULT_WORKER_URL = new URL(`./inference-worker${SELF_EXT}`, import.meta.url);

export async function createWorkerPool(options: WorkerPoolOptions): Promise<WorkerPool> {
  if (!Number.isInteger(options.size) || options.size < 1) {
    throw new CnerError('INVALID_CONFIG', `worker pool size must be an integer >= 1, got ${options.size}`);
  }
  const pool = new InferenceWorkerPool(options);
  await pool.start();
  return pool;
}

interface Job {
  readonly id: number;
  readonly batch: WorkerInputs;
  readonly resolve: (output: WorkerOutput) => void;
  readonly reject: (error: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  job: Job | null;
}

class InferenceWorkerPool implements WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #log: Logger;
  readonly #url: URL;
  readonly #init: WorkerInit;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  #provider = 'cpu';
  #closing: Promise<void> | null = null;
  #onIdle: (() => void) | null = null;
  #fatal: CnerError | null = null;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
    this.#url = options.workerUrl ?? DEFAULT_WORKER_URL;
    this.#init = { kind: options.kind, modelPath: options.modelPath, session: options.session };
  }

  get size(): number {
    return this.#slots.length;
  }

  get provider(): string {
    return this.#provider;
  }

  async start(): Promise<void> {
    const started = await Promise.allSettled(Array.from({ length: this.#options.size }, () => this.#spawn()));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      await Promise.all(this.#slots.map((s) => s.worker.terminate()));
      this.#slots.length = 0;
      throw failed.reason;
    }
  }

  run(batch: WorkerInputs): Promise<WorkerOutput> {
    if (this.#closing !== null) return Promise.reject(new CnerError('MODEL_CLOSED', 'the inference worker pool is closed'));
    if (this.#fatal !== null) return Promise.reject(this.#fatal);
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, batch, resolve, reject });
      this.#dispatch();
    });
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    if (!this.#isIdle()) await new Promise<void>((resolve) => (this.#onIdle = resolve));
    const timeoutMs = this.#options.closeTimeoutMs ?? 5_000;
    await Promise.all(
      this.#slots.map(async ({ worker }) => {
        const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
        worker.postMessage({ type: 'close' } satisfies ToWorker);
        const timer = setTimeout(() => void worker.terminate(), timeoutMs);
        await exited;
        clearTimeout(timer);
      }),
    );
    this.#slots.length = 0;
  }

  #isIdle(): boolean {
    return this.#queue.length === 0 && this.#slots.every((s) => s.job === null);
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (this.#queue.length === 0) break;
      if (slot.job !== null) continue;
      const job = this.#queue.shift()!;
      slot.job = job;
      const { inputIds, attentionMask, lexiconFeatures, tokenTypeIds, batch, seq } = job.batch;
      const message: ToWorker = { type: 'run', id: job.id, inputIds, attentionMask, lexiconFeatures, tokenTypeIds: tokenTypeIds ?? null, batch, seq };
      slot.worker.postMessage(message, inputBuffers(job.batch));
    }
    if (this.#onIdle !== null && this.#isIdle()) {
      this.#onIdle();
      this.#onIdle = null;
    }
  }

  /** Starts one worker and resolves once its session is loaded. */
  #spawn(): Promise<void> {
    const worker = startWorker(this.#url, this.#init);
    return new Promise((resolve, reject) => {
      let ready = false;
      const slot: Slot = { worker, job: null };
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'ready':
            ready = true;
            this.#provider = message.provider;
            for (const f of message.fallbacks) this.#log.warn({ provider: f.provider, reason: f.reason }, 'execution provider unavailable, falling back');
            this.#slots.push(slot);
            resolve();
            this.#dispatch();
            return;
          case 'start-failed':
            void worker.terminate();
            reject(deserialize(message.error, 'MODEL_LOAD_FAILED'));
            return;
          case 'result':
          case 'failed':
            this.#settle(slot, message);
            return;
        }
      });
      worker.on('error', (error) => {
        if (!ready) reject(new CnerError('MODEL_LOAD_FAILED', `inference worker failed to start: ${error.message}`, { cause: error }));
        else this.#log.error({ err: error }, 'inference worker crashed');
      });
      worker.on('exit', (code) => {
        if (!ready) {
          reject(new CnerError('MODEL_LOAD_FAILED', `inference worker exited with code ${code} before it was ready`));
          return;
        }
        this.#onExit(slot, code);
      });
    });
  }

  #settle(slot: Slot, message: Extract<FromWorker, { type: 'result' | 'failed' }>): void {
    const job = slot.job;
    if (job === null || job.id !== message.id) {
      this.#log.error({ id: message.id }, 'inference worker answered a batch it does not hold');
      return;
    }
    slot.job = null;
    if (message.type === 'result') job.resolve(message.output);
    // onnxruntime's own failures arrive as INFERENCE_FAILED already; anything
    // else thrown in the worker (a RangeError on bad inputs) is a bug: never retried.
    else job.reject(deserialize(message.error, 'INTERNAL'));
    this.#dispatch();
  }

  #onExit(slot: Slot, code: number): void {
    const index = this.#slots.indexOf(slot);
    if (index >= 0) this.#slots.splice(index, 1);
    if (slot.job !== null) {
      slot.job.reject(
        new CnerError('WORKER_CRASHED', `inference worker exited with code ${code} while running a batch`, {
          context: { exitCode: code, batch: slot.job.batch.batch, seq: slot.job.batch.seq },
        }),
      );
      slot.job = null;
    }
    if (this.#closing !== null) return;
    this.#log.warn({ exitCode: code, workers: this.#slots.length }, 'inference worker exited, starting a replacement');
    this.#spawn().catch((error: unknown) => {
      this.#log.error({ err: error }, 'replacement inference worker failed to start');
      if (this.#slots.length === 0) this.#failAll(error);
    });
    this.#dispatch();
  }

  /** No worker left and none can start: fail everything now rather than hang. */
  #failAll(error: unknown): void {
    this.#fatal =
      error instanceof CnerError ? error : new CnerError('MODEL_LOAD_FAILED', 'no inference worker can start', { cause: error });
    for (const job of this.#queue.splice(0)) job.reject(this.#fatal);
    this.#dispatch();
  }
}

/**
 * Compiled code runs the worker file directly. Source code (tests, `tsx`)
 * starts it through a small bootstrap that registers tsx first: on Node 20 a
 * worker does not get the parent's `--import tsx` hooks for its entry file.
 */
function startWorker(url: URL, init: WorkerInit): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData: init, execArgv: workerExecArgv(process.execArgv) });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: init, execArgv: [] });
}

/**
 * The parent's Node options minus those that describe the parent's own entry
 * (`node --input-type=module -e …` would make the worker's file fail to load).
 */
export function workerExecArgv(execArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (arg.startsWith('--input-type')) {
      if (arg === '--input-type') i++;
    } else if (['-e', '--eval', '-p', '--print'].includes(arg)) {
      i++;
    } else if (!/^--(eval|print)=/.test(arg)) {
      out.push(arg);
    }
  }
  return out;
}

function deserialize(error: SerializedError, fallback: ErrorCode): CnerError {
  const code = isErrorCode(error.code) ? error.code : fallback;
  return new CnerError(code, error.message, { context: error.context });
}
