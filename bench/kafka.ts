// cner through Kafka, with the real broker and registry: a `cner serve`
// child process (as deployed) reading Avro EmrRecords from a fresh input
// topic, and a read_committed reader of its output topic timing when each
// event becomes visible.
//
// 1. Saturation: warm-up records are preloaded, then the processor starts and
//    tags them (as the in-process contender tagged its warm-up run: a fresh
//    process pays for compiling its code and growing its heaps and arenas
//    once, which a processor running for hours does not); then N records are
//    produced, and the rate is taken between the first and the last of their
//    visible events. The warm-up records' own rate is kept as the cold rate.
//    This is repeated with fresh processors and topics, each run paired with
//    an in-process pass right before or after it: one run against the median
//    of earlier in-process passes carried the machine's drift (84–89 % for the
//    same code in the thirteenth session).
// 2. Latency at half that rate: records are produced at a fixed rate into the
//    same input topic; latency = visible time − the time the record was
//    handed to the producer (both clocks are this process's).
// 3. Peak RSS of the processor process: VmHWM from /proc/<pid>/status.
// 4. Start-up: /readyz polled from the moment the process is spawned, so the
//    times when the model was loaded and when the processor became ready.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import kafkajs from 'kafkajs';
import pino from 'pino';
import { frame, loadSchema } from '../src/records/avro.js';
import { createKafkaClient, kafkaConfig } from '../src/kafka/adapter.js';
import { SchemaRegistry } from '../src/records/registry.js';
import type { TopicTail } from '../src/kafka/port.js';
import type { ModelSettings } from './inprocess.js';
import { pidCpuSeconds } from './cpu.js';
import { median, medianItem, pairRatios, quantile } from './stats.js';

export interface KafkaServices {
  readonly brokers: string;
  readonly registryUrl: string;
}

/** The stack from the environment (`eval "$(scripts/stack.sh env)"`), or null. */
export function kafkaServicesFromEnv(env: NodeJS.ProcessEnv = process.env): KafkaServices | null {
  const brokers = env['KAFKA_BROKERS'];
  const registryUrl = env['SCHEMA_REGISTRY_URL'];
  return brokers && registryUrl ? { brokers, registryUrl } : null;
}

export interface KafkaBenchOptions {
  readonly services: KafkaServices;
  readonly root: string;
  readonly bundle: string;
  readonly settings: ModelSettings;
  readonly texts: readonly string[];
  /** Records produced for each saturation run. */
  readonly records: number;
  /**
   * Texts each processor tags before its saturation run, one record each (the
   * paired in-process pass warms its linker with the same ones); empty: the
   * saturation run is the fresh processor's first records.
   */
  readonly warmupTexts: readonly string[];
  /** Processors started one after the other (fresh topics each), each paired with an in-process pass. */
  readonly reps: number;
  /** One in-process pass over the same texts with the same settings (linking when `linker` is set). */
  readonly inProcessPass: () => Promise<PassRate>;
  /** How long records are produced at half the saturation rate. */
  readonly latencySeconds: number;
  readonly partitions: number;
  /** The linker `cner serve` links with (as cner in process did in the linked run); null: none. */
  readonly linker: string | null;
  readonly progress: (message: string) => void;
}

