// The soak: many `cner serve` processes on the real broker and registry, with
// chaos while they work (SIGKILLs, pauses past the session timeout, broker
// restarts) and poison records of every kind mixed into the input. Every
// record must end as exactly one event or exactly one dead letter, as seen by
// read_committed readers: the run reports lost, duplicated, dead-lettered and
// throughput, and fails on any loss or duplicate.
//
// `npm run soak` runs the full size (10,000 records, 3 processors, 20 kills,
// 3 pauses, 3 broker restarts); test/integration/soak.test.ts runs a short
// one in CI. Broker restarts need the local stack (scripts/stack.sh); against
// other brokers they are skipped, and the report says so.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { frame, loadSchema } from '../../src/records/avro.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import type { InputMessage, OutputMessage } from '../../src/kafka/port.js';
import { HUGE_MAP_EMR_BODY, emrBodyWithInvalidUtf8, seededRandom } from '../helpers.js';
import { ROOT, type ServeProcess, type Services, type TestRun, jsonRecord, runEnv, spawnServe, testRun, tools, waitFor } from '../integration/helpers.js';

export interface SoakOptions {
  readonly records: number;
  readonly processors: number;
  readonly kills: number;
  readonly pauses: number;
  readonly brokerRestarts: number;
  /** One poison record in this many (cycling through every kind). */
  readonly poisonEvery: number;
  readonly partitions: number;
  readonly seed: number;
  /** Model bundle of the processors (default: the tiny test bundle, so the run measures the stream, not the model). */
  readonly modelDir?: string;
  readonly log?: (line: string) => void;
}

export interface SoakReport {
  readonly records: number;
  readonly poison: number;
  readonly events: number;
  readonly deadLetters: number;
  readonly lost: number;
  readonly duplicated: number;
  /** Records with both an event and a dead letter. */
  readonly both: number;
  /** Dead letters of good records, or events of poison. */
  readonly misrouted: number;
  readonly kills: number;
  readonly pauses: number;
  readonly brokerRestarts: number;
  /** Why broker restarts were skipped, if they were. */
  readonly brokerRestartsSkipped?: string;
  readonly seconds: number;
  readonly recordsPerSecond: number;
  readonly ok: boolean;
}

const SESSION_TIMEOUT_MS = 6_000;
const emr = loadSchema('EmrRecord');

/** Every kind of record the processor must dead-letter without stopping the stream. */
const POISON: readonly ((id: string, schemaId: number) => { value: Buffer | null; headers?: Record<string, Buffer | Buffer[]> })[] = [
  () => ({ value: Buffer.alloc(0) }), // empty
  () => ({ value: Buffer.from('{"recordId": "x", "text": ') }), // truncated JSON
  (id) => ({ value: Buffer.from(JSON.stringify({ recordId: id, sourceSystem: 'soak' })) }), // no text
  (id) => ({ value: jsonRecord(id, '胸'.repeat(3_000)) }), // over CNER_MAX_TEXT_LENGTH (2,000 here)
  (id) => ({ value: Buffer.from(`{"recordId":"${id}","text":"\\ud800 lone surrogate","sourceSystem":"soak","timestamp":0,"metadata":null}`) }),
  () => ({ value: frame(2_147_000_000, Buffer.from([0, 0])) }), // a schema id the registry does not have
  (_id, schemaId) => ({ value: frame(schemaId, HUGE_MAP_EMR_BODY) }),
  (id, schemaId) => ({ value: frame(schemaId, emrBodyWithInvalidUtf8(id)) }),
  () => ({ value: Buffer.from([0xff, 0xfe, 0x00]), headers: { 'x-hop': [Buffer.from('a'), Buffer.from('b')] } }), // not UTF-8, repeated headers
];

const good = (i: number): string => `SOAK-${i}：患者${i % 9 + 1}天前出现胸痛，心电图示ST段抬高，诊断急性心肌梗死，予阿司匹林口服。`;


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (p: ServeProcess): boolean => p.child.exitCode === null && p.child.signalCode === null;

