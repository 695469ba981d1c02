// Messages between the worker pool (main thread) and an inference worker.
// Plain data and typed arrays only; buffers are transferred, not copied.
// A worker holds one session of one kind: a tagger's (emissions), a linker's
// (each query's nearest names) or a linker's re-ranker (each pair's probability).

import type { MemoryOutput, SessionConfig } from './onnx-session.js';

export type SessionKind = 'tagger' | 'linker' | 'reranker';

export interface WorkerInit {
  readonly kind: SessionKind;
  readonly modelPath: string;
  readonly session: SessionConfig;
}

export interface SerializedError {
  readonly code: string | null; // a CnerError code, or null for anything else
  readonly message: string;
  readonly context: Readonly<Record<string, unknown>>;
}

/** One batch's inputs; lexicon features only for a tagger that reads them, token types only for a re-ranker. */
export interface WorkerInputs {
  readonly inputIds: BigInt64Array; // [batch, seq]
  readonly attentionMask: BigInt64Array; // [batch, seq]
  readonly lexiconFeatures: Float32Array | null; // [batch, seq, features]
  readonly tokenTypeIds?: BigInt64Array | null; // [batch, seq]
  readonly batch: number;
  readonly seq: number;
}

/** What a batch gives back, by the kind of session that ran it. */
export type WorkerOutput =
  | { readonly kind: 'emissions'; readonly emissions: Float32Array; readonly dims: readonly [number, number, number] } // [batch, seq, tags]
  | { readonly kind: 'nearest'; readonly scores: Float32Array; readonly indices: Int32Array; readonly k: number; readonly memory: MemoryOutput | null } // [batch, k] each
  | { readonly kind: 'probabilities'; readonly probabilities: Float32Array }; // [batch]

export type ToWorker = ({ readonly type: 'run'; readonly id: number } & WorkerInputs) | { readonly type: 'close' };

export type FromWorker =
  | { readonly type: 'ready'; readonly provider: string; readonly fallbacks: readonly { provider: string; reason: string }[] }
  | { readonly type: 'start-failed'; readonly error: SerializedError }
  | { readonly type: 'result'; readonly id: number; readonly output: WorkerOutput }
  | { readonly type: 'failed'; readonly id: number; readonly error: SerializedError };

/** The buffers of an output, to transfer with it. */
export const outputBuffers = (o: WorkerOutput): ArrayBuffer[] =>
  (o.kind === 'emissions'
    ? [o.emissions.buffer]
    : o.kind === 'nearest'
      ? [o.scores.buffer, o.indices.buffer, ...(o.memory === null ? [] : [o.memory.scores.buffer, o.memory.names.buffer, o.memory.cosines.buffer])]
      : [o.probabilities.buffer]) as ArrayBuffer[];

/** The buffers of a batch's inputs, to transfer with it. */
export const inputBuffers = (i: WorkerInputs): ArrayBuffer[] =>
  [i.inputIds.buffer, i.attentionMask.buffer, ...(i.lexiconFeatures === null ? [] : [i.lexiconFeatures.buffer]), ...(i.tokenTypeIds == null ? [] : [i.tokenTypeIds.buffer])] as ArrayBuffer[];
