// cner in process, through the production path: openModel (inference worker
// threads + dynamic batcher) and tagRecord, driven the way the processor
// drives them (src/stream/plan.ts: every record of a transaction's
// slice is tagged concurrently, so the batcher fills batches across records;
// the next slice starts when the whole slice is done).
//
// CPU: process.cpuUsage() for the whole process over the run; the inference
// share is the CPU of the threads openModel started (the worker threads,
// which do nothing but onnxruntime's session.run and the postMessage around
// it), read per thread from /proc (cpu.ts). Everything else — chunking,
// encoding, batching, Viterbi, confidences, spans, message passing on the
// main thread, GC — is "outside inference".

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type LoadedModel, openModel } from '../src/model/model.js';
import type { Entity } from '../src/pipeline/spans.js';
import { tagRecord } from '../src/pipeline/tag.js';
import { type ThreadCpu, cpuSecondsOf, newThreads, processCpuSeconds, threadCpu } from './cpu.js';

export interface ModelSettings {
  readonly workers: number;
  readonly intraOpThreads: number;
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
}

/** Records per transaction of `cner serve` (src/service.ts: maxRecordsPerTransaction). */
export const recordsPerSlice = (s: ModelSettings): number => Math.max(16, 4 * s.maxBatchSize);

export interface InProcessRun {
  readonly wallSeconds: number;
  readonly recordsPerSecond: number;
  readonly chunksPerSecond: number;
  /** Whole process, all threads. */
  readonly cpuSeconds: number;
  /** The inference worker threads; null where per-thread CPU is unavailable. */
  readonly inferenceCpuSeconds: number | null;
  /** The event-loop thread alone (pipeline steps, batcher, message handling). */
  readonly mainThreadCpuSeconds: number | null;
}

export class InProcessCner {
  readonly model: LoadedModel;
  readonly #inferenceThreads: ReadonlySet<string> | null;
  readonly #mainThread = String(process.pid); // the main thread's tid is the pid
  readonly #slice: number;

  private constructor(model: LoadedModel, inferenceThreads: ReadonlySet<string> | null, slice: number) {
    this.model = model;
    this.#inferenceThreads = inferenceThreads;
    this.#slice = slice;
  }

  static async open(bundle: string, settings: ModelSettings): Promise<InProcessCner> {
    // Start libuv's thread pool first, so that only the model's threads are new below.
    await readFile(path.join(bundle, 'config.json'));
    const before = threadCpu();
    const model = await openModel(bundle, {
      workers: settings.workers,
      maxBatchSize: settings.maxBatchSize,
      maxWaitMs: settings.maxWaitMs,
      session: { executionProviders: ['cpu'], intraOpThreads: settings.intraOpThreads, graphOptimizationLevel: 'all' },
    });
    const after = threadCpu();
    return new InProcessCner(model, before && after ? newThreads(before, after) : null, recordsPerSlice(settings));
  }

  /** Tags every text (timed); returns the timings and each record's entities. */
  async run(texts: readonly string[], chunks: number): Promise<{ run: InProcessRun; entities: Entity[][] }> {
    const entities: Entity[][] = [];
    const threads0: ThreadCpu | null = threadCpu();
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < texts.length; i += this.#slice) {
      entities.push(...(await Promise.all(texts.slice(i, i + this.#slice).map((text) => tagRecord(text, this.model)))));
    }
    const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpuSeconds = processCpuSeconds(cpu0);
    const threads1 = threadCpu();
    const inference = this.#inferenceThreads;
    const split = threads0 !== null && threads1 !== null && inference !== null;
    return {
      run: {
        wallSeconds,
        recordsPerSecond: texts.length / wallSeconds,
        chunksPerSecond: chunks / wallSeconds,
        cpuSeconds,
        inferenceCpuSeconds: split ? cpuSecondsOf(inference, threads0, threads1) : null,
        mainThreadCpuSeconds: split ? cpuSecondsOf(new Set([this.#mainThread]), threads0, threads1) : null,
      },
      entities,
    };
  }

  close(): Promise<void> {
    return this.model.close();
  }
}
