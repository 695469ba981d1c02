// Entry point of one inference worker thread: owns one onnxruntime session
// (a tagger's, a linker's or a re-ranker's) and runs batches sent by the pool.
// onnxruntime-node's run() holds the thread for the whole forward pass, so it
// must not happen on the thread that talks to Kafka.

import { parentPort, workerData } from 'node:worker_threads';
import { isCnerError } from '../errors.js';
import { type FromWorker, type SerializedError, type ToWorker, type WorkerInit, outputBuffers } from './protocol.js';
import { type SessionRunner, openSessionRunner } from './session-runner.js';

const port = parentPort;
if (port === null) throw new Error('inference-worker must run in a worker thread');

const post = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

const serialize = (e: unknown): SerializedError =>
  isCnerError(e)
    ? { code: e.code, message: e.message, context: e.context }
    : { code: null, message: e instanceof Error ? e.message : String(e), context: {} };

async function main(init: WorkerInit): Promise<void> {
  let session: SessionRunner;
  try {
    session = await openSessionRunner(init);
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
