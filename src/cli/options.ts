// Options shared by the commands that load a model, and small CLI helpers.

import type { ParseArgsConfig } from 'node:util';
import pino from 'pino';
import { LOG_LEVELS } from '../observability/logger.js';
import { CnerError } from '../errors.js';
import type { Logger } from '../model/log.js';
import { DEFAULT_MODEL_OPTIONS, type ModelOptions } from '../model/model.js';
import { type ExecutionProvider, type GraphOptimizationLevel, isExecutionProvider } from '../model/session-options.js';
import { DEFAULT_MODEL, PACKAGE_ROOT, bundledModelNames, resolveModelDir } from '../paths.js';


export const MODEL_FLAGS = {
  model: { type: 'string' },
  workers: { type: 'string' },
  providers: { type: 'string' },
  threads: { type: 'string' },
  'batch-size': { type: 'string' },
  'max-wait-ms': { type: 'string' },
  'log-level': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export const MODEL_FLAGS_USAGE = `Model options:
  --model NAME|DIR     a bundle shipped in the package by name (${bundledModelNames().join(', ')}) or a
                       bundle directory (default: default; env CNER_MODEL_DIR)
  --workers N          inference worker threads (default ${DEFAULT_MODEL_OPTIONS.workers}; 0 = on the main thread)
  --providers LIST     execution providers to try in order, e.g. cuda,cpu (default cpu; CPU is always the fallback)
  --threads N          onnxruntime intra-op threads per worker (default: cores / workers)
  --batch-size N       largest inference batch (default ${DEFAULT_MODEL_OPTIONS.maxBatchSize})
  --max-wait-ms N      how long a batch waits to fill up (default ${DEFAULT_MODEL_OPTIONS.maxWaitMs})
  --log-level LEVEL    pino level for stderr logs (default warn; env CNER_LOG_LEVEL)
`;

type ModelFlagValues = { readonly [K in keyof typeof MODEL_FLAGS]?: string | undefined };

/** --model (a directory relative to the working directory), else CNER_MODEL_DIR (relative to the package root, as `cner serve` reads it), else the default bundle. */
export function modelDirFrom(values: ModelFlagValues, env: NodeJS.ProcessEnv = process.env): string {
  if (values.model !== undefined) return resolveModelDir(values.model, process.cwd());
  return resolveModelDir(env['CNER_MODEL_DIR'] || DEFAULT_MODEL, PACKAGE_ROOT);
}

export function modelOptionsFrom(values: ModelFlagValues, logger: Logger): ModelOptions {
  const providers = (values.providers ?? 'cpu').split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  const unknown = providers.filter((p) => !isExecutionProvider(p));
  if (unknown.length > 0) throw new CnerError('INVALID_CONFIG', `--providers: unknown provider(s) ${unknown.join(', ')}`);
  return {
    workers: int(values.workers, '--workers', DEFAULT_MODEL_OPTIONS.workers, 0),
    maxBatchSize: int(values['batch-size'], '--batch-size', DEFAULT_MODEL_OPTIONS.maxBatchSize, 1),
    maxWaitMs: int(values['max-wait-ms'], '--max-wait-ms', DEFAULT_MODEL_OPTIONS.maxWaitMs, 0),
    session: {
      executionProviders: providers as ExecutionProvider[],
      intraOpThreads: int(values.threads, '--threads', 0, 0),
      graphOptimizationLevel: 'all' satisfies GraphOptimizationLevel,
    },
    logger,
  };
}

export function int(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new CnerError('INVALID_CONFIG', `${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

/** Logs go to stderr (stdout carries results); --log-level, else CNER_LOG_LEVEL, else warn. */
export function stderrLogger(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): pino.Logger {
  const [name, level] = flag !== undefined ? ['--log-level', flag] : ['CNER_LOG_LEVEL', env['CNER_LOG_LEVEL'] || 'warn'];
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new CnerError('INVALID_CONFIG', `${name} must be one of ${LOG_LEVELS.join(', ')}; got ${JSON.stringify(level)}`);
  }
  return pino({ level }, pino.destination(2));
}
