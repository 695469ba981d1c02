// The benchmark's result (what bench/results/*.json hold), the targets of
// issue 6 judged against it, and its rendering as a text table (stdout) or
// Markdown (BENCHMARKS.md). Targets are reported, never enforced: a run
// fails only when the contenders disagree on the entities or a part errs.

import type { EntityComparison } from './entities.js';
import type { InProcessRun, ModelSettings } from './inprocess.js';
import type { KafkaResult } from './kafka.js';
import type { Machine } from './machine.js';
import { median } from './stats.js';
import type { ViterbiResult } from './viterbi.js';

export interface Settings extends ModelSettings {
  /** The peers' bundle. */
  readonly bundle: string;
  /** cner's bundle: the same, or an int8 copy of it. */
  readonly cnerBundle: string;
  /** cner's model version. */
  readonly modelVersion: string;
  /** cner's bundle is an int8 copy: its dev F1 and its float32 source's, from its manifest. */
  readonly quantization: {
    readonly method: string;
    readonly float32DevF1: number | null;
    readonly int8DevF1: number | null;
    /** The bundle was trained on the dev records too: the two F1s only compare with each other (absent in older results). */
    readonly devSeenInTraining?: boolean;
  } | null;
  readonly input: string;
  readonly records: number;
  readonly chunks: number;
  readonly codePoints: number;
  readonly reps: number;
  readonly smoke: boolean;
  /** Threads each peer's model gets: cner's effective intra-op threads per worker. */
  readonly peerThreads: number;
  readonly recordsPerSlice: number;
  readonly graphOptimization: string;
}

export interface CnerResult {
  readonly runs: readonly InProcessRun[];
  readonly medianRecordsPerSecond: number;
  readonly medianChunksPerSecond: number;
  /** Median over runs of 1 − inference CPU / process CPU; null without per-thread CPU. */
  readonly cpuOutsideInferenceShare: number | null;
  readonly cpuMethod: string;
}

export interface PeerRunSummary {
  readonly wallSeconds: number;
  readonly cpuSeconds: number;
  readonly modelSeconds: number;
  readonly recordsPerSecond: number;
  readonly chunksPerSecond: number;
}

export interface PeerResult {
  readonly name: string;
  readonly info: Record<string, unknown>;
  readonly runs: readonly PeerRunSummary[];
  readonly medianRecordsPerSecond: number;
  readonly medianChunksPerSecond: number;
  /** cner records/s ÷ peer records/s, one per interleaved pair of runs. */
  readonly speedups: readonly number[];
  readonly medianSpeedup: number;
  readonly entities: EntityComparison;
}

/** cner with an ICD-10 linker (its cache empty at the start of each pass) against cner alone, interleaved in the same repetitions. */
export interface LinkingResult {
  readonly linker: string;
  readonly linkerVersion: string;
  /** Entities that got codes in the warm-up run. */
  readonly linkedEntities: number;
  readonly runs: readonly InProcessRun[];
  readonly medianRecordsPerSecond: number;
  /** With linking ÷ without, one per repetition. */
  readonly ratios: readonly number[];
  /** 1 − the median ratio: the share of throughput linking takes. */
  readonly medianCost: number;
}

export type KafkaOutcome = { readonly ran: true; readonly result: KafkaResult } | { readonly ran: false; readonly reason: string };

export interface Target {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  /** null: reported only (no threshold, or not measured in this run). */
  readonly pass: boolean | null;
}

export interface BenchResult {
  readonly schema: 1;
  readonly startedAt: string;
  readonly finishedAt: string;
  /** The exact command (from the repository root). */
  readonly command: string;
  readonly machine: Machine;
  readonly settings: Settings;
  readonly cner: CnerResult;
  readonly peers: Readonly<Record<string, PeerResult>>;
  /** Null (or absent, in older results): no linker was run. */
  readonly linking?: LinkingResult | null;
  readonly viterbi: ViterbiResult | null;
  readonly kafka: KafkaOutcome;
  readonly targets: readonly Target[];
  /** Why the run failed (entity mismatches, errors); empty when it did not. */
  readonly problems: readonly string[];
}

