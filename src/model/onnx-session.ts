// The only module that imports onnxruntime-node. It turns plain typed arrays
// into ORT tensors and back, so ORT types never reach the pipeline or the
// worker protocol.

import ort from 'onnxruntime-node';
import { CnerError } from '../errors.js';
import { EXECUTION_PROVIDERS, type ExecutionProvider, type GraphOptimizationLevel } from './session-options.js';

export interface SessionConfig {
  /** Tried in order; CPU is always tried last. */
  readonly executionProviders: readonly ExecutionProvider[];
  /** Threads for one run; 0 lets onnxruntime choose (one per core). */
  readonly intraOpThreads: number;
  readonly graphOptimizationLevel: GraphOptimizationLevel;
}

export const DEFAULT_SESSION_CONFIG: SessionConfig = Object.freeze({
  executionProviders: ['cpu'] as const,
  intraOpThreads: 0,
  graphOptimizationLevel: 'all',
});

export interface SessionOutput {
  readonly emissions: Float32Array; // [batch, seq, tags]; owns its whole buffer (transferable)
  readonly dims: readonly [batch: number, seq: number, tags: number];
}

/** One batch's model inputs, as plain typed arrays. */
export interface SessionInputs {
  readonly inputIds: BigInt64Array; // [batch, seq]
  readonly attentionMask: BigInt64Array; // [batch, seq]
  /** [batch, seq, features]; required by a model with a `lexicon_features` input, refused by others. */
  readonly lexiconFeatures: Float32Array | null;
  readonly batch: number;
  readonly seq: number;
}

export interface EmissionsSession {
  /** The execution provider the session was created with. */
  readonly provider: ExecutionProvider;
  /** Per-provider reasons for falling back, in the order tried. */
  readonly fallbacks: readonly { readonly provider: ExecutionProvider; readonly reason: string }[];
  /** Whether the model reads lexicon features (a third input). */
  readonly lexiconFeatures: boolean;
  run(inputs: SessionInputs): Promise<SessionOutput>;
  release(): Promise<void>;
}

const INPUT_IDS = 'input_ids';
const ATTENTION_MASK = 'attention_mask';
const LEXICON_FEATURES_INPUT = 'lexicon_features';
const EMISSIONS = 'emissions';
const SCORES = 'scores';
const INDICES = 'indices';
const TOKEN_TYPE_IDS = 'token_type_ids';
const PROBABILITIES = 'probabilities';
/** The memory outputs cner reads (memory_rows, which training pairs, is left unfetched). */
const MEMORY_FETCHED = ['memory_scores', 'memory_names', 'memory_cosines'] as const;

export async function createSession(modelPath: string, config: SessionConfig = DEFAULT_SESSION_CONFIG): Promise<EmissionsSession> {
  const { session, provider, fallbacks } = await openSession(modelPath, config, [INPUT_IDS, ATTENTION_MASK], [EMISSIONS]);
  return wrap(session, provider, fallbacks);
}

/**
 * One ORT session on the first execution provider that loads the model (CPU
 * last), checked to have the named inputs and outputs.
 */
async function openSession(
  modelPath: string,
  config: SessionConfig,
  inputs: readonly string[],
  outputs: readonly string[],
): Promise<{ session: ort.InferenceSession; provider: ExecutionProvider; fallbacks: EmissionsSession['fallbacks'] }> {
  const order: ExecutionProvider[] = [...config.executionProviders.filter((p) => p !== 'cpu'), 'cpu'];
  const fallbacks: { provider: ExecutionProvider; reason: string }[] = [];
  for (const provider of order) {
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelPath, {
        // CPU as the second provider runs the nodes an accelerator cannot.
        executionProviders: provider === 'cpu' ? ['cpu'] : [EXECUTION_PROVIDERS[provider], 'cpu'],
        intraOpNumThreads: config.intraOpThreads,
        graphOptimizationLevel: config.graphOptimizationLevel,
        // The memory pattern is planned per input shape and kept, and every
        // batch here has a shape of its own (rows × longest chunk): with it
        // on, one session grew to 314 MB over four shapes, without it 205 MB,
        // at the same speed (bench/NOTES.md). The arena stays: without it runs were 5-10 % slower.
        enableMemPattern: false,
      });
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message : String(cause);
      fallbacks.push({ provider, reason });
      if (provider === 'cpu') {
        throw new CnerError('MODEL_LOAD_FAILED', `onnxruntime cannot load ${modelPath}: ${reason}`, {
          cause,
          context: { modelPath, fallbacks },
        });
      }
      continue;
    }
    checkSignature(session, modelPath, inputs, outputs);
    return { session, provider, fallbacks };
  }
  throw new Error('unreachable: the CPU provider is always tried');
}

/** A linker graph's memory answer for a batch: each query's `m` nearest training pairs and their gold names (padded to `l` with -1). */
export interface MemoryOutput {
  readonly scores: Float32Array; // [batch, m] cosines
  readonly names: Int32Array; // [batch, m, l] rows of the bundle's names, -1 pads
  readonly cosines: Float32Array; // [batch, m, l] the query's cosine to each name
  readonly m: number;
  readonly l: number;
}

