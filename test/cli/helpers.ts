import { Readable, Writable } from 'node:stream';
import type { CommandIo } from '../../src/cli/command.js';

/** In-memory stdio for running a command in-process. */
export function memoryIo(input = ''): CommandIo & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  const sink = (append: (s: string) => void): Writable =>
    new Writable({
      write(chunk: Buffer | string, _enc, done) {
        append(chunk.toString());
        done();
      },
    });
  return {
    stdin: Readable.from([input]),
    stdout: sink((s) => (out += s)),
    stderr: sink((s) => (err += s)),
    out: () => out,
    err: () => err,
  };
}
