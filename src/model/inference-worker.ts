// Entry point of one inference worker thread: owns one onnxruntime session
// (a tagger's or a linker's) and runs batches sent by the pool.
// onnxruntime-node's run() holds the thread for the whole forward pass, so it
// must not happen on the thread that talks to Kafka.

import { parentPort, workerData } from 'node:worker_threads';
import { isCnerError } from '../errors.js';
import { createLinkerSession, createRerankerSession, createSession } from './onnx-session.js';
import { type FromWorker, type SerializedError, type ToWorker, type WorkerInit, type WorkerInputs, type WorkerOutput, outputBuffers } from './protocol.js';

const port = parentPort;
if (port === null) throw new Error('inference-worker must run in a worker thread');

const post = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

const serialize = (e: unknown): SerializedError =>
  isCnerError(e)
    ? { code: e.code, message: e.message, context: e.context }
    : { code: null, message: e instanceof Error ? e.message : String(e), context: {} };

interface Runner {
  readonly provider: string;
  readonly fallbacks: readonly { provider: string; reason: string }[];
  run(inputs: WorkerInputs): Promise<WorkerOutput>;
  release(): Promise<void>;
}

async function open(init: WorkerInit): Promise<Runner> {
  if (init.kind === 'reranker') {
    const s = await createRerankerSession(init.modelPath, init.session);
    return {
      ...s,
      run: async ({ tokenTypeIds, ...inputs }) => {
        if (tokenTypeIds == null) throw new RangeError('a re-ranker batch needs token_type_ids');
        return { kind: 'probabilities', probabilities: await s.run({ ...inputs, tokenTypeIds }) };
      },
      release: () => s.release(),
    };
  }
  if (init.kind === 'linker') {
    const s = await createLinkerSession(init.modelPath, init.session);
    return { ...s, run: async (inputs) => ({ kind: 'nearest', ...(await s.run(inputs)) }), release: () => s.release() };
  }
  const s = await createSession(init.modelPath, init.session);
  return { provider: s.provider, fallbacks: s.fallbacks, run: async (inputs) => ({ kind: 'emissions', ...(await s.run(inputs)) }), release: () => s.release() };
}

async function main(init: WorkerInit): Promise<void> {
  let session: Runner;
  try {
    session = await open(init);
  } catch (e) {
    post({ type: 'start-failed', error: serialize(e) }); // the pool terminates this worker
    return;
  }
  post({ type: 'ready', provider: session.provider, fallbacks: session.fallbacks });

  port!.on('message', (message: ToWorker) => {
    if (message.type === 'close') {
      void session.release().finally(() => port!.close());
      return;
    }
    const { id, ...inputs } = message;
    session.run(inputs).then(
      (output) => post({ type: 'result', id, output }, outputBuffers(output)),
      (e: unknown) => post({ type: 'failed', id, error: serialize(e) }),
    );
  });
}

await main(workerData as WorkerInit);
