// A linker bundle opened for use: diagnosis strings in, the concepts they
// denote out (best first), as the training package's OnnxLinker computes
// them: each string and its listed parts are embedded, the graph returns
// every query's nearest names, and the bundle's decision keeps some.
//
// Queries from concurrent callers (the records of one slice) are gathered
// until the end of the current turn of the event loop, deduplicated, sorted
// by length and sent in batches, on inference workers (the stream) or on the
// calling thread (`cner link` with --workers 0). A text's concepts depend on
// the text alone, so they are kept in a bounded cache: clinical notes repeat
// the same diagnoses over and over.

import { CnerError } from '../errors.js';
import { autoIntraOpThreads } from './cpus.js';
import { PAD_ID, tokenId } from '../pipeline/encode.js';
import type { ConceptCode } from '../pipeline/event.js';
import { type EntityLinker, type NearestNames, chooseNames, queryParts } from '../pipeline/link.js';
import { type LinkerBundle, loadLinkerBundle } from './linker-bundle.js';
import { type Logger, silentLogger } from './log.js';
import { DEFAULT_SESSION_CONFIG, type NearestOutput, type SessionConfig, createLinkerSession } from './onnx-session.js';
import type { WorkerInputs } from './protocol.js';
import { createWorkerPool } from './worker-pool.js';

export interface Linker extends EntityLinker {
  readonly bundle: LinkerBundle;
  /** Execution provider in use ("cpu", "cuda", …). */
  readonly provider: string;
  /** Each query's nearest names, best first (for tests and diagnostics). */
  nearest(queries: readonly string[]): Promise<NearestNames[]>;
  /** Per text, the concepts it denotes, best first (never empty for a non-empty text). */
  link(texts: readonly string[]): Promise<readonly (readonly ConceptCode[])[]>;
  /** Finishes pending queries, then frees workers and sessions. */
  close(): Promise<void>;
}

export interface LinkerOptions {
  /** Inference worker threads; 0 runs onnxruntime on the calling thread. */
  readonly workers: number;
  readonly session: SessionConfig;
  /** Texts whose concepts are kept (least recently used dropped first); 0 keeps none. */
  readonly cacheSize: number;
  readonly logger?: Logger;
}

export const DEFAULT_LINKER_OPTIONS: LinkerOptions = Object.freeze({ workers: 0, session: DEFAULT_SESSION_CONFIG, cacheSize: 20_000 });

/** Queries per onnxruntime run: linker queries are short, so larger batches than the tagger's pay. */
const BATCH = 64;

export async function openLinker(dir: string, overrides: Partial<LinkerOptions> = {}): Promise<Linker> {
  const options: LinkerOptions = { ...DEFAULT_LINKER_OPTIONS, ...overrides };
  if (!Number.isInteger(options.workers) || options.workers < 0) {
    throw new CnerError('INVALID_CONFIG', `linker workers must be an integer >= 0, got ${options.workers}`);
  }
  const bundle = await loadLinkerBundle(dir);
  const runner = options.workers === 0 ? await inProcessRunner(bundle, options) : await poolRunner(bundle, options);
  (options.logger ?? silentLogger).info({ linker: bundle.manifest.name, version: bundle.version, provider: runner.provider, workers: options.workers }, 'linker loaded');
  return new BundleLinker(bundle, runner, options.cacheSize);
}

interface Runner {
  readonly provider: string;
  run(inputs: WorkerInputs): Promise<NearestOutput>;
  close(): Promise<void>;
}

async function inProcessRunner(bundle: LinkerBundle, options: LinkerOptions): Promise<Runner> {
  const session = await createLinkerSession(bundle.modelPath, options.session);
  for (const f of session.fallbacks) options.logger?.warn({ provider: f.provider, reason: f.reason }, 'execution provider unavailable, falling back');
  return { provider: session.provider, run: (inputs) => session.run(inputs), close: () => session.release() };
}

