// A linker bundle opened for use: diagnosis strings in, the concepts they
// denote out (best first), as the training package's OnnxLinker computes
// them: each string and its listed parts are embedded, the graph returns
// every query's nearest names (and, with a memory, the string's nearest
// training diagnoses and their gold names), and either the bundle's decision
// keeps some, or (a bundle with a re-ranker) the best candidates by cosine and
// vote are scored pair by pair by the cross-encoder and those whose combined
// score clears the threshold are kept.
//
// Queries and pairs from concurrent callers (the records of one slice) are
// gathered until the end of the current turn of the event loop, deduplicated,
// sorted by length and sent in batches, on inference workers (the stream) or
// on the calling thread (`cner link` with --workers 0). A text's concepts
// depend on the text alone, so they are kept in a bounded cache (clinical
// notes repeat the same diagnoses over and over), and a text being linked is
// not linked again for a caller that asks meanwhile (the same diagnosis in
// another chunk of the slice): it gets the answer in flight.

import { CnerError } from '../errors.js';
import { autoIntraOpThreads } from './cpus.js';
import { CLS_ID, PAD_ID, SEP_ID, tokenId } from '../pipeline/encode.js';
import type { ConceptCode } from '../pipeline/event.js';
import { codePointLength } from '../pipeline/unicode.js';
import { type EntityLinker, type MemoryNeighbour, type NearestNames, candidateList, chooseNames, chooseReranked, queryParts, toRerank } from '../pipeline/link.js';
import { type LinkerBundle, loadLinkerBundle } from './linker-bundle.js';
import { type Logger, silentLogger } from './log.js';
import { DEFAULT_SESSION_CONFIG, type MemoryOutput, type SessionConfig } from './onnx-session.js';
import type { SessionKind, WorkerInputs, WorkerOutput } from './protocol.js';
import { openSessionRunner } from './session-runner.js';
import { createWorkerPool } from './worker-pool.js';

export interface Linker extends EntityLinker {
  readonly bundle: LinkerBundle;
  /** Execution provider in use ("cpu", "cuda", …). */
  readonly provider: string;
  /** Each query's nearest names, best first, and its nearest training diagnoses when the bundle has a memory (for tests and diagnostics). */
  nearest(queries: readonly string[]): Promise<Nearest[]>;
  /** Per text, the concepts it denotes, best first (never empty for a non-empty text). */
  link(texts: readonly string[]): Promise<readonly (readonly ConceptCode[])[]>;
  /** Finishes pending queries, then frees workers and sessions. */
  close(): Promise<void>;
}

export interface LinkerOptions {
  /** Inference worker threads; 0 runs onnxruntime on the calling thread. */
  readonly workers: number;
  readonly session: SessionConfig;
  /** Texts whose concepts are kept (least recently used dropped first); 0 keeps none. Default 20,000: about 3 MB of short diagnoses and their codes. */
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
  const open = (kind: 'linker' | 'reranker', modelPath: string): Promise<Runner> =>
    options.workers === 0 ? inProcessRunner(kind, modelPath, options) : poolRunner(kind, modelPath, options);
  const retriever = await open('linker', bundle.modelPath);
  let reranker: Runner | null = null;
  try {
    if (bundle.reranker !== null) reranker = await open('reranker', bundle.reranker.modelPath);
  } catch (e) {
    await retriever.close();
    throw e;
  }
  (options.logger ?? silentLogger).info(
    { linker: bundle.manifest.name, version: bundle.version, reranker: reranker !== null, provider: retriever.provider, workers: options.workers },
    'linker loaded',
  );
  return new BundleLinker(bundle, retriever, reranker, options.cacheSize);
}

/** One query's answer: its nearest names and, with a memory, its nearest training diagnoses (null without one). */
export interface Nearest extends NearestNames {
  readonly memory: readonly MemoryNeighbour[] | null;
}

/** One session kind on workers or on the calling thread, as the pool answers. */
interface Runner {
  readonly provider: string;
  run(inputs: WorkerInputs): Promise<WorkerOutput>;
  close(): Promise<void>;
}