const f = (x: number | null | undefined, digits = 1): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits));
const pct = (x: number | null): string => (x === null || !Number.isFinite(x) ? 'n/a' : `${(100 * x).toFixed(1)} %`);

export function judgeTargets(r: Omit<BenchResult, 'targets'>): Target[] {
  const targets: Target[] = [];
  const speedup = (key: string, label: string, factor: number): void => {
    const p = r.peers[key];
    if (p === undefined) {
      targets.push({ name: `cner ≥ ${factor}× ${label} (identical entities)`, target: `≥ ${factor}×`, measured: 'not run', pass: null });
      return;
    }
    const q = r.settings.quantization;
    if (r.settings.cnerBundle !== r.settings.bundle) {
      // Another model on the cner side: the contract is the int8 copy's stated accuracy, not identity.
      const f1 = q?.devSeenInTraining === true ? 'F1 on dev records its training saw' : 'dev F1';
      const stated = q === null ? 'no stated accuracy' : `${f1} ${f(q.int8DevF1, 2)} vs float32 ${f(q.float32DevF1, 2)}`;
      const within = q !== null && q.int8DevF1 !== null && q.float32DevF1 !== null && q.float32DevF1 - q.int8DevF1 <= 0.3;
      targets.push({
        name: `cner (int8) ≥ ${factor}× ${label} (float32), within the int8 model's stated accuracy`,
        target: `≥ ${factor}×, dev F1 within 0.3`,
        measured: `${f(p.medianSpeedup, 2)}×, ${stated}, entity agreement ${pct(p.entities.agreementF1)}`,
        pass: p.medianSpeedup >= factor && within,
      });
      return;
    }
    const same = p.entities.mismatchedRecords === 0;
    targets.push({
      name: `cner ≥ ${factor}× ${label} (identical entities)`,
      target: `≥ ${factor}×, 0 mismatches`,
      measured: `${f(p.medianSpeedup, 2)}×, ${p.entities.mismatchedRecords} mismatched records`,
      pass: p.medianSpeedup >= factor && same,
    });
  };
  speedup('python', 'onnxruntime Python + numpy', 2);
  speedup('python-careful', 'careful onnxruntime Python (length-sorted, dynamic padding)', 1.2);
  speedup('torch', 'PyTorch eager', 3);
  const l = r.linking ?? null;
  targets.push({
    name: 'Throughput lost to ICD-10 linking (in process, linker cache empty at each pass\'s start)',
    target: '≤ 15 %',
    measured: l === null ? 'not run' : `${pct(l.medianCost)} (${l.linkerVersion})`,
    pass: l === null ? null : l.medianCost <= 0.15,
  });
  const share = r.cner.cpuOutsideInferenceShare;
  targets.push({ name: 'CPU outside onnxruntime session.run', target: '≤ 5 %', measured: pct(share), pass: share === null ? null : share <= 0.05 });
  const v = r.viterbi;
  targets.push({
    name: 'Viterbi per 128×13 chunk (TypeScript)',
    target: '≤ 5 µs',
    measured: v === null ? 'not run' : `${f(v.medianTypescriptUs, 2)} µs`,
    pass: v === null ? null : v.medianTypescriptUs <= 5,
  });
  const kafkaTarget = { throughput: '≥ 90 %', latency: 'p99 reported', rss: '≤ 500 MB', startup: '≤ 3 s' } as const;
  const kafkaName = {
    throughput: 'Kafka throughput vs in process',
    latency: 'End-to-end latency at half load',
    rss: 'Processor peak RSS',
    startup: 'Processor start-up to ready (/readyz 200)',
  } as const;
  if (r.kafka.ran) {
    const k = r.kafka.result;
    // cner serve links when the bench ran a linker (older results have no `linked`): compare like with like.
    const linked = k.linked === true && r.linking != null;
    // Paired runs (each processor against an in-process pass beside it); older results: one run against the in-process median.
    const ratio = k.medianRatio ?? k.saturation.recordsPerSecond / (linked ? r.linking.medianRecordsPerSecond : r.cner.medianRecordsPerSecond);
    const pairs = k.ratios === undefined ? '' : ` (median of ${k.ratios.length} paired run${k.ratios.length === 1 ? '' : 's'}: ${k.ratios.map((x) => pct(x)).join(', ')})`;
    targets.push({ name: `${kafkaName.throughput}${linked ? ' (both linking)' : ''}`, target: kafkaTarget.throughput, measured: `${pct(ratio)}${pairs}`, pass: ratio >= 0.9 });
    targets.push({ name: kafkaName.latency, target: kafkaTarget.latency, measured: `p50 ${f(k.latency.p50Ms, 0)} ms, p99 ${f(k.latency.p99Ms, 0)} ms`, pass: null });
    targets.push({ name: kafkaName.rss, target: kafkaTarget.rss, measured: `${f(k.rss.peakMb, 0)} MB`, pass: k.rss.peakMb <= 500 });
    const up = k.startup;
    targets.push({
      name: kafkaName.startup,
      target: kafkaTarget.startup,
      measured: up === undefined ? 'not measured' : `${f(up.readySeconds, 2)} s (model and linker loaded at ${f(up.modelLoadedSeconds, 2)} s)`,
      pass: up === undefined ? null : up.readySeconds <= 3,
    });
  } else {
    for (const key of ['throughput', 'latency', 'rss', 'startup'] as const) {
      targets.push({ name: kafkaName[key], target: kafkaTarget[key], measured: 'not run', pass: null });
    }
  }
  return targets;
}

