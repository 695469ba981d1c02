// A linker bundle opened for use: diagnosis strings in, the concepts they
// denote out (best first), as the training package's OnnxLinker computes
// them: each string and its listed parts are embedded in one batch, the
// graph returns every query's nearest names, and the bundle's decision keeps
// some. This runs onnxruntime on the calling thread (fine for `cner link`);
// the stream processor's inference workers are the next step.

import { PAD_ID, tokenId } from '../pipeline/encode.js';
import type { ConceptCode } from '../pipeline/event.js';
import { type NearestNames, chooseNames, queryParts } from '../pipeline/link.js';
import { type LinkerBundle, loadLinkerBundle } from './linker-bundle.js';
import { DEFAULT_SESSION_CONFIG, type LinkerSession, type SessionConfig, createLinkerSession } from './onnx-session.js';

export interface Linker {
  readonly bundle: LinkerBundle;
  readonly version: string;
  /** Each query part's nearest names, best first (for tests and diagnostics). */
  nearest(queries: readonly string[]): Promise<NearestNames[]>;
  /** Per text, the concepts it denotes, best first (never empty for a non-empty text). */
  link(texts: readonly string[]): Promise<ConceptCode[][]>;
  close(): Promise<void>;
}

/** Queries per onnxruntime run. */
const BATCH = 64;

export async function openLinker(dir: string, session: SessionConfig = DEFAULT_SESSION_CONFIG): Promise<Linker> {
  const bundle = await loadLinkerBundle(dir);
  const ort = await createLinkerSession(bundle.modelPath, session);
  return new BundleLinker(bundle, ort);
}

class BundleLinker implements Linker {
  readonly bundle: LinkerBundle;
  readonly #session: LinkerSession;

  constructor(bundle: LinkerBundle, session: LinkerSession) {
    this.bundle = bundle;
    this.#session = session;
  }

  get version(): string {
    return this.bundle.version;
  }

  async nearest(queries: readonly string[]): Promise<NearestNames[]> {
    const out: NearestNames[] = [];
    for (let b = 0; b < queries.length; b += BATCH) {
      const rows = queries.slice(b, b + BATCH).map((q) => Array.from(q).slice(0, this.bundle.maxQueryLength));
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
      const { scores, indices, k } = await this.#session.run({ inputIds, attentionMask, batch: rows.length, seq });
      for (let i = 0; i < rows.length; i++) out.push({ indices: indices.subarray(i * k, (i + 1) * k), scores: scores.subarray(i * k, (i + 1) * k) });
    }
    return out;
  }

  async link(texts: readonly string[]): Promise<ConceptCode[][]> {
    const parts = texts.map((t) => queryParts(t, this.bundle.separators));
    const nearest = await this.nearest(parts.flat());
    const out: ConceptCode[][] = [];
    let at = 0;
    for (const p of parts) {
      const mine = nearest.slice(at, at + p.length);
      at += p.length;
      // A kept name's score: its best cosine to the text or any of its parts.
      const best = new Map<number, number>();
      for (const n of mine) for (let j = 0; j < n.indices.length; j++) best.set(n.indices[j]!, Math.max(best.get(n.indices[j]!) ?? -1, n.scores[j]!));
      out.push(
        chooseNames(mine, this.bundle.decision).map((i) => ({
          system: this.bundle.system,
          code: this.bundle.codes[i]![0]!, // a name heading several rows: its first (the table's order)
          name: this.bundle.names[i]!,
          score: best.get(i)!,
        })),
      );
    }
    return out;
  }

  close(): Promise<void> {
    return this.#session.release();
  }
}