async function inProcessRunner(kind: 'linker' | 'reranker', modelPath: string, options: LinkerOptions): Promise<Runner> {
  const session = await openSessionRunner({ kind, modelPath, session: options.session });
  for (const f of session.fallbacks) options.logger?.warn({ provider: f.provider, reason: f.reason }, 'execution provider unavailable, falling back');
  return { provider: session.provider, run: (inputs) => session.run(inputs), close: () => session.release() };
}

async function poolRunner(kind: SessionKind, modelPath: string, options: LinkerOptions): Promise<Runner> {
  const pool = await createWorkerPool({
    kind,
    modelPath,
    size: options.workers,
    // As for the tagger's workers: unless told, share the usable CPUs instead of one thread per core each.
    session: { ...options.session, intraOpThreads: options.session.intraOpThreads > 0 ? options.session.intraOpThreads : autoIntraOpThreads(options.workers) },
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  return { provider: pool.provider, run: (inputs) => pool.run(inputs), close: () => pool.close() };
}

/**
 * Requests of one turn of the event loop, answered together: each distinct
 * key once, keys sorted by length and cut into batches of similar lengths
 * that run at once.
 */
class TurnBatcher<T> {
  #pending = new Map<string, { resolve: (value: T) => void; reject: (error: unknown) => void }[]>();
  #immediate: NodeJS.Immediate | null = null;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(
    private readonly batchSize: number,
    private readonly lengthOf: (key: string) => number,
    private readonly run: (keys: readonly string[]) => Promise<ArrayLike<T>>,
  ) {}

  get(keys: readonly string[]): Promise<T[]> {
    const out = keys.map(
      (key) =>
        new Promise<T>((resolve, reject) => {
          const waiting = this.#pending.get(key);
          if (waiting === undefined) this.#pending.set(key, [{ resolve, reject }]);
          else waiting.push({ resolve, reject });
        }),
    );
    if (keys.length > 0) this.#immediate ??= setImmediate(() => this.flush());
    return Promise.all(out);
  }

  /** Sends everything pending now. */
  flush(): void {
    if (this.#immediate !== null) clearImmediate(this.#immediate);
    this.#immediate = null;
    const pending = this.#pending;
    this.#pending = new Map();
    const lengths = new Map([...pending.keys()].map((k) => [k, this.lengthOf(k)]));
    const keys = [...lengths.keys()].sort((a, b) => lengths.get(a)! - lengths.get(b)!);
    let b = 0;
    while (b < keys.length) {
      // Every row of a batch is padded to its longest: a batch ends where the next key is much longer than
      // its shortest (a few more, smaller runs cost far less than padding short queries to a long one).
      const limit = paddedLengthLimit(lengths.get(keys[b]!)!);
      let e = b + 1;
      while (e < keys.length && e - b < this.batchSize && lengths.get(keys[e]!)! <= limit) e++;
      const group = keys.slice(b, e);
      b = e;
      const done = this.run(group)
        .then((values) => group.forEach((key, i) => pending.get(key)!.forEach((w) => w.resolve(values[i]!))))
        .catch((error: unknown) => group.forEach((key) => pending.get(key)!.forEach((w) => w.reject(error))))
        .finally(() => this.#inFlight.delete(done));
      this.#inFlight.add(done);
    }
  }

  async drain(): Promise<void> {
    this.flush();
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }
}

/** The longest key a batch starting with a key of `shortest` code points takes: at most a quarter (and 2) longer. */
export const paddedLengthLimit = (shortest: number): number => shortest + Math.max(2, Math.floor(shortest / 4));

/** A (text, candidate row) pair as one batcher key: the row, NUL, the text (the first NUL splits: digits hold none). */
const pairKey = (text: string, row: number): string => `${row}\u0000${text}`;
const splitPairKey = (key: string): { row: number; text: string } => {
  const at = key.indexOf('\u0000');
  return { row: Number(key.slice(0, at)), text: key.slice(at + 1) };
};

class BundleLinker implements Linker {
  readonly bundle: LinkerBundle;
  readonly #retriever: Runner;
  readonly #reranker: Runner | null;
  readonly #cacheSize: number;
  /** Insertion order is recency: a hit is moved to the end, the first entry is the least recently used. */
  readonly #cache = new Map<string, readonly ConceptCode[]>();
  /** Texts being linked now, by text: their answers, shared with every caller that asks meanwhile. */
  readonly #inFlight = new Map<string, Promise<readonly ConceptCode[]>>();
  readonly #queries: TurnBatcher<Nearest>;
  readonly #pairs: TurnBatcher<number>;
  #closed = false;

  constructor(bundle: LinkerBundle, retriever: Runner, reranker: Runner | null, cacheSize: number) {
    this.bundle = bundle;
    this.#retriever = retriever;
    this.#reranker = reranker;
    this.#cacheSize = cacheSize;
    this.#queries = new TurnBatcher(BATCH, codePointLength, (queries) => this.#nearestBatch(queries));
    this.#pairs = new TurnBatcher(BATCH, (key) => codePointLength(key) + this.bundle.names[splitPairKey(key).row]!.length, (keys) => this.#rerankBatch(keys));
  }

  get version(): string {
    return this.bundle.version;
  }

  get entityTypes(): readonly string[] {
    return this.bundle.entityTypes;
  }

  get provider(): string {
    return this.#retriever.provider;
  }

  nearest(queries: readonly string[]): Promise<Nearest[]> {
    if (this.#closed) return Promise.reject(new CnerError('MODEL_CLOSED', 'the linker is closed'));
    return this.#queries.get(queries);
  }

  async link(texts: readonly string[]): Promise<readonly (readonly ConceptCode[])[]> {
    const answers = new Map<string, readonly ConceptCode[] | Promise<readonly ConceptCode[]>>();
    const missing: string[] = [];
    for (const t of new Set(texts)) {
      // A text another caller is linking right now (the same diagnosis in another chunk of the slice) is awaited, not linked twice.
      const known = this.#recall(t) ?? this.#inFlight.get(t);
      if (known === undefined) missing.push(t);
      else answers.set(t, known);
    }
    if (missing.length > 0) {
      const computed = this.#compute(missing);
      missing.forEach((t, i) => {
        const answer = computed.then((concepts) => concepts[i]!);
        this.#inFlight.set(t, answer);
        answers.set(t, answer);
      });
      void computed
        .then((concepts) => missing.forEach((t, i) => this.#remember(t, concepts[i]!)), () => undefined) // the callers get the failure
        .finally(() => missing.forEach((t) => this.#inFlight.delete(t)));
    }
    const distinct = [...answers.keys()];
    const resolved = new Map(await Promise.all(distinct.map(async (t) => [t, await answers.get(t)!] as const)));
    return texts.map((t) => resolved.get(t)!);
  }

  /** The concepts of texts neither cached nor in flight. */
  async #compute(texts: readonly string[]): Promise<(readonly ConceptCode[])[]> {
    const parts = texts.map((t) => queryParts(t, this.bundle.separators));
    const nearest = await this.nearest(parts.flat());
    let at = 0;
    const byText = texts.map((_, i) => nearest.slice(at, (at += parts[i]!.length)));
    return this.bundle.reranker === null ? byText.map((n) => this.#chosen(n)) : this.#reranked(texts, byText);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queries.drain();
    await this.#pairs.drain();
    await this.#retriever.close();
    await this.#reranker?.close();
  }

  #concept(row: number, score: number): ConceptCode {
    // A name heading several rows of the table: its first code (the table's order).
    return Object.freeze({ system: this.bundle.system, code: this.bundle.codes[row]![0]!, name: this.bundle.names[row]!, score });
  }

  /** Without a re-ranker: the decision over the nearest names of the text and its parts. */
  #chosen(nearest: readonly NearestNames[]): readonly ConceptCode[] {
    // A kept name's score: its best cosine to the text or any of its parts.
    const best = new Map<number, number>();
    for (const n of nearest) for (let j = 0; j < n.indices.length; j++) best.set(n.indices[j]!, Math.max(best.get(n.indices[j]!) ?? -1, n.scores[j]!));
    return Object.freeze(chooseNames(nearest, this.bundle.decision).map((i) => this.#concept(i, best.get(i)!)));
  }

  /** With a re-ranker: every text's best candidates scored pair by pair, those that clear the threshold kept. */
  async #reranked(texts: readonly string[], nearest: readonly (readonly Nearest[])[]): Promise<(readonly ConceptCode[])[]> {
    const r = this.bundle.reranker!;
    // The memory is the whole text's (nearest[0]); its parts' neighbours are not used.
    const candidates = nearest.map((n) => toRerank(candidateList(n, r.candidates, n[0]?.memory ?? null), r.decision));
    const probabilities = await this.#pairs.get(texts.flatMap((t, i) => candidates[i]!.map((c) => pairKey(t, c.index))));
    let at = 0;
    return candidates.map((c) => {
      const p = probabilities.slice(at, (at += c.length));
      return Object.freeze(chooseReranked(c, p, r.decision).map(({ index, score }) => this.#concept(index, score)));
    });
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

  async #nearestBatch(queries: readonly string[]): Promise<Nearest[]> {
    const rows = queries.map((q) => Array.from(q).slice(0, this.bundle.maxQueryLength));
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
    const out = await this.#retriever.run({ inputIds, attentionMask, lexiconFeatures: null, batch: rows.length, seq });
    if (out.kind !== 'nearest') throw new CnerError('INTERNAL', `a linker session answered with ${out.kind}`);
    const { scores, indices, k, memory } = out;
    return rows.map((_, i) => ({ indices: indices.subarray(i * k, (i + 1) * k), scores: scores.subarray(i * k, (i + 1) * k), memory: memory === null ? null : neighboursOf(memory, i) }));
  }

  /** [CLS] text [SEP] name [SEP] per pair (each cut to the bundle's length), token types 0 then 1, right-padded. */
  async #rerankBatch(keys: readonly string[]): Promise<Float32Array> {
    const max = this.bundle.reranker!.maxLength;
    const rows = keys.map((key) => {
      const { row, text } = splitPairKey(key);
      const a = Array.from(text).slice(0, max).map((ch) => tokenId(ch, this.bundle.vocab));
      const b = Array.from(this.bundle.names[row]!).slice(0, max).map((ch) => tokenId(ch, this.bundle.vocab));
      return { ids: [CLS_ID, ...a, SEP_ID, ...b, SEP_ID], first: a.length + 2 };
    });
    const seq = Math.max(...rows.map((r) => r.ids.length));
    const inputIds = new BigInt64Array(rows.length * seq).fill(BigInt(PAD_ID)); // [batch, seq]
    const attentionMask = new BigInt64Array(rows.length * seq); // [batch, seq]
    const tokenTypeIds = new BigInt64Array(rows.length * seq); // [batch, seq]
    rows.forEach(({ ids, first }, i) => {
      ids.forEach((id, j) => {
        inputIds[i * seq + j] = BigInt(id);
        attentionMask[i * seq + j] = 1n;
        if (j >= first) tokenTypeIds[i * seq + j] = 1n;
      });
    });
    const out = await this.#reranker!.run({ inputIds, attentionMask, tokenTypeIds, lexiconFeatures: null, batch: rows.length, seq });
    if (out.kind !== 'probabilities') throw new CnerError('INTERNAL', `a re-ranker session answered with ${out.kind}`);
    return out.probabilities;
  }
}

/** Query `i`'s nearest training diagnoses from a batch's memory outputs, best first, each with its gold names (pads dropped). */
function neighboursOf(memory: MemoryOutput, i: number): MemoryNeighbour[] {
  const { m, l } = memory;
  return Array.from({ length: m }, (_, j) => {
    const names: { index: number; cosine: number }[] = [];
    for (let n = 0; n < l; n++) {
      const at = (i * m + j) * l + n; // [batch, m, l]
      if (memory.names[at]! >= 0) names.push({ index: memory.names[at]!, cosine: memory.cosines[at]! });
    }
    return { score: memory.scores[i * m + j]!, names };
  });
}
