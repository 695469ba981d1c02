// What the commands that load a model share: their flags, which are the
// configuration variables given on the command line (config.ts decodes both
// in one pass, with one set of rules and defaults), and a stderr logger.

import type { ParseArgsConfig } from 'node:util';
import type { Logger } from 'pino';
import { type Config, type LinkerSetup, type ModelFlag, MODEL_FLAGS, VARIABLES, linkerOptionsOf, loadConfig, modelOptionsOf } from '../config.js';
import type { LinkerSource, ModelOptions } from '../model/model.js';
import { createLogger } from '../observability/logger.js';
import { bundledModelNames } from '../paths.js';

export const MODEL_FLAG_OPTIONS = {
  model: { type: 'string' },
  linker: { type: 'string' },
  workers: { type: 'string' },
  providers: { type: 'string' },
  threads: { type: 'string' },
  'batch-size': { type: 'string' },
  'max-wait-ms': { type: 'string' },
  'log-level': { type: 'string' },
} as const satisfies Record<ModelFlag, NonNullable<ParseArgsConfig['options']>[string]>;

const HELP: Readonly<Record<ModelFlag, [string, string]>> = {
  model: ['NAME|DIR', `a bundle shipped in the package by name (${bundledModelNames().join(', ')}) or a bundle directory`],
  linker: ['NAME|DIR|bundle|none', 'ICD-10 linker for the entities\' codes: a linker bundle shipped by name (icd10) or a directory (cner-train link-export); bundle = the one the model bundle carries (cner-train link-attach), if any; none = no linking'],
  workers: ['N', 'inference worker threads (0 = onnxruntime on the command\'s own thread)'],
  providers: ['LIST', 'execution providers to try in order, e.g. cuda,cpu (CPU is always the fallback)'],
  threads: ['N', 'onnxruntime intra-op threads per worker (0 = the usable CPUs divided among the workers)'],
  'batch-size': ['N', 'largest inference batch, in 128-code-point chunks'],
  'max-wait-ms': ['N', 'how long a batch waits to fill up'],
  'log-level': ['LEVEL', 'pino level of the logs on stderr (default here: warn)'],
};

const defaultOf = (variable: string): string => VARIABLES.find((v) => v.name === variable)?.default ?? '';

export const MODEL_FLAGS_USAGE = `Model options (each one sets the variable named, and wins over it; same defaults as cner serve):
${(Object.keys(MODEL_FLAGS) as ModelFlag[])
  .map((f) => {
    const [arg, help] = HELP[f];
    const variable = MODEL_FLAGS[f];
    const dflt = f === 'log-level' ? '' : `; default ${defaultOf(variable)}`;
    return `  --${`${f} ${arg}`.padEnd(20)} ${help} (${variable}${dflt})`;
  })
  .join('\n')}
`;

export interface ToolSetup {
  readonly config: Config;
  readonly log: Logger;
  readonly modelDir: string;
  readonly modelOptions: ModelOptions;
  /** Which linker links (CNER_LINKER_DIR / --linker): the model bundle's (`bundle`), none, or a linker bundle directory. */
  readonly linker: LinkerSource;
  readonly linkerOptions: LinkerSetup;
}

/** The configuration of a command that loads a model: flags over environment, decoded once; logs go to stderr (stdout carries results). */
export function toolSetup(values: { readonly [K in ModelFlag]?: string | undefined }, env: NodeJS.ProcessEnv = process.env): ToolSetup {
  const { config } = loadConfig(env, 'tool', values);
  const log = createLogger({ level: config.logLevel, destination: 'stderr' });
  return {
    config,
    log,
    modelDir: config.model.dir,
    modelOptions: modelOptionsOf(config.model, log),
    linker: config.model.linker,
    linkerOptions: linkerOptionsOf(config.model, log),
  };
}
