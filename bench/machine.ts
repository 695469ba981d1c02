// Facts about the machine and the software a benchmark ran on, kept with its
// numbers (numbers from different machines or loads are not comparable).

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';

export interface Machine {
  readonly cpuModel: string;
  readonly logicalCores: number;
  readonly availableParallelism: number;
  readonly memoryGb: number;
  readonly os: string;
  readonly node: string;
  readonly onnxruntimeNode: string;
  readonly gitCommit: string;
  /** Uncommitted changes in the checkout when the benchmark ran. */
  readonly gitDirty: boolean;
  readonly loadAverageStart: readonly number[];
  loadAverageEnd?: readonly number[];
  /** Filled from the peers' answers. */
  python?: Record<string, unknown>;
}

export function machineFacts(root: string): Machine {
  const require = createRequire(import.meta.url);
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch {
    // not Linux
  }
  return {
    cpuModel,
    logicalCores: os.cpus().length,
    availableParallelism: os.availableParallelism(),
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    onnxruntimeNode: (require('onnxruntime-node/package.json') as { version: string }).version,
    gitCommit: git(root, ['rev-parse', 'HEAD']) ?? 'unknown',
    gitDirty: (git(root, ['status', '--porcelain']) ?? '') !== '',
    loadAverageStart: os.loadavg().map(round2),
  };
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export const loadAverage = (): number[] => os.loadavg().map(round2);

/** A read-only git query; null outside a checkout. */
function git(root: string, args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