export interface KafkaResult {
  readonly topicPrefix: string;
  readonly partitions: number;
  /** How `bin/cner.js serve` ran: the compiled dist/ or the sources through tsx. */
  readonly processor: string;
  /** glibc's MALLOC_ARENA_MAX in cner serve's environment (the image's setting unless the bench's environment sets it). */
  readonly mallocArenaMax?: string; // absent in results from before it was set
  /** Whether cner serve linked (compare with the in-process run with linking, then). */
  readonly linked: boolean;
  /** Records each processor tagged before its saturation run (absent in results from before there was a warm-up: they were measured cold). */
  readonly warmupRecords?: number;
  /** recordsPerSecond: the median of the processors'; the rest: the median processor's. */
  readonly saturation: {
    readonly records: number;
    readonly recordsPerSecond: number;
    /** First to last visible event. */
    readonly seconds: number;
    /** Process start to first visible event (model load, group join, first transaction). */
    readonly startupSeconds: number;
  };
  /** Each processor's saturation run (absent in results from before the runs were repeated). */
  readonly saturationRuns?: readonly SaturationRun[];
  /** The in-process pass paired with each processor, records/s. */
  readonly inProcessRecordsPerSecond?: readonly number[];
  /** Its process's CPU seconds per record. */
  readonly inProcessCpuSecondsPerRecord?: readonly number[];
  /** Each processor's rate over its paired in-process pass's. */
  readonly ratios?: readonly number[];
  readonly medianRatio?: number;
  /** Process start to /readyz saying so, the processor with the median time to ready (absent in results from before it was measured). */
  readonly startup?: {
    /** The model (and linker) opened: `modelLoaded` left /readyz's waitingFor. */
    readonly modelLoadedSeconds: number;
    /** /readyz answered 200: model loaded, consumer joined to its group, broker and registry answering. */
    readonly readySeconds: number;
  };
  readonly latency: {
    readonly targetRate: number;
    readonly achievedRate: number;
    readonly records: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
  };
  readonly rss: {
    /** VmHWM: the highest of the processors' peak resident sets (the last one's over both runs). */
    readonly peakMb: number;
    readonly lastMb: number;
  };
}

/**
 * The Dockerfile's MALLOC_ARENA_MAX. glibc gives every thread that allocates
 * its own malloc arena (up to 8 per core); the processor's worker threads and
 * onnxruntime then keep freed memory in many arenas. cner serve's peak RSS
 * (linking, 200 records): 620 MB by default (16 arenas on 2 cores), 527 MB
 * with 2, 507 MB with 1, at the same throughput (bench/NOTES.md).
 */
export const IMAGE_MALLOC_ARENA_MAX = '2';

/** The processor runs as the image runs it, unless the bench's environment says otherwise. */
const mallocArenaMax = (): string => process.env['MALLOC_ARENA_MAX'] ?? IMAGE_MALLOC_ARENA_MAX;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An in-process pass: its records/s, and the CPU seconds its process spent per record. */
export interface PassRate {
  readonly recordsPerSecond: number;
  readonly cpuSecondsPerRecord: number;
}

/** One `cner serve` process over preloaded records: its saturation rate and start-up. */
export interface SaturationRun {
  readonly records: number;
  readonly recordsPerSecond: number;
  /** First to last visible event. */
  readonly seconds: number;
  /** Process start to first visible event (model load, group join, first transaction). */
  readonly startupSeconds: number;
  /** The warm-up records' rate: the fresh process's first records (null without a warm-up, or too few to time). */
  readonly coldRecordsPerSecond?: number | null;
  readonly startup: { readonly modelLoadedSeconds: number; readonly readySeconds: number };
  /** VmHWM of this process, MB. */
  readonly peakMb: number;
  /**
   * CPU seconds per record over the saturation window (from within 20 ms of
   * the first visible event to the last): the processor's, the local broker's
   * (null when the stack's pid file does not name a running broker) and this
   * process's (its output reader).
   */
  readonly cpuSecondsPerRecord: { readonly processor: number; readonly broker: number | null; readonly reader: number };
}

/**
 * `o.reps` processors, each on fresh topics over the same preloaded records,
 * each paired with one in-process pass (`o.inProcessPass`) run right before
 * or right after it (alternating, so drifting load hits both alike); the
 * throughput ratio is the median of the pairs' ratios. The last processor
 * then also serves the latency run.
 */