async function poolRunner(bundle: LinkerBundle, options: LinkerOptions): Promise<Runner> {
  const pool = await createWorkerPool({
    kind: 'linker',
    modelPath: bundle.modelPath,
    size: options.workers,
    // As for the tagger's workers: unless told, share the usable CPUs instead of one thread per core each.
    session: { ...options.session, intraOpThreads: options.session.intraOpThreads > 0 ? options.session.intraOpThreads : autoIntraOpThreads(options.workers) },
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  return {
    provider: pool.provider,
    run: async (inputs) => {
      const out = await pool.run(inputs);
      if (out.kind !== 'nearest') throw new CnerError('INTERNAL', `a linker's worker answered with ${out.kind}`);
      return out;
    },
    close: () => pool.close(),
  };
}

interface Pending {
  readonly query: string;
  readonly resolve: (nearest: NearestNames) => void;
  readonly reject: (error: unknown) => void;
}

class BundleLinker implements Linker {
  readonly bundle: LinkerBundle;
  readonly #runner: Runner;
  readonly #cacheSize: number;
  /** Insertion order is recency: a hit is moved to the end, the first entry is the least recently used. */
  readonly #cache = new Map<string, readonly ConceptCode[]>();
  #pending: Pending[] = [];
  #immediate: NodeJS.Immediate | null = null;
  readonly #inFlight = new Set<Promise<void>>();
  #closed = false;

  constructor(bundle: LinkerBundle, runner: Runner, cacheSize: number) {
    this.bundle = bundle;
    this.#runner = runner;
    this.#cacheSize = cacheSize;
  }

  get version(): string {
    return this.bundle.version;
  }

  get entityTypes(): readonly string[] {
    return this.bundle.entityTypes;
  }

  get provider(): string {
    return this.#runner.provider;
  }

  nearest(queries: readonly string[]): Promise<NearestNames[]> {
    if (this.#closed) return Promise.reject(new CnerError('MODEL_CLOSED', 'the linker is closed'));
    const out = queries.map((query) => new Promise<NearestNames>((resolve, reject) => this.#pending.push({ query, resolve, reject })));
    if (queries.length > 0) this.#immediate ??= setImmediate(() => this.#flush());
    return Promise.all(out);
  }

  async link(texts: readonly string[]): Promise<readonly (readonly ConceptCode[])[]> {
    const known = new Map<string, readonly ConceptCode[]>();
    for (const t of texts) {
      const hit = this.#recall(t);
      if (hit !== undefined) known.set(t, hit);
    }
    const missing = [...new Set(texts.filter((t) => !known.has(t)))];
    if (missing.length > 0) {
      const parts = missing.map((t) => queryParts(t, this.bundle.separators));
      const nearest = await this.nearest(parts.flat());
      let at = 0;
      missing.forEach((text, i) => {
        const mine = nearest.slice(at, at + parts[i]!.length);
        at += parts[i]!.length;
        const concepts = this.#concepts(mine);
        known.set(text, concepts);
        this.#remember(text, concepts);
      });
    }
    return texts.map((t) => known.get(t)!);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#immediate !== null) clearImmediate(this.#immediate);
    this.#flush();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await this.#runner.close();
  }

  /** The kept names of one text, from its own and its parts' nearest names. */
  #concepts(nearest: readonly NearestNames[]): readonly ConceptCode[] {
    // A kept name's score: its best cosine to the text or any of its parts.
    const best = new Map<number, number>();
    for (const n of nearest) for (let j = 0; j < n.indices.length; j++) best.set(n.indices[j]!, Math.max(best.get(n.indices[j]!) ?? -1, n.scores[j]!));
    return Object.freeze(
      chooseNames(nearest, this.bundle.decision).map((i) =>
        Object.freeze({
          system: this.bundle.system,
          code: this.bundle.codes[i]![0]!, // a name heading several rows: its first (the table's order)
          name: this.bundle.names[i]!,
          score: best.get(i)!,
        }),
      ),
    );
  }

  #recall(text: string): readonly ConceptCode[] | undefined {
    const hit = this.#cache.get(text);
    if (hit !== undefined) {
      this.#cache.delete(text);
      this.#cache.set(text, hit);
    }
    return hit;
  }

  #remember(text: string, concepts: readonly ConceptCode[]): void {
    if (this.#cacheSize === 0) return;
    this.#cache.set(text, concepts);
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
  }

  /** Sends everything pending: each distinct query once, in batches of similar length. */
  #flush(): void {
    this.#immediate = null;
    const pending = this.#pending;
    this.#pending = [];
    if (pending.length === 0) return;
    const waiting = new Map<string, Pending[]>();
    for (const p of pending) {
      const list = waiting.get(p.query);
      if (list === undefined) waiting.set(p.query, [p]);
      else list.push(p);
    }
    const rows = [...waiting.keys()].map((q) => Array.from(q).slice(0, this.bundle.maxQueryLength));
    const queries = [...waiting.keys()];
    const order = rows.map((_, i) => i).sort((a, b) => rows[a]!.length - rows[b]!.length);
    for (let b = 0; b < order.length; b += BATCH) {
      const group = order.slice(b, b + BATCH);
      const done = this.#runner
        .run(this.#encode(group.map((i) => rows[i]!)))
        .then(({ scores, indices, k }) => {
          group.forEach((i, r) => {
            const n: NearestNames = { indices: indices.subarray(r * k, (r + 1) * k), scores: scores.subarray(r * k, (r + 1) * k) };
            for (const p of waiting.get(queries[i]!)!) p.resolve(n);
          });
        })
        .catch((error: unknown) => {
          for (const i of group) for (const p of waiting.get(queries[i]!)!) p.reject(error);
        })
        .finally(() => this.#inFlight.delete(done));
      this.#inFlight.add(done);
    }
  }

  #encode(rows: readonly (readonly string[])[]): WorkerInputs {
    const seq = Math.max(1, ...rows.map((r) => r.length));
    const inputIds = new BigInt64Array(rows.length * seq).fill(BigInt(PAD_ID)); // [batch, seq]
    const attentionMask = new BigInt64Array(rows.length * seq); // [batch, seq]
    rows.forEach((chars, i) => {
      chars.forEach((ch, j) => {
        inputIds[i * seq + j] = BigInt(tokenId(ch, this.bundle.vocab));
        attentionMask[i * seq + j] = 1n;
      });
      if (chars.length === 0) attentionMask[i * seq] = 1n; // an empty query reads one [PAD], as the training package encodes it
    });
    return { inputIds, attentionMask, lexiconFeatures: null, batch: rows.length, seq };
  }
}
