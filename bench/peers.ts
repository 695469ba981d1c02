// The Python peers (bench/python_peer.py, bench/torch_peer.py) as long-lived
// child processes: the model is loaded once, then the driver asks for one
// timed run at a time, so runs of cner and of the peers can be interleaved.
// One JSON object per line each way (protocol in bench/peer_common.py).

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface PeerRun {
  readonly wall_s: number;
  readonly cpu_s: number;
  /** Time inside the model call (onnxruntime run / torch forward). */
  readonly model_s: number;
  readonly records: number;
  readonly chunks: number;
  /** Per record: [start, end, code]; only when asked for. */
  readonly entities?: [number, number, string][][];
}

export interface ViterbiTiming {
  readonly per_chunk_us: number[];
  readonly batched_per_chunk_us: number[];
  readonly batched_same_paths: boolean;
  readonly paths: number[][];
}

export class Peer {
  readonly name: string;
  readonly info: Record<string, unknown>;
  readonly #child: ChildProcess;
  readonly #lines: AsyncIterator<string>;
  readonly #stderr: string[];

  private constructor(name: string, child: ChildProcess, lines: AsyncIterator<string>, stderr: string[], info: Record<string, unknown>) {
    this.name = name;
    this.#child = child;
    this.#lines = lines;
    this.#stderr = stderr;
    this.info = info;
  }

  /** Starts `python script args…` and waits for its ready line. */
  static async start(name: string, python: string, script: string, args: readonly string[], root: string): Promise<Peer> {
    const child = spawn(python, [script, ...args], {
      cwd: path.dirname(script),
      // This checkout's training sources first (the shared venv's editable install may point elsewhere).
      env: { ...process.env, PYTHONPATH: path.join(root, 'training', 'src'), PYTHONUNBUFFERED: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stderr: string[] = [];
    child.stderr.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done === true) {
      throw new Error(`${name} peer exited before it was ready:\n${stderr.join('').slice(-3_000)}`);
    }
    const hello = JSON.parse(first.value) as { ready: boolean; info: Record<string, unknown> };
    return new Peer(name, child, lines, stderr, hello.info);
  }

  async request<T>(message: Record<string, unknown>): Promise<T> {
    this.#child.stdin!.write(`${JSON.stringify(message)}\n`);
    const next = await this.#lines.next();
    if (next.done === true) throw new Error(`${this.name} peer exited:\n${this.#stderr.join('').slice(-3_000)}`);
    const answer = JSON.parse(next.value) as T & { error?: string };
    if (answer.error !== undefined) throw new Error(`${this.name} peer: ${answer.error}`);
    return answer;
  }

  load(file: string): Promise<{ records: number }> {
    return this.request({ cmd: 'load', file });
  }

  run(entities: boolean): Promise<PeerRun> {
    return this.request({ cmd: 'run', entities });
  }

  viterbi(file: string, count: number, length: number, tags: number, repeat: number): Promise<ViterbiTiming> {
    return this.request({ cmd: 'viterbi', file, count, length, tags, repeat });
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.stdin!.end(`${JSON.stringify({ cmd: 'quit' })}\n`);
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
