// cner in process, through the production path: openModel (inference worker
// threads + dynamic batcher) and tagAndLink, driven the way the processor
// drives them (src/stream/plan.ts: every record of a transaction's
// slice is tagged concurrently, so the batcher fills batches across records,
// and each chunk's entities are linked as soon as it is tagged; the next
// slice starts once this one is tagged, while it is still being linked).
//
// CPU: process.cpuUsage() for the whole process over the run; the inference
// share is the CPU of the threads openModel started (the worker threads,
// which do nothing but onnxruntime's session.run and the postMessage around
// it), read per thread from /proc (cpu.ts). Everything else — chunking,
// encoding, batching, Viterbi, confidences, spans, message passing on the
// main thread, GC — is "outside inference". (With a linker, the CPU split is
// not reported: its workers start with each run.)

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type Linker, openLinker } from '../src/model/linker.js';
import { type LoadedModel, openModel } from '../src/model/model.js';
import type { LinkedEntity } from '../src/pipeline/event.js';
import { tagAndLink } from '../src/pipeline/tag-link.js';
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

/** The onnxruntime session settings of every contender's model: CPU, the bench's threads, full graph optimization. */
const sessionOf = (s: ModelSettings) => ({ executionProviders: ['cpu'] as const, intraOpThreads: s.intraOpThreads, graphOptimizationLevel: 'all' as const });

export class InProcessCner {
  readonly model: LoadedModel;
  /** When set, every record's entities are linked too, as `cner serve` does with CNER_LINKER_DIR. */
  readonly linkerDir: string | null;
  /** The linker of the run in progress (or of the last one), for its version. */
  linker: Linker | null = null;
  readonly #settings: ModelSettings;
  readonly #inferenceThreads: ReadonlySet<string> | null;
  readonly #mainThread = String(process.pid); // the main thread's tid is the pid
  readonly #slice: number;

  private constructor(model: LoadedModel, linkerDir: string | null, settings: ModelSettings, inferenceThreads: ReadonlySet<string> | null, slice: number) {
    this.model = model;
    this.linkerDir = linkerDir;
    this.#settings = settings;
    this.#inferenceThreads = inferenceThreads;
    this.#slice = slice;
  }

  /**
   * With `linkerDir`, each run opens a linker as `cner serve` does (as many
   * workers as the model, its cache on) before the clock starts: every pass
   * starts with an empty cache, like a processor that has just started, and
   * gains only from diagnoses repeated within the pass.
   */
  static async open(bundle: string, settings: ModelSettings, linkerDir: string | null = null): Promise<InProcessCner> {
    // Start libuv's thread pool first, so that only the model's threads are new below.
    await readFile(path.join(bundle, 'config.json'));
    const before = threadCpu();
    const model = await openModel(bundle, { workers: settings.workers, maxBatchSize: settings.maxBatchSize, maxWaitMs: settings.maxWaitMs, session: sessionOf(settings) });
    const after = threadCpu();
    return new InProcessCner(model, linkerDir, settings, before && after ? newThreads(before, after) : null, recordsPerSlice(settings));
  }

  /**
   * Tags every text (timed); returns the timings and each record's entities.
   * `warmup` texts are tagged and linked first, untimed, with the run's new
   * linker (as a processor tags its warm-up records before the bench times
   * it: the linker cache then holds their diagnoses on both sides).
   */
  async run(texts: readonly string[], chunks: number, warmup: readonly string[] = []): Promise<{ run: InProcessRun; entities: LinkedEntity[][] }> {
    if (this.linkerDir !== null) {
      await this.linker?.close();
      this.linker = await openLinker(this.linkerDir, { workers: this.#settings.workers, session: sessionOf(this.#settings) });
    }
    if (warmup.length > 0) await this.#pass(warmup);
    const threads0: ThreadCpu | null = threadCpu();
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const entities = await this.#pass(texts);
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

  /** Every text tagged and linked, slice after slice. */
  async #pass(texts: readonly string[]): Promise<LinkedEntity[][]> {
    const entities: LinkedEntity[][] = [];
    // As the processor does (src/stream/loop.ts): the next slice starts once this one is tagged.
    const start = (i: number): { tagged: Promise<unknown>; linked: Promise<LinkedEntity[][]> } => {
      const records = texts.slice(i, i + this.#slice).map((text) => tagAndLink(text, this.model, this.linker));
      return { tagged: Promise.allSettled(records.map((r) => r.tagged)), linked: Promise.all(records.map((r) => r.linked)) };
    };
    let current: ReturnType<typeof start> | null = texts.length > 0 ? start(0) : null;
    for (let i = 0; current !== null; i += this.#slice) {
      const after = i + this.#slice;
      const ahead = after < texts.length ? current.tagged.then(() => start(after)) : Promise.resolve(null);
      entities.push(...(await current.linked));
      current = await ahead;
    }
    return entities;
  }

  async close(): Promise<void> {
    await this.model.close();
    await this.linker?.close();
    this.linker = null;
  }
}
