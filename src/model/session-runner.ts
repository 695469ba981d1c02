// One onnxruntime session of a given kind behind the worker protocol's shape
// (WorkerInputs in, WorkerOutput out): what an inference worker runs, and
// what the linker runs on the calling thread when it has no workers.

import { createLinkerSession, createRerankerSession, createSession } from './onnx-session.js';
import type { WorkerInit, WorkerInputs, WorkerOutput } from './protocol.js';

export interface SessionRunner {
  readonly provider: string;
  readonly fallbacks: readonly { provider: string; reason: string }[];
  run(inputs: WorkerInputs): Promise<WorkerOutput>;
  release(): Promise<void>;
}

export async function openSessionRunner(init: WorkerInit): Promise<SessionRunner> {
  if (init.kind === 'reranker') {
    const s = await createRerankerSession(init.modelPath, init.session);
    return {
      ...s,
      run: async ({ tokenTypeIds, ...inputs }) => {
        if (tokenTypeIds == null) throw new RangeError('a re-ranker batch needs token_type_ids');
        return { kind: 'probabilities', probabilities: await s.run({ ...inputs, tokenTypeIds }) };
      },
    };
  }
  if (init.kind === 'linker') {
    const s = await createLinkerSession(init.modelPath, init.session);
    return { ...s, run: async (inputs) => ({ kind: 'nearest', ...(await s.run(inputs)) }) };
  }
  const s = await createSession(init.modelPath, init.session);
  return { ...s, run: async (inputs) => ({ kind: 'emissions', ...(await s.run(inputs)) }) };
}