export async function runSoak(s: Services, o: SoakOptions): Promise<SoakReport> {
  const say = o.log ?? ((line: string) => process.stderr.write(`[soak] ${line}\n`));
  const rand = seededRandom(o.seed);
  const kafka = tools(s.brokers);
  const run: TestRun = testRun('soak');
  await kafka.createTopics([run.input, run.output, run.dlt].map((topic) => ({ topic, partitions: o.partitions, replicationFactor: 1 })));
  const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
  const schemaId = await registry.register(`${run.input}-value`, emr.text);
  const localStack = s.brokers === (await stackBrokers());
  const restartsSkipped = o.brokerRestarts > 0 && !localStack ? `the brokers (${s.brokers}) are not the local stack's (scripts/stack.sh)` : undefined;

  // The input, in order: a poison record every `poisonEvery`.
  const poisonKeys = new Set<string>();
  const messages: Omit<OutputMessage, 'topic'>[] = [];
  for (let i = 0; i < o.records; i++) {
    const key = `soak-${i}`;
    if (o.poisonEvery > 0 && i % o.poisonEvery === o.poisonEvery - 1) {
      const p = POISON[Math.floor(i / o.poisonEvery) % POISON.length]!(key, schemaId);
      poisonKeys.add(key);
      messages.push({ key: Buffer.from(key), value: p.value, headers: p.headers ?? {} });
    } else {
      messages.push({ key: Buffer.from(key), value: jsonRecord(key, good(i)), headers: {} });
    }
  }

  const env = (instance: string): Record<string, string> =>
    runEnv(s, run, {
      KAFKA_DLT_TOPIC: run.dlt,
      KAFKA_CREATE_TOPICS: 'false',
      KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
      CNER_INSTANCE_ID: instance,
      CNER_MAX_BATCH_SIZE: '4',
      CNER_MAX_TEXT_LENGTH: '2000',
      CNER_HTTP_PORT: '0',
      CNER_LOG_LEVEL: 'info',
      ...(o.modelDir === undefined ? {} : { CNER_MODEL_DIR: o.modelDir }),
    });
  let generation = 0;
  const processes: ServeProcess[] = [];
  const all: ServeProcess[] = [];
  const start = (slot: number): void => {
    const p = spawnServe(env(`soak-pod-${slot}-${generation++}`)); // a new pod name, as a Deployment gives
    processes[slot] = p;
    all.push(p);
  };

  const started = Date.now();
  // Fed in waves while the chaos runs, so that there is always work in flight.
  const waves = 20;
  const feeding = (async () => {
    for (let w = 0; w < waves; w++) {
      const part = messages.slice(Math.floor((w * messages.length) / waves), Math.floor(((w + 1) * messages.length) / waves));
      await waitFor('the broker to take a wave of input', 120_000, async () => {
        await kafka.produce(run.input, part);
        return true;
      }, 1_000);
      await sleep(500);
    }
  })();
  for (let slot = 0; slot < o.processors; slot++) start(slot);

  // The chaos, in a seeded random order, spaced out so that the group settles in between sometimes.
  const chaos = [...Array<string>(o.kills).fill('kill'), ...Array<string>(o.pauses).fill('pause'), ...Array<string>(restartsSkipped === undefined ? o.brokerRestarts : 0).fill('broker')];
  for (let i = chaos.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [chaos[i], chaos[j]] = [chaos[j]!, chaos[i]!];
  }
  const done = { kill: 0, pause: 0, broker: 0 };
  for (const action of chaos) {
    await sleep(500 + rand() * 2_000);
    const slot = Math.floor(rand() * o.processors);
    const victim = processes[slot]!;
    if (action === 'kill') {
      victim.child.kill('SIGKILL');
      await victim.exited;
      start(slot);
    } else if (action === 'pause') {
      victim.child.kill('SIGSTOP');
      await sleep(SESSION_TIMEOUT_MS + 2_000);
      victim.child.kill('SIGCONT');
    } else {
      await execFileP('bash', [path.join(ROOT, 'scripts', 'stack.sh'), 'restart-kafka'], { cwd: ROOT, timeout: 180_000 });
    }
    done[action as keyof typeof done]++;
    say(`${action} ${done[action as keyof typeof done]} (processor ${slot})`);
  }
  await feeding;

  // Until every record is accounted for, then stop everything and count again (final).
  const read = async (timeoutMs: number): Promise<[InputMessage[], InputMessage[]]> =>
    Promise.all([kafka.collect(run.output, { timeoutMs }), kafka.collect(run.dlt, { timeoutMs })]);
  await waitFor('every record to be accounted for', 600_000, async () => {
    const [events, dead] = await read(5_000);
    return new Set([...events, ...dead].map((m) => m.key?.toString())).size >= o.records ? true : undefined;
  }, 2_000).catch((e: unknown) => say(String(e)));
  const seconds = (Date.now() - started) / 1000;
  for (const p of processes) if (alive(p)) p.child.kill('SIGTERM');
  await Promise.all(processes.map((p) => p.exited));
  const [events, dead] = await read(8_000); // nothing can be written any more: the counts are final

  const counts = new Map<string, { events: number; dead: number }>();
  const count = (m: InputMessage, what: 'events' | 'dead'): void => {
    const key = m.key?.toString() ?? '';
    const c = counts.get(key) ?? { events: 0, dead: 0 };
    c[what]++;
    counts.set(key, c);
  };
  for (const m of events) count(m, 'events');
  for (const m of dead) count(m, 'dead');
  let lost = 0;
  let duplicated = 0;
  let both = 0;
  let misrouted = 0;
  for (let i = 0; i < o.records; i++) {
    const key = `soak-${i}`;
    const c = counts.get(key) ?? { events: 0, dead: 0 };
    if (c.events + c.dead === 0) lost++;
    if (c.events > 1 || c.dead > 1) duplicated++;
    if (c.events > 0 && c.dead > 0) both++;
    if ((poisonKeys.has(key) && c.events > 0) || (!poisonKeys.has(key) && c.dead > 0)) misrouted++;
  }
  const logs = all.map((p) => p.output()).join('');
  if (/SOAK-\d|soak-\d/.test(logs)) {
    say('a log line contains record text or a record id');
    misrouted++;
  }
  await kafka.deleteTopics([run.input, run.output, run.dlt]).catch(() => {});
  const report: SoakReport = {
    records: o.records,
    poison: poisonKeys.size,
    events: events.length,
    deadLetters: dead.length,
    lost,
    duplicated,
    both,
    misrouted,
    kills: done.kill,
    pauses: done.pause,
    brokerRestarts: done.broker,
    ...(restartsSkipped === undefined ? {} : { brokerRestartsSkipped: restartsSkipped }),
    seconds: Math.round(seconds * 10) / 10,
    recordsPerSecond: Math.round((o.records / seconds) * 10) / 10,
    ok: lost === 0 && duplicated === 0 && both === 0 && misrouted === 0,
  };
  return report;
}

const execFileP = promisify(execFile);

/** KAFKA_BROKERS of the local stack, if it runs (`env` prints the configured address whether or not it does). */
async function stackBrokers(): Promise<string | null> {
  const stack = path.join(ROOT, 'scripts', 'stack.sh');
  try {
    await execFileP('bash', [stack, 'status'], { cwd: ROOT }); // exits non-zero unless both services are healthy
    const { stdout } = await execFileP('bash', [stack, 'env'], { cwd: ROOT });
    return /KAFKA_BROKERS=(\S+)/.exec(stdout)?.[1] ?? null;
  } catch {
    return null;
  }
}
