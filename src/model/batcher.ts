// Dynamic batching across concurrent callers: sequences from many
// `tagChunks` calls wait here until `maxBatchSize` of them are pending or the
// oldest has waited `maxWaitMs`, then go out in batches of similar length
// (little padding), and each caller gets back exactly its own rows, each row
// as soon as its batch is done (`inferEach`) or all of them together (`infer`).
//
// A full batch is not sent the moment it fills, but at the end of the current
// turn of the event loop: the processor tags a whole slice of records in one
// synchronous burst of calls, so by then every chunk of the slice is pending
// and the batches are cut from all of them sorted by length. Sent on arrival,
// each batch held whatever 32 chunks came first (padding ratio 0.75, the same
// as padding everything to 128); sorted over the slice it is above 0.95.

import { type PackedBatch, packBatch, planBatches, splitEmissions } from '../pipeline/encode.js';
import { CnerError } from '../errors.js';
import { observed } from '../pipeline/tag.js';

export interface BatcherOptions {
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
  /** Runs one packed batch; resolves to emissions [batch, seq, tags]. */
  readonly run: (batch: PackedBatch) => Promise<Float32Array>;
}

interface Pending {
  readonly ids: Int32Array; // [length]
  readonly features: Uint8Array | null; // [length, lexicon features] for a model with a lexicon
  readonly resolve: (emissions: Float32Array) => void; // [length, tags]
  readonly reject: (error: unknown) => void;
}

export class DynamicBatcher {
  readonly #options: BatcherOptions;
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | null = null;
  #immediate: NodeJS.Immediate | null = null;
  readonly #inFlight = new Set<Promise<void>>();
  #closed = false;

  constructor(options: BatcherOptions) {
    if (!Number.isInteger(options.maxBatchSize) || options.maxBatchSize < 1) {
      throw new CnerError('INVALID_CONFIG', `maxBatchSize must be an integer >= 1, got ${options.maxBatchSize}`);
    }
    if (!Number.isFinite(options.maxWaitMs) || options.maxWaitMs < 0) {
      throw new CnerError('INVALID_CONFIG', `maxWaitMs must be a number >= 0, got ${options.maxWaitMs}`);
    }
    this.#options = options;
  }

  /** Emissions per sequence, in order: result[k] is [sequences[k].length, tags]. */
  infer(sequences: readonly Int32Array[], features: readonly Uint8Array[] | null = null): Promise<Float32Array[]> {
    if (this.#closed) return Promise.reject(closedError()); // even for no sequences
    return Promise.all(this.inferEach(sequences, features));
  }

  /**
   * One promise per sequence, in order, each resolved with its emissions
   * ([sequences[k].length, tags]) as soon as its own batch is done, so a
   * caller can decode the rows of early batches while later ones run. Every
   * row is rejected (MODEL_CLOSED once closed, RangeError when `features`
   * does not have one row per sequence, else its batch's failure).
   */
  inferEach(sequences: readonly Int32Array[], features: readonly Uint8Array[] | null = null): Promise<Float32Array>[] {
    if (this.#closed) return rejectedRows(sequences.length, closedError());
    if (sequences.length === 0) return [];
    if (features !== null && features.length !== sequences.length) {
      return rejectedRows(sequences.length, new RangeError(`${features.length} feature rows for ${sequences.length} sequences`));
    }
    // observed: a caller that stops at the first failed row leaves the rest unawaited (see observed).
    const rows = sequences.map((ids, k) => observed(new Promise<Float32Array>((resolve, reject) => this.#pending.push({ ids, features: features?.[k] ?? null, resolve, reject }))));
    if (this.#pending.length >= this.#options.maxBatchSize) this.#immediate ??= setImmediate(this.#onFull);
    else this.#timer ??= setTimeout(this.#onTimer, this.#options.maxWaitMs);
    return rows;
  }

  /** Sends what is pending, waits for every batch in flight; later calls are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#immediate !== null) clearImmediate(this.#immediate);
    this.#immediate = null;
    this.#flush(true);
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Sends full batches; with `all`, the partly filled rest as well. */
  #flush(all: boolean): void {
    const pending = this.#pending;
    const keep: Pending[] = [];
    for (const group of planBatches(
      pending.map((p) => p.ids.length),
      this.#options.maxBatchSize,
    )) {
      const items = group.map((i) => pending[i]!);
      if (!all && items.length < this.#options.maxBatchSize) keep.push(...items);
      else this.#send(items);
    }
    this.#pending = keep;
    if (keep.length === 0 && this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    } else if (keep.length > 0) {
      // The rest keeps the running deadline, so nothing waits longer than maxWaitMs.
      this.#timer ??= setTimeout(this.#onTimer, this.#options.maxWaitMs);
    }
  }

  readonly #onFull = (): void => {
    this.#immediate = null;
    this.#flush(false);
  };

  readonly #onTimer = (): void => {
    this.#timer = null;
    this.#flush(true);
  };

  #send(items: readonly Pending[]): void {
    // The runner may take the input buffers (worker transfer); splitting only
    // needs the shape and lengths, which stay here.
    const withFeatures = items[0]!.features !== null;
    const packed = packBatch(
      items.map((p) => p.ids),
      withFeatures ? items.map((p) => p.features ?? new Uint8Array(0)) : null,
    );
    const done = this.#options
      .run(packed)
      .then((emissions) => {
        const rows = splitEmissions(emissions, packed);
        items.forEach((p, k) => p.resolve(rows[k]!));
      })
      .catch((error: unknown) => {
        for (const p of items) p.reject(error);
      })
      .finally(() => this.#inFlight.delete(done));
    this.#inFlight.add(done);
  }
}

const closedError = (): CnerError => new CnerError('MODEL_CLOSED', 'the batcher is closed');

/** One rejected row per sequence, each observed (a caller may await only the first). */
const rejectedRows = (count: number, error: Error): Promise<Float32Array>[] => Array.from({ length: count }, () => observed(Promise.reject(error)));