/** A linker's answer for a batch of queries: the k nearest names of each, best first, and with a memory its nearest training pairs. */
export interface NearestOutput {
  readonly scores: Float32Array; // [batch, k] cosines
  readonly indices: Int32Array; // [batch, k] rows of the bundle's names
  readonly k: number;
  readonly memory: MemoryOutput | null;
}

export interface LinkerSession {
  readonly provider: ExecutionProvider;
  readonly fallbacks: EmissionsSession['fallbacks'];
  run(inputs: Omit<SessionInputs, 'lexiconFeatures'>): Promise<NearestOutput>;
  release(): Promise<void>;
}

/**
 * A linker bundle's graph (`cner-train link-export`): input_ids,
 * attention_mask → scores, indices; a graph with a memory adds
 * memory_scores, memory_rows, memory_names, memory_cosines (memory_rows is
 * for the training package's own checks and is not fetched here).
 */
export async function createLinkerSession(modelPath: string, config: SessionConfig = DEFAULT_SESSION_CONFIG): Promise<LinkerSession> {
  const { session, provider, fallbacks } = await openSession(modelPath, config, [INPUT_IDS, ATTENTION_MASK], [SCORES, INDICES]);
  const withMemory = MEMORY_FETCHED.every((n) => session.outputNames.includes(n));
  const fetches = withMemory ? [SCORES, INDICES, ...MEMORY_FETCHED] : [SCORES, INDICES];
  return {
    provider,
    fallbacks,
    async run({ inputIds, attentionMask, batch, seq }) {
      if (inputIds.length !== batch * seq || attentionMask.length !== batch * seq) {
        throw new RangeError(`inputs hold ${inputIds.length}/${attentionMask.length} values, expected ${batch}×${seq}`);
      }
      const out = await runSession(session, { [INPUT_IDS]: new ort.Tensor('int64', inputIds, [batch, seq]), [ATTENTION_MASK]: new ort.Tensor('int64', attentionMask, [batch, seq]) }, { batch, seq, provider }, fetches);
      const scores = out[SCORES]!;
      const indices = out[INDICES]!;
      const k = scores.dims[1] ?? 0;
      if (scores.type !== 'float32' || indices.type !== 'int64' || scores.dims[0] !== batch || indices.dims[0] !== batch || indices.dims[1] !== k) {
        throw new CnerError('INFERENCE_FAILED', `linker outputs are ${scores.type} [${scores.dims.join(', ')}] and ${indices.type} [${indices.dims.join(', ')}], expected float32 and int64 [${batch}, k]`, {
          context: { batch, seq },
        });
      }
      const rows = indices.data as BigInt64Array;
      return { scores: Float32Array.from(scores.data as Float32Array), indices: Int32Array.from(rows, (v) => Number(v)), k, memory: withMemory ? memoryOf(out, batch, seq) : null };
    },
    release: () => session.release(),
  };
}

/** The memory outputs of a batch, checked for their types and shapes. */
function memoryOf(out: ort.InferenceSession.OnnxValueMapType, batch: number, seq: number): MemoryOutput {
  const [scores, names, cosines] = MEMORY_FETCHED.map((n) => out[n]!) as [ort.Tensor, ort.Tensor, ort.Tensor];
  const m = scores.dims[1] ?? 0;
  const l = names.dims[2] ?? 0;
  const shaped = (t: ort.Tensor, type: string, dims: readonly number[]): boolean => t.type === type && t.dims.length === dims.length && t.dims.every((d, i) => d === dims[i]);
  if (!shaped(scores, 'float32', [batch, m]) || !shaped(names, 'int64', [batch, m, l]) || !shaped(cosines, 'float32', [batch, m, l])) {
    throw new CnerError('INFERENCE_FAILED', `linker memory outputs are ${[scores, names, cosines].map((t) => `${t.type} [${t.dims.join(', ')}]`).join(', ')}, expected float32 [${batch}, m], int64 and float32 [${batch}, m, l]`, {
      context: { batch, seq },
    });
  }
  return {
    scores: Float32Array.from(scores.data as Float32Array),
    names: Int32Array.from(names.data as BigInt64Array, (v) => Number(v)),
    cosines: Float32Array.from(cosines.data as Float32Array),
    m,
    l,
  };
}

/** One batch of (text, name) pairs: [CLS] text [SEP] name [SEP], token types 0 then 1, right-padded. */
export interface PairInputs {
  readonly inputIds: BigInt64Array; // [batch, seq]
  readonly attentionMask: BigInt64Array; // [batch, seq]
  readonly tokenTypeIds: BigInt64Array; // [batch, seq]
  readonly batch: number;
  readonly seq: number;
}

export interface RerankerSession {
  readonly provider: ExecutionProvider;
  readonly fallbacks: EmissionsSession['fallbacks'];
  /** Each pair's probability that the name is one of the text's standard names: [batch]. */
  run(inputs: PairInputs): Promise<Float32Array>;
  release(): Promise<void>;
}

