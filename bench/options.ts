// Command line of `npm run bench` (bench/run.ts).

import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { LINKER_SUBDIR } from '../src/model/bundle.js';
import type { ModelSettings } from './inprocess.js';

export const USAGE = `npm run bench -- [options]

Runs cner and its Python peers side by side on the same texts, machine and
model bundle; prints a table and writes the results as JSON.

  --input FILE          JSONL texts ("originalText" or "text" per line)
                        (default ../shared/data/ccks2019/train.jsonl when present,
                        else bench/fixtures/smoke.jsonl)
  --limit N             only the first N records (the next N, where the input has them,
                        warm each Kafka processor up before it is timed)
  --bundle DIR          the peers' model bundle (default models/default-f32, the float32
                        bundle the shipped default was quantized from: what a Python team
                        would serve); cner runs it too unless --cner-bundle says otherwise
  --cner-bundle DIR     cner's bundle (default: models/default, the static int8 copy, when
                        --bundle is not given; else --bundle); an int8 copy's entities are
                        compared with the float32 peers' as an agreement F1, not required identical
  --linker NAME|DIR     also run cner with this ICD-10 linker, interleaved with cner alone, for the
                        cost of linking; its cache starts empty at each pass, as in a processor
                        that has just started (default CNER_LINKER_DIR: bundle = the linker
                        cner's bundle carries, if any; --smoke: the tiny linker of the fixtures;
                        none: leave it out)
  --reps N              timed runs of each contender, interleaved (default 5; --smoke 1)
  --out FILE            results JSON (default bench/results/<timestamp>.json)
  --threads N           onnxruntime intra-op threads, all contenders
                        (default CNER_INTRA_OP_THREADS or cner serve's default)
  --workers N           cner inference worker threads (default CNER_INFERENCE_WORKERS or serve's default)
  --viterbi-chunks N    128-character windows for the Viterbi comparison (default 512)
  --no-torch            leave out the PyTorch peer (for bundles its Tagger cannot
                        represent: int8 copies; ensembles run as cner_train.export.Ensemble)
  --kafka MODE          auto (default: when KAFKA_BROKERS and SCHEMA_REGISTRY_URL are set),
                        on (fail without them) or off
  --kafka-records N     records timed in the saturation run, after the warm-up records (default: as many
                        as texts, at least 1000; with a linker exactly as many, so that no text repeats
                        into the linker's cache)
  --latency-seconds S   length of the fixed-rate latency run (default 30)
  --partitions N        partitions of the benchmark's topics (default 3, cner serve's default)
  --python PATH         Python with onnxruntime, numpy, torch (default .venv/bin/python)
  --smoke               tiny and quick (CI): the fixture texts, 1 repetition, short Kafka runs
  -h, --help`;

export interface BenchOptions {
  readonly root: string;
  readonly input: string;
  readonly limit: number | null;
  readonly bundle: string;
  /** What cner runs: --bundle unless --cner-bundle names another (an int8 copy). */
  readonly cnerBundle: string;
  /** A linker bundle for the linking run; null: none. */
  readonly linker: string | null;
  readonly reps: number;
  readonly out: string;
  readonly settings: ModelSettings;
  readonly viterbiChunks: number;
  readonly torch: boolean;
  readonly kafka: 'auto' | 'on' | 'off';
  readonly kafkaRecords: number | null;
  readonly latencySeconds: number;
  readonly partitions: number;
  readonly python: string;
  readonly smoke: boolean;
  readonly argv: readonly string[];
}

export const SMOKE_FIXTURE = 'bench/fixtures/smoke.jsonl';
const CCKS2019 = '../shared/data/ccks2019/train.jsonl';
const TINY_LINKER = 'fixtures/tiny-linker-bundle';
/** The float32 bundle models/default (static int8, `cner-train quantize --method static`) was made from. */
const PEER_BUNDLE = 'models/default-f32';

/** The linker a model bundle carries in linker/ (cner-train link-attach), or null. */
const carriedLinker = (bundle: string): string | null => (existsSync(path.join(bundle, LINKER_SUBDIR, 'manifest.json')) ? path.join(bundle, LINKER_SUBDIR) : null);

/** null: --help was asked for. */
export function parseOptions(argv: readonly string[], root: string, now: Date = new Date()): BenchOptions | null {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      input: { type: 'string' },
      limit: { type: 'string' },
      bundle: { type: 'string' },
      'cner-bundle': { type: 'string' },
      linker: { type: 'string' },
      reps: { type: 'string' },
      out: { type: 'string' },
      threads: { type: 'string' },
      workers: { type: 'string' },
      'viterbi-chunks': { type: 'string' },
      'no-torch': { type: 'boolean' },
      kafka: { type: 'string' },
      'kafka-records': { type: 'string' },
      'latency-seconds': { type: 'string' },
      partitions: { type: 'string' },
      python: { type: 'string' },
      smoke: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help === true) return null;
  const smoke = values.smoke === true;
  const abs = (p: string): string => path.resolve(root, p);
  const int = (raw: string | undefined, name: string, fallback: number, min: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${raw}`);
    return n;
  };
  const kafka = values.kafka ?? 'auto';
  if (kafka !== 'auto' && kafka !== 'on' && kafka !== 'off') throw new RangeError(`--kafka must be auto, on or off, got ${kafka}`);

  // cner serve's model settings (CNER_* variables or their defaults), so the in-process run is the deployed one.
  const model = loadConfig(process.env, 'demo', values.linker === undefined && smoke ? { linker: TINY_LINKER } : { linker: values.linker }).config.model;
  const cnerBundle = values['cner-bundle'] ?? values.bundle ?? 'models/default';
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  return {
    root,
    input: abs(values.input ?? (!smoke && existsSync(abs(CCKS2019)) ? CCKS2019 : SMOKE_FIXTURE)),
    limit: values.limit === undefined ? null : int(values.limit, '--limit', 0, 1),
    bundle: abs(values.bundle ?? PEER_BUNDLE),
    cnerBundle: abs(cnerBundle),
    // CNER_LINKER_DIR=bundle: the linker cner's bundle carries, as cner serve would link with it.
    linker: model.linker.kind === 'bundle' ? carriedLinker(abs(cnerBundle)) : model.linkerDir,
    reps: int(values.reps, '--reps', smoke ? 1 : 5, 1),
    out: abs(values.out ?? `bench/results/${stamp}${smoke ? '-smoke' : ''}.json`),
    settings: {
      workers: int(values.workers, '--workers', model.workers, 1),
      intraOpThreads: int(values.threads, '--threads', model.intraOpThreads, 0),
      maxBatchSize: model.maxBatchSize,
      maxWaitMs: model.maxWaitMs,
    },
    viterbiChunks: int(values['viterbi-chunks'], '--viterbi-chunks', smoke ? 32 : 512, 1),
    torch: values['no-torch'] !== true,
    kafka,
    kafkaRecords: values['kafka-records'] === undefined ? null : int(values['kafka-records'], '--kafka-records', 0, 1),
    latencySeconds: int(values['latency-seconds'], '--latency-seconds', smoke ? 3 : 30, 1),
    partitions: int(values.partitions, '--partitions', 3, 1),
    python: abs(values.python ?? '.venv/bin/python'),
    smoke,
    argv,
  };
}
