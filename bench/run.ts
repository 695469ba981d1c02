// `npm run bench`: cner against the Python way (issue 6), one run, one
// machine, one bundle, the same texts. Progress goes to stderr, the table to
// stdout, the results to a JSON file (bench/results/). Exit status 1 when the
// contenders disagree on the entities or a part fails; targets never change
// it (a benchmark run is not a test of the machine it runs on).

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/config.js';
import { autoIntraOpThreads } from '../src/model/cpus.js';
import { chunkText, codePoints } from '../src/pipeline/chunk.js';
import { compareEntities } from './entities.js';
import { InProcessCner, type InProcessRun, recordsPerSlice } from './inprocess.js';
import { type PassRate, kafkaBench, kafkaServicesFromEnv } from './kafka.js';
import { loadAverage, machineFacts } from './machine.js';
import { type BenchOptions, USAGE, parseOptions } from './options.js';
import { Peer, type PeerRun } from './peers.js';
import { type BenchResult, type KafkaOutcome, type LinkingResult, type PeerResult, type Settings, judgeTargets, renderText } from './report.js';
import { median, pairRatios } from './stats.js';
import { compareViterbi, windowEmissions } from './viterbi.js';

const progress = (message: string): void => void process.stderr.write(`[bench] ${message}\n`);

const CPU_METHOD =
  'process.cpuUsage() (all threads) over each timed run; the inference part is the CPU time of the threads that ' +
  'openModel started (the inference worker threads: onnxruntime session.run and the message passing around it), ' +
  'read per thread from /proc/self/task/<tid>/schedstat; share = 1 − inference ÷ process.';

/** The texts of a JSONL file: each line's "originalText" (CCKS) or "text" (cner tag input), the first `limit` of them. */
async function readTexts(file: string, limit: number | null): Promise<string[]> {
  const texts: string[] = [];
  for (const [i, line] of (await readFile(file, 'utf8')).split('\n').entries()) {
    if (line.trim() === '') continue;
    const obj = JSON.parse(line) as { originalText?: unknown; text?: unknown };
    const text = obj.originalText ?? obj.text;
    if (typeof text !== 'string' || text === '') throw new Error(`${file}:${i + 1}: no "originalText" or "text"`);
    texts.push(text);
    if (limit !== null && texts.length >= limit) break;
  }
  if (texts.length === 0) throw new Error(`${file} holds no texts`);
  return texts;
}

const summarizePeerRun = (r: PeerRun): PeerResult['runs'][number] => ({
  wallSeconds: r.wall_s,
  cpuSeconds: r.cpu_s,
  modelSeconds: r.model_s,
  recordsPerSecond: r.records / r.wall_s,
  chunksPerSecond: r.chunks / r.wall_s,
});

