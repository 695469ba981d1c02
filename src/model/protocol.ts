// Messages between the worker pool (main thread) and an inference worker.
// Plain data and typed arrays only; buffers are transferred, not copied.

import type { SessionConfig } from './onnx-session.js';

export interface WorkerInit {
  readonly modelPath: string;
  readonly session: SessionConfig;
}

export interface SerializedError {
  readonly code: string | null; // a CnerError code, or null for anything else
  readonly message: string;
  readonly context: Readonly<Record<string, unknown>>;
}

export type ToWorker =
  | {
      readonly type: 'run';
      readonly id: number;
      readonly inputIds: BigInt64Array; // [batch, seq]
      readonly attentionMask: BigInt64Array; // [batch, seq]
      readonly lexiconFeatures: Float32Array | null; // [batch, seq, features]
      readonly batch: number;
      readonly seq: number;
    }
  | { readonly type: 'close' };

export type FromWorker =
  | { readonly type: 'ready'; readonly provider: string; readonly fallbacks: readonly { provider: string; reason: string }[] }
  | { readonly type: 'start-failed'; readonly error: SerializedError }
  | { readonly type: 'result'; readonly id: number; readonly emissions: Float32Array; readonly dims: readonly [number, number, number] }
  | { readonly type: 'failed'; readonly id: number; readonly error: SerializedError };