export async function kafkaBench(o: KafkaBenchOptions): Promise<KafkaResult> {
  const prefix = `bench.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;
  const runs: SaturationRun[] = [];
  const inProcess: PassRate[] = [];
  let latency: KafkaResult['latency'] | null = null;
  let lastMb = Number.NaN;
  for (let rep = 0; rep < o.reps; rep++) {
    const inProcessFirst = rep % 2 === 1;
    if (inProcessFirst) inProcess.push(await o.inProcessPass());
    const last = rep === o.reps - 1;
    const p = await oneProcessor(o, o.reps === 1 ? prefix : `${prefix}.${rep}`, last);
    runs.push(p.run);
    if (p.latency !== null) latency = p.latency;
    lastMb = p.lastMb;
    o.progress(`kafka: processor ${rep + 1}/${o.reps}: saturation ${p.run.recordsPerSecond.toFixed(1)} records/s`);
    if (!inProcessFirst) inProcess.push(await o.inProcessPass());
  }
  const ratios = pairRatios(runs.map((r) => r.recordsPerSecond), inProcess.map((p) => p.recordsPerSecond));
  const middle = medianItem(runs, (r) => r.recordsPerSecond)!;
  return {
    topicPrefix: prefix,
    partitions: o.partitions,
    processor: processorMode(o.root),
    mallocArenaMax: mallocArenaMax(),
    linked: o.linker !== null,
    warmupRecords: o.warmupTexts.length,
    saturation: { records: middle.records, recordsPerSecond: median(runs.map((r) => r.recordsPerSecond)), seconds: middle.seconds, startupSeconds: middle.startupSeconds },
    saturationRuns: runs,
    inProcessRecordsPerSecond: inProcess.map((p) => p.recordsPerSecond),
    inProcessCpuSecondsPerRecord: inProcess.map((p) => p.cpuSecondsPerRecord),
    ratios,
    medianRatio: median(ratios),
    startup: medianItem(runs, (r) => r.startup.readySeconds)!.startup,
    latency: latency!,
    rss: { peakMb: Math.max(...runs.map((r) => r.peakMb)), lastMb },
  };
}

async function oneProcessor(o: KafkaBenchOptions, run: string, withLatency: boolean): Promise<{ run: SaturationRun; latency: KafkaResult['latency'] | null; lastMb: number }> {
  const input = `${run}.records.raw`;
  const output = `${run}.records.entities`;
  const dlt = `${input}.DLT`;
  const models = `${run}.models`;
  const log = pino({ level: 'silent' });
  const brokers = o.services.brokers.split(',');
  const kafka = createKafkaClient({ brokers, clientId: 'cner-bench', groupId: `${run}.unused`, tls: null, sasl: null, sessionTimeoutMs: 10_000, log, retries: 3 });
  await kafka.createTopics([
    ...[input, output, dlt].map((topic) => ({ topic, partitions: o.partitions, replicationFactor: 1 })),
    { topic: models, partitions: 1, replicationFactor: 1, config: { 'cleanup.policy': 'compact' } },
  ]);
  let watcher: EventWatcher | null = null;
  let serve: Serve | null = null;
  const modelCache = mkdtempSync(path.join(tmpdir(), 'cner-bench-models-'));
  try {
    const registry = new SchemaRegistry({ url: o.services.registryUrl, auth: null });
    const emr = loadSchema('EmrRecord');
    const schemaId = await registry.register(`${input}-value`, emr.text);
    const value = (recordId: string, text: string): Buffer =>
      frame(schemaId, emr.type.toBuffer({ recordId, text, sourceSystem: 'bench', timestamp: Date.now(), metadata: null }));
    const textOf = (i: number): string => o.texts[i % o.texts.length]!;

    watcher = await EventWatcher.start(kafka, output, `${run}.watch`);

    // 1. Saturation, after the warm-up records.
    const produceAll = async (keys: readonly string[], text: (i: number) => string): Promise<void> => {
      for (let i = 0; i < keys.length; i += 500) {
        await kafka.produce(input, keys.slice(i, i + 500).map((k, j) => ({ key: Buffer.from(k), value: value(k, text(i + j)), headers: {} })));
      }
    };
    const warmKeys = o.warmupTexts.map((_, i) => `warm-${i}`);
    const satKeys = Array.from({ length: o.records }, (_, i) => `sat-${i}`);
    const warm = warmKeys.length > 0;
    // Preloaded: the warm-up records, or (timed cold) the measured ones.
    await (warm ? produceAll(warmKeys, (i) => o.warmupTexts[i]!) : produceAll(satKeys, textOf));
    o.progress(`kafka: ${warm ? `${warmKeys.length} warm-up` : o.records} records preloaded into ${input}; starting cner serve`);
    const httpPort = await freePort();
    serve = Serve.start(o.root, {
      KAFKA_BROKERS: o.services.brokers,
      SCHEMA_REGISTRY_URL: o.services.registryUrl,
      KAFKA_INPUT_TOPIC: input,
      KAFKA_OUTPUT_TOPIC: output,
      KAFKA_DLT_TOPIC: dlt,
      KAFKA_MODEL_TOPIC: models, // never the shared ner.models.versions
      KAFKA_GROUP_ID: `${run}.group`,
      KAFKA_TRANSACTIONAL_ID_PREFIX: run,
      KAFKA_CREATE_TOPICS: 'false',
      CNER_INSTANCE_ID: 'bench-0',
      CNER_MODEL_DIR: o.bundle,
      CNER_MODEL_CACHE_DIR: modelCache,
      CNER_INFERENCE_WORKERS: String(o.settings.workers),
      CNER_INTRA_OP_THREADS: String(o.settings.intraOpThreads),
      CNER_MAX_BATCH_SIZE: String(o.settings.maxBatchSize),
      CNER_MAX_WAIT_MS: String(o.settings.maxWaitMs),
      // As cner in process ran: with the linker of the linked run (the deployed default when the bundle carries one), else none.
      CNER_LINKER_DIR: o.linker ?? 'none',
      CNER_HTTP_PORT: String(httpPort),
      CNER_LOG_LEVEL: 'info',
      MALLOC_ARENA_MAX: mallocArenaMax(),
    });
    const startup = serve.readiness(httpPort);
    let cold: { readonly firstAt: number; readonly recordsPerSecond: number } | null = null;
    if (warm) {
      cold = window(await watcher.waitFor(warmKeys, Math.max(180_000, warmKeys.length * 100), serve));
      await produceAll(satKeys, textOf);
    }
    const cpu = cpuProbe(serve.pid, localBrokerPid(o.root));
    let cpuAtFirst = cpu();
    const sat = window(await watcher.waitFor(satKeys, Math.max(180_000, o.records * 100), serve, () => (cpuAtFirst = cpu())));
    const cpuAtLast = cpu();

    // 2. Latency at half the saturation rate.
    let latency: KafkaResult['latency'] | null = null;
    if (withLatency) {
      o.progress(`kafka: saturation ${sat.recordsPerSecond.toFixed(1)} records/s; latency run at half that rate for ${o.latencySeconds} s`);
      const rate = sat.recordsPerSecond / 2;
      const count = Math.max(1, Math.round(rate * o.latencySeconds));
      const latKeys = Array.from({ length: count }, (_, i) => `lat-${i}`);
      const paced = await producePaced(kafkaConfig({ brokers, clientId: 'cner-bench-producer', tls: null, sasl: null, log }), input, rate, latKeys, (k, i) => value(k, textOf(i)));
      const latTimes = await watcher.waitFor(latKeys, o.latencySeconds * 1000 + 120_000, serve);
      const latencies = latKeys.map((k, i) => latTimes[i]! - paced.producedAt.get(k)!);
      latency = {
        targetRate: rate,
        achievedRate: paced.achievedRate,
        records: count,
        p50Ms: quantile(latencies, 0.5),
        p99Ms: quantile(latencies, 0.99),
        maxMs: latencies.reduce((a, b) => Math.max(a, b)),
      };
    }
    const rss = serve.memory();
    return {
      run: {
        records: o.records,
        recordsPerSecond: sat.recordsPerSecond,
        seconds: sat.seconds,
        startupSeconds: ((cold ?? sat).firstAt - serve.startedAt) / 1000,
        coldRecordsPerSecond: cold?.recordsPerSecond ?? null,
        startup: await startup,
        peakMb: rss.peakMb,
        cpuSecondsPerRecord: perRecord(cpuAtFirst, cpuAtLast, sat.timed),
      },
      latency,
      lastMb: rss.lastMb,
    };
  } finally {
    await serve?.stop();
    await watcher?.stop();
    await kafka.deleteTopics([input, output, dlt, models]).catch(() => {});
    rmSync(modelCache, { recursive: true, force: true });
  }
}

/**
 * A run's rate from its events' visible times: the events after the first
 * visible batch, over the time from it to the last (the first batch's own
 * tagging happened before anything was visible).
 */
function window(times: readonly number[]): { firstAt: number; seconds: number; timed: number; recordsPerSecond: number } {
  const first = Math.min(...times);
  const last = Math.max(...times);
  const timed = times.filter((t) => t > first).length;
  return { firstAt: first, seconds: (last - first) / 1000, timed, recordsPerSecond: last > first ? (timed * 1000) / (last - first) : Number.NaN };
}

/** When each event of the output topic became visible to a read_committed reader, by key. */
class EventWatcher {
  readonly #visibleAt = new Map<string, number>();
  #tail: TopicTail | null = null;
  #crash: unknown = null;

  static async start(kafka: ReturnType<typeof createKafkaClient>, topic: string, groupId: string): Promise<EventWatcher> {
    const w = new EventWatcher();
    w.#tail = await kafka.tail(topic, {
      groupId,
      onMessages: async (messages) => {
        const now = Date.now();
        for (const m of messages) {
          const key = m.key?.toString() ?? '';
          if (!w.#visibleAt.has(key)) w.#visibleAt.set(key, now);
        }
      },
      onCrash: (error) => (w.#crash = error),
    });
    // Joined and fetching before anything is produced, so no event waits for the reader.
    const deadline = Date.now() + 30_000;
    while ((await kafka.describeGroup(groupId)).state !== 'Stable') {
      if (Date.now() > deadline) throw new Error(`the output reader did not join its group ${groupId}`);
      await sleep(100);
    }
    return w;
  }

  /** Visible times of `keys`, in order, once all are visible; `onFirst` is called when the first is seen (within 20 ms). */
  async waitFor(keys: readonly string[], timeoutMs: number, serve: Serve, onFirst: () => void = () => {}): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    let seen = false;
    for (;;) {
      if (!seen && keys.some((k) => this.#visibleAt.has(k))) {
        seen = true;
        onFirst();
      }
      if (keys.every((k) => this.#visibleAt.has(k))) return keys.map((k) => this.#visibleAt.get(k)!);
      if (this.#crash !== null) throw new Error('the output reader crashed', { cause: this.#crash });
      if (serve.exited) throw new Error(`cner serve exited early:\n${serve.output().slice(-3_000)}`);
      if (Date.now() > deadline) {
        const seen = keys.filter((k) => this.#visibleAt.has(k)).length;
        throw new Error(`timed out: ${seen} of ${keys.length} events visible after ${timeoutMs} ms\n${serve.output().slice(-3_000)}`);
      }
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    await this.#tail?.stop();
  }
}

/** Produces `keys` at `rate` records/s (a send every few ms of what is due); when each was handed to the producer. */
async function producePaced(
  config: kafkajs.KafkaConfig,
  topic: string,
  rate: number,
  keys: readonly string[],
  value: (key: string, index: number) => Buffer,
): Promise<{ producedAt: Map<string, number>; achievedRate: number }> {
  const producer = new kafkajs.Kafka(config).producer({ allowAutoTopicCreation: false, idempotent: true });
  await producer.connect();
  const producedAt = new Map<string, number>();
  try {
    const start = Date.now();
    let sent = 0;
    while (sent < keys.length) {
      const now = Date.now();
      const due = Math.min(keys.length, Math.floor(((now - start) / 1000) * rate) + 1);
      if (due <= sent) {
        await sleep(Math.max(1, Math.ceil(((sent / rate) * 1000) - (now - start))));
        continue;
      }
      const messages = [];
      for (; sent < due; sent++) {
        const key = keys[sent]!;
        producedAt.set(key, now);
        messages.push({ key, value: value(key, sent) });
      }
      await producer.send({ topic, acks: -1, messages });
    }
    const seconds = (Date.now() - start) / 1000;
    return { producedAt, achievedRate: keys.length / Math.max(seconds, 1e-3) };
  } finally {
    await producer.disconnect();
  }
}

interface CpuSample {
  readonly processor: number;
  readonly broker: number | null;
  readonly reader: number;
}

/** The processor's, the broker's and this process's CPU seconds so far. */
function cpuProbe(processorPid: number, brokerPid: number | null): () => CpuSample {
  return () => {
    const own = process.cpuUsage();
    return { processor: pidCpuSeconds(processorPid), broker: brokerPid === null ? null : pidCpuSeconds(brokerPid), reader: (own.user + own.system) / 1e6 };
  };
}

function perRecord(a: CpuSample, b: CpuSample, records: number): SaturationRun['cpuSecondsPerRecord'] {
  return {
    processor: (b.processor - a.processor) / records,
    broker: a.broker === null || b.broker === null ? null : (b.broker - a.broker) / records,
    reader: (b.reader - a.reader) / records,
  };
}

/** The broker scripts/stack.sh started, if its pid file names a running one (a remote broker: null). */
function localBrokerPid(root: string): number | null {
  try {
    const pid = Number(readFileSync(path.join(root, '.stack', 'kafka.pid'), 'utf8').trim());
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('cner.stack.service=kafka') ? pid : null;
  } catch {
    return null;
  }
}

/** A TCP port nothing listens on now (the OS's pick), for the processor's HTTP server. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A `cner serve` child process, as the integration tests start it. */
class Serve {
  readonly startedAt = Date.now();
  readonly #child: ChildProcess;
  readonly #chunks: string[] = [];
  #exited = false;

  private constructor(child: ChildProcess) {
    this.#child = child;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => this.#keep(d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => this.#keep(d));
    child.once('exit', () => (this.#exited = true));
  }

  static start(root: string, env: Record<string, string>): Serve {
    const child = spawn(process.execPath, [path.join(root, 'bin', 'cner.js'), 'serve'], {
      cwd: root,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? tmpdir(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Serve(child);
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  get exited(): boolean {
    return this.#exited;
  }

  output(): string {
    return this.#chunks.join('');
  }

  /**
   * Seconds from spawn until /readyz no longer waits for the model, and until
   * it answers 200 (polled every 20 ms; connection refused until the HTTP
   * server is up).
   */
  async readiness(port: number, timeoutMs = 180_000): Promise<{ modelLoadedSeconds: number; readySeconds: number }> {
    let modelLoaded = Number.NaN;
    while (!this.#exited && Date.now() - this.startedAt < timeoutMs) {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
      if (res !== null) {
        const body = (await res.json()) as { waitingFor?: string[] };
        const now = Date.now();
        if (Number.isNaN(modelLoaded) && !(body.waitingFor ?? []).includes('modelLoaded')) modelLoaded = now;
        if (res.status === 200) return { modelLoadedSeconds: (modelLoaded - this.startedAt) / 1000, readySeconds: (now - this.startedAt) / 1000 };
      }
      await sleep(20);
    }
    throw new Error(`cner serve not ready ${timeoutMs / 1000} s after start${this.#exited ? ' (it exited)' : ''}:\n${this.output().slice(-3000)}`);
  }

  /** Peak (VmHWM) and current (VmRSS) resident set, MB. */
  memory(): { peakMb: number; lastMb: number } {
    const status = readFileSync(`/proc/${this.#child.pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
    return { peakMb: kb('VmHWM') / 1024, lastMb: kb('VmRSS') / 1024 };
  }

  /** SIGTERM (finishes the transaction in flight), SIGKILL after 30 s. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }

  #keep(d: string): void {
    this.#chunks.push(d);
    if (this.#chunks.length > 2_000) this.#chunks.splice(0, 1_000); // only the tail matters (errors)
  }
}

/** What bin/cner.js runs: dist/ unless a source file is newer than the last build (then src/ through tsx). */
function processorMode(root: string): string {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      const p = path.join(dir, e.name);
      return Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }, 0);
  let built = -1;
  try {
    built = statSync(path.join(root, 'dist', '.tsbuildinfo')).mtimeMs;
  } catch {
    // never built
  }
  return newest(path.join(root, 'src')) > built ? 'src/ through tsx (dist/ is older: `npm run build` first to run the compiled code)' : 'dist/ (compiled)';
}