type Row = readonly string[];

/** How the saturation run's records reached the processor: after a warm-up, or preloaded before a cold start (older results). */
const saturationInput = (warmup: number | undefined): string =>
  warmup === undefined || warmup === 0 ? 'preloaded, timed from a cold start' : `produced after ${warmup} warm-up records`;

/** The result's rows: [section, metric, value]. */
function resultRows(r: BenchResult): Row[] {
  const rows: Row[] = [];
  const c = r.cner;
  rows.push(['cner in process', 'records/s (median)', f(c.medianRecordsPerSecond)]);
  rows.push(['', 'chunks/s (median)', f(c.medianChunksPerSecond)]);
  rows.push(['', 'CPU outside session.run', pct(c.cpuOutsideInferenceShare)]);
  const cpu = (pick: (r: InProcessRun) => number | null): string => {
    const xs = c.runs.map(pick).filter((x): x is number => x !== null);
    return xs.length === 0 ? 'n/a' : f(median(xs), 2);
  };
  rows.push(['', 'CPU s per run: process / inference threads / main thread', `${cpu((r) => r.cpuSeconds)} / ${cpu((r) => r.inferenceCpuSeconds)} / ${cpu((r) => r.mainThreadCpuSeconds)}`]);
  for (const p of Object.values(r.peers)) {
    rows.push([p.name, 'records/s (median)', f(p.medianRecordsPerSecond)]);
    rows.push(['', 'chunks/s (median)', f(p.medianChunksPerSecond)]);
    rows.push(['', 'time in the model call', pct(median(p.runs.map((r) => r.modelSeconds / r.wallSeconds)))]);
    rows.push(['', 'cner speed-up (median of pairs)', `${f(p.medianSpeedup, 2)}× [${p.speedups.map((s) => f(s, 2)).join(', ')}]`]);
    rows.push(['', 'entities identical to cner', `${p.entities.records - p.entities.mismatchedRecords}/${p.entities.records} records (${p.entities.entities} entities, agreement F1 ${pct(p.entities.agreementF1)})`]);
  }
  const l = r.linking ?? null;
  if (l !== null) {
    rows.push([`cner + linking (${l.linkerVersion}, cache empty at each pass's start)`, 'records/s (median)', f(l.medianRecordsPerSecond)]);
    rows.push(['', 'with ÷ without linking (per repetition)', `${f(median(l.ratios), 3)} [${l.ratios.map((x) => f(x, 3)).join(', ')}]`]);
    rows.push(['', 'entities linked (DIS) in the warm-up run', String(l.linkedEntities)]);
  }
  if (r.viterbi !== null) {
    const v = r.viterbi;
    rows.push([`Viterbi alone (${v.chunks} chunks ${v.length}×${v.tags})`, 'TypeScript ViterbiDecoder, µs/chunk', f(v.medianTypescriptUs, 2)]);
    rows.push(['', 'numpy per chunk, µs/chunk', f(v.medianNumpyUs, 1)]);
    rows.push(['', 'numpy batched ×32, µs/chunk', f(v.medianNumpyBatchedUs, 1)]);
    rows.push(['', 'same paths', v.differentPaths === 0 ? 'yes' : `NO (${v.differentPaths} differ)`]);
  }
  if (r.kafka.ran) {
    const k = r.kafka.result;
    const runs = k.saturationRuns ?? [];
    // Every processor's figure after the median's, when there are several.
    const list = (xs: readonly number[], digits = 1): string => (xs.length > 1 ? ` [${xs.map((x) => f(x, digits)).join(', ')}]` : '');
    rows.push([
      `Kafka (cner serve, ${k.partitions} partitions${k.linked === true ? ', linking' : ''})`,
      `records/s at saturation (${k.saturation.records} ${saturationInput(k.warmupRecords)}${runs.length > 1 ? `, median of ${runs.length} processors` : ''})`,
      `${f(k.saturation.recordsPerSecond)}${list(runs.map((x) => x.recordsPerSecond))}`,
    ]);
    const colds = runs.flatMap((x) => (x.coldRecordsPerSecond == null ? [] : [x.coldRecordsPerSecond]));
    if (colds.length > 0) rows.push(['', 'records/s over the warm-up records (each fresh processor\'s first)', `${f(median(colds))}${list(colds)}`]);
    if (k.inProcessRecordsPerSecond !== undefined) {
      rows.push(['', `in process${k.linked === true ? ', linking' : ''}, the pass paired with each processor, records/s`, k.inProcessRecordsPerSecond.map((x) => f(x)).join(', ')]);
    }
    if (runs.length > 0 && k.inProcessCpuSecondsPerRecord !== undefined) {
      // Where the CPU went, per record: medians over the processors and over their paired passes.
      const ms = (xs: readonly number[]): string => f(1000 * median(xs), 1);
      const brokers = runs.flatMap((x) => (x.cpuSecondsPerRecord.broker === null ? [] : [x.cpuSecondsPerRecord.broker]));
      rows.push([
        '',
        'CPU ms per record: processor / broker / bench reader (saturation) vs cner in process',
        `${ms(runs.map((x) => x.cpuSecondsPerRecord.processor))} / ${brokers.length > 0 ? ms(brokers) : 'n/a'} / ${ms(runs.map((x) => x.cpuSecondsPerRecord.reader))} vs ${ms(k.inProcessCpuSecondsPerRecord)}`,
      ]);
    }
    if (k.startup !== undefined) {
      // The processor with the median time to ready.
      rows.push(['', 'start-up to model and linker loaded, s', f(k.startup.modelLoadedSeconds, 2)]);
      rows.push(['', 'start-up to ready (/readyz 200), s', `${f(k.startup.readySeconds, 2)}${list(runs.map((x) => x.startup.readySeconds), 2)}`]);
    }
    rows.push(['', 'start-up to first event, s', f(k.saturation.startupSeconds)]);
    rows.push(['', `latency at ${f(k.latency.targetRate)} records/s, p50 / p99 / max`, `${f(k.latency.p50Ms, 0)} / ${f(k.latency.p99Ms, 0)} / ${f(k.latency.maxMs, 0)} ms`]);
    rows.push(['', 'peak RSS (VmHWM)', `${f(k.rss.peakMb, 0)} MB`]);
    rows.push(['', 'processor code', k.processor]);
    rows.push(['', 'MALLOC_ARENA_MAX (glibc malloc arenas)', k.mallocArenaMax ?? 'not set (glibc default: 8 per core)']);
  } else {
    rows.push(['Kafka', 'not run', r.kafka.reason]);
  }
  return rows;
}