async function main(o: BenchOptions): Promise<number> {
  const startedAt = new Date().toISOString();
  const machine = machineFacts(o.root);
  const problems: string[] = [];
  // Up to twice the limit: the records after the measured ones warm each Kafka processor up.
  const read = await readTexts(o.input, o.limit === null ? null : 2 * o.limit);
  const texts = o.limit === null ? read : read.slice(0, o.limit);
  const warmupTexts = warmupFor(o, texts, read.slice(texts.length));
  const chunks = texts.reduce((n, t) => n + chunkText(t).length, 0);
  const work = await mkdtemp(path.join(tmpdir(), 'cner-bench-'));
  const textsFile = path.join(work, 'texts.jsonl');
  await writeFile(textsFile, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  // What each peer gets: the threads one cner inference worker's session gets (0 = the usable CPUs / workers: src/model/cpus.ts).
  const peerThreads = o.settings.intraOpThreads > 0 ? o.settings.intraOpThreads : autoIntraOpThreads(o.settings.workers);
  progress(`${texts.length} records, ${chunks} chunks from ${path.relative(o.root, o.input)}; bundle ${path.relative(o.root, o.bundle)}`);

  const peers: { key: string; peer: Peer }[] = [];
  let cner: InProcessCner | null = null;
  let linked: InProcessCner | null = null;
  try {
    progress('starting the Python peers and opening the model');
    const script = (name: string): string => path.join(o.root, 'bench', name);
    peers.push({ key: 'python', peer: await Peer.start('python', o.python, script('python_peer.py'), ['--bundle', o.bundle, '--threads', String(peerThreads)], o.root) });
    peers.push({
      key: 'python-careful',
      peer: await Peer.start('python-careful', o.python, script('python_peer.py'), ['--bundle', o.bundle, '--threads', String(peerThreads), '--careful', '--batch-size', String(o.settings.maxBatchSize)], o.root),
    });
    // The PyTorch peer rebuilds the float model from the bundle's initializers: an int8 bundle has none to rebuild.
    const quantized = (await quantizationOf(o.bundle)) !== null;
    if (quantized && o.torch) progress('the PyTorch peer is left out: it cannot represent an int8 bundle (--bundle a float32 one to include it)');
    if (o.torch && !quantized) {
      peers.push({
        key: 'torch',
        peer: await Peer.start('torch', o.python, script('torch_peer.py'), ['--bundle', o.bundle, '--threads', String(peerThreads), '--parity-texts', textsFile], o.root),
      });
    }
    for (const { peer } of peers) await peer.load(textsFile);
    const torch = peers.find((p) => p.key === 'torch')?.peer.info['torch'];
    machine.python = { ...peers[0]!.peer.info, ...(torch === undefined ? {} : { torch }) };
    cner = await InProcessCner.open(o.cnerBundle, o.settings);
    if (o.linker !== null) linked = await InProcessCner.open(o.cnerBundle, o.settings, o.linker);
    const sameModel = o.cnerBundle === o.bundle;

    // Warm-up (JIT, onnxruntime's first runs), and the entities every contender must agree on.
    progress('warm-up run of each contender');
    const { entities } = await cner.run(texts, chunks);
    let linkedCodes = 0;
    if (linked !== null) {
      const warm = await linked.run(texts, chunks);
      const cmp = compareEntities(entities, warm.entities.map((es) => es.map((e): [number, number, string] => [e.start, e.end, e.code])));
      if (cmp.mismatchedRecords > 0) problems.push(`cner with linking: ${cmp.mismatchedRecords} of ${cmp.records} records have other entities than without`);
      linkedCodes = warm.entities.flat().filter((e) => (e.codes?.length ?? 0) > 0).length;
    }
    const comparisons = new Map<string, ReturnType<typeof compareEntities>>();
    for (const { key, peer } of peers) {
      const warm = await peer.run(true);
      const cmp = compareEntities(entities, warm.entities ?? []);
      comparisons.set(key, cmp);
      if (sameModel && cmp.mismatchedRecords > 0) {
        problems.push(`${peer.name}: ${cmp.mismatchedRecords} of ${cmp.records} records have other entities than cner's, e.g. ${JSON.stringify(cmp.examples.slice(0, 3))}`);
      }
    }

    // Interleaved timed runs: cner, peers, then the reverse order, so drifting load hits every contender alike.
    const cnerRuns: InProcessRun[] = [];
    const linkedRuns: InProcessRun[] = [];
    const peerRuns = new Map<string, PeerResult['runs'][number][]>(peers.map((p) => [p.key, []]));
    for (let rep = 0; rep < o.reps; rep++) {
      const order: (() => Promise<void>)[] = [
        async () => void cnerRuns.push((await cner!.run(texts, chunks)).run),
        ...(linked === null ? [] : [async () => void linkedRuns.push((await linked!.run(texts, chunks)).run)]),
        ...peers.map(({ key, peer }) => async () => void peerRuns.get(key)!.push(summarizePeerRun(await peer.run(false)))),
      ];
      for (const step of rep % 2 === 0 ? order : order.reverse()) await step();
      const last = cnerRuns[cnerRuns.length - 1]!;
      progress(`repetition ${rep + 1}/${o.reps}: cner ${last.recordsPerSecond.toFixed(1)} records/s` +
        (linked === null ? '' : `, with linking ${linkedRuns.at(-1)!.recordsPerSecond.toFixed(1)}`) +
        peers.map(({ key }) => `, ${key} ${peerRuns.get(key)!.at(-1)!.recordsPerSecond.toFixed(1)}`).join(''));
    }
    const cnerRates = cnerRuns.map((r) => r.recordsPerSecond);
    const shares = cnerRuns.flatMap((r) => (r.inferenceCpuSeconds === null ? [] : [1 - r.inferenceCpuSeconds / r.cpuSeconds]));
    const peerResults: Record<string, PeerResult> = {};
    for (const { key, peer } of peers) {
      const runs = peerRuns.get(key)!;
      const speedups = pairRatios(cnerRates, runs.map((r) => r.recordsPerSecond));
      peerResults[key] = {
        name: typeof peer.info['name'] === 'string' ? peer.info['name'] : key,
        info: peer.info,
        runs,
        medianRecordsPerSecond: median(runs.map((r) => r.recordsPerSecond)),
        medianChunksPerSecond: median(runs.map((r) => r.chunksPerSecond)),
        speedups,
        medianSpeedup: median(speedups),
        entities: comparisons.get(key)!,
      };
    }

    progress('Viterbi alone');
    const emissions = await windowEmissions(cner.model, texts, o.viterbiChunks);
    const viterbi = await compareViterbi(cner.model, emissions, peers[0]!.peer, path.join(work, 'emissions.f32'), Math.max(3, o.reps));
    if (viterbi.differentPaths > 0) problems.push(`Viterbi: ${viterbi.differentPaths} of ${viterbi.chunks} windows decode to other paths in numpy than in TypeScript`);
    if (!viterbi.numpyBatchedSamePaths) problems.push('Viterbi: the batched numpy decoder disagrees with the per-chunk one');
    const modelVersion = cner.model.version;
    let linking: LinkingResult | null = null;
    if (linked !== null) {
      const ratios = pairRatios(linkedRuns.map((r) => r.recordsPerSecond), cnerRates);
      linking = {
        linker: path.relative(o.root, o.linker!) || '.',
        linkerVersion: linked.linker?.version ?? '?',
        linkedEntities: linkedCodes,
        runs: linkedRuns,
        medianRecordsPerSecond: median(linkedRuns.map((r) => r.recordsPerSecond)),
        ratios,
        medianCost: 1 - median(ratios),
      };
    }
    for (const { peer } of peers.splice(0)) await peer.close();
    // The Kafka runs are paired with passes of the in-process contender cner serve is compared with.
    const paired = linked ?? cner;
    if (linked !== null) {
      await cner.close();
      cner = null;
    }
    const kafka = await runKafka(o, texts, warmupTexts, problems, async () => {
      const { run } = await paired.run(texts, chunks, warmupTexts);
      return { recordsPerSecond: run.recordsPerSecond, cpuSecondsPerRecord: run.cpuSeconds / texts.length };
    });
    await paired.close();
    cner = null;
    linked = null;
    machine.loadAverageEnd = loadAverage();
    const settings: Settings = {
      ...o.settings,
      bundle: path.relative(o.root, o.bundle) || '.',
      cnerBundle: path.relative(o.root, o.cnerBundle) || '.',
      modelVersion,
      quantization: await quantizationOf(o.cnerBundle),
      input: path.relative(o.root, o.input),
      records: texts.length,
      chunks,
      codePoints: texts.reduce((n, t) => n + codePoints(t).length, 0),
      reps: o.reps,
      smoke: o.smoke,
      peerThreads,
      recordsPerSlice: recordsPerSlice(o.settings),
      graphOptimization: 'all',
    };
    const partial: Omit<BenchResult, 'targets'> = {
      schema: 1,
      startedAt,
      finishedAt: new Date().toISOString(),
      command: ['npm run bench', ...(o.argv.length > 0 ? ['--', ...o.argv] : [])].join(' '),
      machine,
      settings,
      cner: {
        runs: cnerRuns,
        medianRecordsPerSecond: median(cnerRates),
        medianChunksPerSecond: median(cnerRuns.map((r) => r.chunksPerSecond)),
        cpuOutsideInferenceShare: shares.length > 0 ? median(shares) : null,
        cpuMethod: CPU_METHOD,
      },
      peers: peerResults,
      linking,
      viterbi,
      kafka,
      problems,
    };
    const result: BenchResult = { ...partial, targets: judgeTargets(partial) };
    await mkdir(path.dirname(o.out), { recursive: true });
    await writeFile(o.out, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`${renderText(result)}\n\nresults: ${path.relative(o.root, o.out)}\n`);
    return problems.length > 0 ? 1 : 0;
  } finally {
    await cner?.close();
    await linked?.close();
    for (const { peer } of peers) await peer.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** The int8 bundle's own statement of its accuracy (cner-train quantize), or null. */
async function quantizationOf(bundle: string): Promise<Settings['quantization']> {
  const manifest = JSON.parse(await readFile(path.join(bundle, 'manifest.json'), 'utf8')) as { quantization?: Record<string, unknown> };
  const q = manifest.quantization;
  if (q === undefined) return null;
  const f1 = (k: string): number | null => {
    const v = (q[k] as { f1?: unknown } | undefined)?.f1;
    return typeof v === 'number' ? v : null;
  };
  return { method: typeof q['method'] === 'string' ? q['method'] : '', float32DevF1: f1('float32_dev_micro'), int8DevF1: f1('int8_dev_micro'), devSeenInTraining: q['dev_records_seen_in_training'] === true };
}

/**
 * What each Kafka processor tags before it is timed: the input's records
 * after the measured ones (as many, where there are). Not the measured texts:
 * the processor's linker would then know their diagnoses. Without others, the
 * smoke run (which judges nothing) warms up on the measured texts, and a full
 * run is timed cold.
 */
function warmupFor(o: BenchOptions, texts: readonly string[], others: readonly string[]): readonly string[] {
  if (others.length > 0) return others;
  return o.smoke ? texts : [];
}

async function runKafka(o: BenchOptions, texts: readonly string[], warmupTexts: readonly string[], problems: string[], inProcessPass: () => Promise<PassRate>): Promise<KafkaOutcome> {
  const services = kafkaServicesFromEnv();
  if (o.kafka === 'off') return { ran: false, reason: '--kafka off' };
  if (services === null) {
    const reason = 'KAFKA_BROKERS / SCHEMA_REGISTRY_URL unset (scripts/stack.sh up; eval "$(scripts/stack.sh env)")';
    if (o.kafka === 'on') problems.push(`Kafka: ${reason}`);
    return { ran: false, reason };
  }
  // With a linker, each text once: cner serve's linker cache would answer a repeated text's diagnoses for
  // free, which the in-process pass it is compared with (each text once, after the warm-up texts) never gets.
  const records = o.kafkaRecords ?? (o.smoke ? 48 : o.linker !== null ? texts.length : Math.max(1000, texts.length));
  progress(`Kafka: ${records} records through cner serve on ${services.brokers}, ${o.reps} processor(s), each paired with an in-process pass`);
  try {
    const result = await kafkaBench({ services, root: o.root, bundle: o.cnerBundle, settings: o.settings, texts, records, warmupTexts, reps: o.reps, inProcessPass, latencySeconds: o.latencySeconds, partitions: o.partitions, linker: o.linker, progress });
    return { ran: true, result };
  } catch (e) {
    const reason = `failed: ${e instanceof Error ? e.message : String(e)}`;
    problems.push(`Kafka: ${reason}`);
    return { ran: false, reason: reason.split('\n')[0]! };
  }
}

const options = parseOptions(process.argv.slice(2), PACKAGE_ROOT);
if (options === null) {
  process.stdout.write(`${USAGE}\n`);
} else {
  process.exitCode = await main(options);
}
