// What every `cner` command module implements, and the exit codes they return:
// shared by the dispatcher (main.ts) and the commands, which import only this.

import type { Readable, Writable } from 'node:stream';

export interface CommandIo {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

export interface Command {
  readonly usage: string;
  /** Resolves to the process exit code. */
  run(argv: readonly string[], io: CommandIo): Promise<number>;
}

export const EXIT = Object.freeze({ ok: 0, failures: 1, usage: 2 });