const targetRows = (r: BenchResult): Row[] =>
  r.targets.map((t) => [t.name, t.target, t.measured, t.pass === null ? '—' : t.pass ? 'pass' : 'FAIL']);

function textTable(header: Row, rows: readonly Row[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (row: Row): string => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function markdownTable(header: Row, rows: readonly Row[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [`| ${header.map(esc).join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.map(esc).join(' | ')} |`)].join('\n');
}

function settingsLine(r: BenchResult): string {
  const s = r.settings;
  return (
    `${s.records} records, ${s.chunks} chunks, ${s.codePoints} characters from ${s.input}; bundle ${s.modelVersion}; ` +
    `${s.reps} interleaved repetition(s) after a warm-up; cner: ${s.workers} inference worker(s) × ${s.intraOpThreads || 'auto'} intra-op thread(s), ` +
    `batches ≤ ${s.maxBatchSize} chunks, wait ≤ ${s.maxWaitMs} ms, ${s.recordsPerSlice} records per slice; peers: ${s.peerThreads} thread(s), ` +
    `batches of 32 chunks padded to 128; graph optimization ${s.graphOptimization}`
  );
}

/** A value a peer reported (a version string, normally) as text. */
const text = (v: unknown, fallback: string): string => (v === undefined || v === null ? fallback : typeof v === 'string' ? v : JSON.stringify(v));

const machineLine = (m: Machine): string =>
  `${m.cpuModel}, ${m.logicalCores} logical cores, ${m.memoryGb} GB; ${m.os}; node ${m.node}, onnxruntime-node ${m.onnxruntimeNode}; ` +
  `python ${text(m.python?.['python'], '?')}, onnxruntime ${text(m.python?.['onnxruntime'], '?')}, numpy ${text(m.python?.['numpy'], '?')}, torch ${text(m.python?.['torch'], 'not used')}; ` +
  `load average ${m.loadAverageStart.join(' ')} at start, ${m.loadAverageEnd?.join(' ') ?? '?'} at the end; commit ${m.gitCommit.slice(0, 12)}${m.gitDirty ? ' (with uncommitted changes)' : ''}`;

export function renderText(r: BenchResult): string {
  return [
    settingsLine(r),
    machineLine(r.machine),
    '',
    textTable(['part', 'metric', 'value'], resultRows(r)),
    '',
    textTable(['target', 'wanted', 'measured', ''], targetRows(r)),
    '',
    `CPU method: ${r.cner.cpuMethod}`,
    ...(r.problems.length > 0 ? ['', 'PROBLEMS:', ...r.problems.map((p) => `- ${p}`)] : []),
  ].join('\n');
}

/** The sections of one more run (another bundle, another setting) below the main one. */
export function renderRunSection(r: BenchResult, resultFile: string, title: string): string {
  return [
    `## ${title}`,
    '',
    '```sh',
    r.command,
    '```',
    '',
    `\`${resultFile}\`. Run ${r.startedAt} – ${r.finishedAt}. ${settingsLine(r)}. Load average ${r.machine.loadAverageStart.join(' ')} at start.`,
    '',
    markdownTable(['target', 'wanted', 'measured', ''], targetRows(r)),
    '',
    markdownTable(['part', 'metric', 'value'], resultRows(r)),
    '',
  ].join('\n');
}

export function renderMarkdown(r: BenchResult, resultFile: string): string {
  return [
    '# Benchmarks',
    '',
    'cner against the Python way of serving the same model, side by side on one machine',
    '(issue 6). Generated by `npm run bench:md` from',
    `\`${resultFile}\` (and the other runs named below, and \`bench/NOTES.md\`); do not edit by hand.`,
    '',
    '## Command',
    '',
    '```sh',
    r.command,
    '```',
    '',
    `Run ${r.startedAt} – ${r.finishedAt}. ${settingsLine(r)}.`,
    '',
    '## Machine',
    '',
    `${machineLine(r.machine)}.`,
    '',
    '## Targets',
    '',
    markdownTable(['target', 'wanted', 'measured', ''], targetRows(r)),
    '',
    '## Results',
    '',
    markdownTable(['part', 'metric', 'value'], resultRows(r)),
    '',
    '## How it is measured',
    '',
    '- **Same everything**: one machine, one model bundle, the same texts; every contender gets the same onnxruntime',
    '  intra-op threads and graph optimization level. The contenders run one after the other, never at once, in',
    '  interleaved repetitions (cner, Python, careful Python, PyTorch, then the reverse order), after one warm-up run each; each',
    '  speed-up is cner\'s rate over the peer\'s in the same repetition, and the table gives the median.',
    '- **cner in process**: `openModel` (inference worker threads, dynamic batcher) and `tagRecord`, driven as',
    '  `cner serve` drives them: every record of a slice (the records of one transaction) tagged concurrently,',
    '  slice after slice. Chunking, encoding, inference, Viterbi, confidences and spans are all inside the time.',
    `- **CPU outside inference**: ${r.cner.cpuMethod}`,
    '- **Python peer** (`bench/python_peer.py`): onnxruntime (Python) with the same session settings, batches of 32',
    '  chunks padded to 128, a numpy Viterbi vectorized over the tags (same BIO constraint, same tie rule),',
    '  chunking and encoding from `cner_train.text`/`cner_train.vocab` (the reference the TypeScript side matches).',
    '  It computes no confidences (cner does), which favours the peer.',
    '- **Careful Python peer** (`bench/python_peer.py --careful`): the same, written as a good Python engineer would:',
    '  chunks sorted by length, batches of cner\'s size padded only to their longest chunk, the memory pattern off.',
    '- **PyTorch peer** (`bench/torch_peer.py`): `cner_train.models.Tagger` in eager mode (`inference_mode`), built',
    '  from the bundle\'s manifest, its weights read from the ONNX initializers (checked: emissions within 1e-4 of',
    '  onnxruntime on real batches before it serves); otherwise as the Python peer.',
    '- **Entities**: per record, the sets of (start, end, type) of each peer must equal cner\'s; any difference fails the run.',
    '- **Viterbi alone**: the same real emissions (the bundle\'s model over consecutive 128-character windows of the',
    '  texts) decoded by `ViterbiDecoder.decode` and by the numpy peer, per chunk; the tag paths must be equal.',
    '  The batched numpy row decodes 32 chunks per call (as pytorch-crf does), for reference.',
    '- **Kafka**: `cner serve` as a child process on the local stack, fresh topics. Warm-up: the input\'s records',
    '  after the measured ones (as many; without any, a full run is timed cold and the smoke run warms up on its',
    '  own texts) are preloaded, then the processor starts and tags them, as the in-process',
    '  contender tagged its warm-up run (a fresh process compiles its code and grows its heaps once; a processor',
    '  running for hours has long done so); their rate is reported as the cold rate. Saturation: then the measured',
    '  records are produced; the rate counts the events that became visible to a read_committed',
    '  reader after the first one, over the time from the first to the last. Latency: records produced at half',
    '  that rate; latency = visible time − the time the record was handed to the producer.',
    '  Start-up: the processor\'s /readyz polled every 20 ms from the moment it is spawned (node start, model and',
    '  linker loaded, registry and broker answering, consumer joined to its group; the local broker sets',
    '  group.initial.rebalance.delay.ms=0, where a broker on the default adds 3 s to the join).',
    '  Peak RSS: VmHWM of the processor process over both runs. The saturation run is repeated (as many',
    '  processors as repetitions, fresh topics each), each paired with one in-process pass (with linking when',
    '  the processor links; its new linker first links the warm-up records, untimed, so both linker caches hold',
    '  the same diagnoses) run right after it, or right before it every other time; the throughput ratio is',
    '  the median of the pairs\' ratios, so drifting load hits both sides of each ratio alike. CPU per record:',
    '  the processor\'s, the local broker\'s and the bench process\'s (its reader) over the saturation window,',
    '  from /proc/<pid>/stat, against the whole in-process pass\'s process CPU. Only the last',
    '  processor runs the latency part; peak RSS is the highest of the processors\'.',
    '',
  ].join('\n');
}