/** A linker bundle's re-ranker (`cner-train rerank-export`): input_ids, attention_mask, token_type_ids → probabilities. */
export async function createRerankerSession(modelPath: string, config: SessionConfig = DEFAULT_SESSION_CONFIG): Promise<RerankerSession> {
  const { session, provider, fallbacks } = await openSession(modelPath, config, [INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS], [PROBABILITIES]);
  return {
    provider,
    fallbacks,
    async run({ inputIds, attentionMask, tokenTypeIds, batch, seq }) {
      const size = batch * seq;
      if (inputIds.length !== size || attentionMask.length !== size || tokenTypeIds.length !== size) {
        throw new RangeError(`inputs hold ${inputIds.length}/${attentionMask.length}/${tokenTypeIds.length} values, expected ${batch}×${seq}`);
      }
      const out = await runSession(
        session,
        {
          [INPUT_IDS]: new ort.Tensor('int64', inputIds, [batch, seq]),
          [ATTENTION_MASK]: new ort.Tensor('int64', attentionMask, [batch, seq]),
          [TOKEN_TYPE_IDS]: new ort.Tensor('int64', tokenTypeIds, [batch, seq]),
        },
        { batch, seq, provider },
      );
      const p = out[PROBABILITIES]!;
      if (p.type !== 'float32' || p.dims.length !== 1 || p.dims[0] !== batch) {
        throw new CnerError('INFERENCE_FAILED', `reranker output is ${p.type} [${p.dims.join(', ')}], expected float32 [${batch}]`, { context: { batch, seq } });
      }
      return Float32Array.from(p.data as Float32Array);
    },
    release: () => session.release(),
  };
}

/** One run; onnxruntime's failures become INFERENCE_FAILED (retriable) with the batch's shape. */
async function runSession(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, context: Record<string, unknown>, fetches?: readonly string[]): Promise<ort.InferenceSession.OnnxValueMapType> {
  try {
    return await (fetches === undefined ? session.run(feeds) : session.run(feeds, [...fetches]));
  } catch (cause) {
    throw new CnerError('INFERENCE_FAILED', `onnxruntime run failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause, context });
  }
}

function checkSignature(session: ort.InferenceSession, modelPath: string, inputs: readonly string[], outputs: readonly string[]): void {
  const missing = [
    ...inputs.filter((n) => !session.inputNames.includes(n)).map((n) => `input ${n}`),
    ...outputs.filter((n) => !session.outputNames.includes(n)).map((n) => `output ${n}`),
  ];
  if (missing.length > 0) {
    void session.release();
    throw new CnerError('MODEL_LOAD_FAILED', `${modelPath} lacks ${missing.join(', ')} (has inputs ${session.inputNames.join(', ')}; outputs ${session.outputNames.join(', ')})`, {
      context: { modelPath, inputs: session.inputNames, outputs: session.outputNames },
    });
  }
}

function wrap(session: ort.InferenceSession, provider: ExecutionProvider, fallbacks: EmissionsSession['fallbacks']): EmissionsSession {
  const wantsFeatures = session.inputNames.includes(LEXICON_FEATURES_INPUT);
  return {
    provider,
    fallbacks,
    lexiconFeatures: wantsFeatures,
    async run({ inputIds, attentionMask, lexiconFeatures, batch, seq }) {
      const size = batch * seq;
      if (inputIds.length !== size || attentionMask.length !== size) {
        throw new RangeError(`inputs hold ${inputIds.length}/${attentionMask.length} values, expected ${batch}×${seq}`);
      }
      if (wantsFeatures !== (lexiconFeatures !== null)) {
        throw new RangeError(wantsFeatures ? `the model needs ${LEXICON_FEATURES_INPUT}` : `the model has no ${LEXICON_FEATURES_INPUT} input`);
      }
      const feeds: Record<string, ort.Tensor> = {
        [INPUT_IDS]: new ort.Tensor('int64', inputIds, [batch, seq]),
        [ATTENTION_MASK]: new ort.Tensor('int64', attentionMask, [batch, seq]),
      };
      if (lexiconFeatures !== null) {
        if (size === 0 || lexiconFeatures.length % size !== 0) throw new RangeError(`${LEXICON_FEATURES_INPUT} hold ${lexiconFeatures.length} values, not a multiple of ${batch}×${seq}`);
        feeds[LEXICON_FEATURES_INPUT] = new ort.Tensor('float32', lexiconFeatures, [batch, seq, lexiconFeatures.length / size]);
      }
      const out = await runSession(session, feeds, { batch, seq, provider });
      const tensor = out[EMISSIONS]!;
      const [b, s, tags] = tensor.dims;
      if (tensor.type !== 'float32' || tensor.dims.length !== 3 || b !== batch || s !== seq) {
        throw new CnerError('INFERENCE_FAILED', `model output ${EMISSIONS} is ${tensor.type} [${tensor.dims.join(', ')}], expected float32 [${batch}, ${seq}, tags]`, {
          context: { batch, seq, dims: tensor.dims },
        });
      }
      const data = tensor.data as Float32Array;
      // A view into a larger buffer cannot be transferred on its own.
      const emissions = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
      return { emissions, dims: [batch, seq, tags!] };
    },
    release: () => session.release(),
  };
}
