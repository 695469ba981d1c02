// `cner demo`: the whole path on synthetic records. With no KAFKA_BROKERS it
// starts the local stack (scripts/stack.sh up); it creates demo topics of its
// own, produces the records in demo/records.jsonl (Avro, one as JSON, one
// deliberately invalid), runs the processor in this process, prints each
// record with its entities highlighted, and stops and deletes everything it
// started or created.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Config, PACKAGE_ROOT, loadConfig } from '../config.js';
import { frame, loadSchema, unframe } from '../records/avro.js';
import { readDeadLetterHeaders } from '../stream/dead-letter.js';
import { createKafkaClient } from '../kafka/adapter.js';
import { SchemaRegistry } from '../records/registry.js';
import { type RunningService, startService } from '../service.js';
import { createLogger } from '../observability/logger.js';
import { CnerError } from '../errors.js';
import type { ClinicalEntitiesEvent, EventEntity } from '../pipeline/event.js';
import { ENTITY_TYPES, type EntityCode } from '../pipeline/labels.js';
import { type Command, type CommandIo, EXIT } from './command.js';

const USAGE = `Usage: cner demo [--records FILE] [--timeout SECONDS]

Runs the processor end to end on synthetic EMR records (demo/records.jsonl)
and prints each record with its entities highlighted. Without KAFKA_BROKERS it
starts the local Kafka + registry stack (scripts/stack.sh up) and stops it
afterwards (unless it was already running); with KAFKA_BROKERS (and
SCHEMA_REGISTRY_URL) it uses those and starts nothing. It always works on
topics of its own (demo.emr.records.*.<run>) and deletes them at the end.
The model comes from CNER_MODEL_DIR (e.g. fixtures/tiny-bundle: random
weights, so its entities are meaningless).
`;

const COLORS: Readonly<Record<EntityCode, string>> = {
  DIS: '\x1b[1;31m',
  EXA: '\x1b[1;34m',
  TES: '\x1b[1;36m',
  OPE: '\x1b[1;35m',
  DRU: '\x1b[1;32m',
  ANA: '\x1b[1;33m',
};
const RESET = '\x1b[0m';

interface DemoRecord {
  readonly recordId: string;
  readonly text: string;
  readonly sourceSystem: string;
  readonly timestamp: string | number;
  readonly metadata: Record<string, string> | null;
}

export const command: Command = {
  usage: USAGE,
  async run(argv: readonly string[], io: CommandIo): Promise<number> {
    const { values } = parseArgs({ args: [...argv], options: { records: { type: 'string' }, timeout: { type: 'string' } }, strict: true });
    const recordsFile = path.resolve(values.records ?? path.join(PACKAGE_ROOT, 'demo', 'records.jsonl'));
    const timeoutMs = Number(values.timeout ?? 120) * 1000;
    if (!(timeoutMs > 0)) throw new CnerError('INVALID_CONFIG', '--timeout must be a positive number of seconds');
    const records = readRecords(recordsFile);
    const env = { CNER_LOG_LEVEL: 'warn', ...process.env };
    const { config: base } = loadConfig(env, 'demo');
    const log = createLogger({ level: base.logLevel, destination: 'stderr' });
    const color = io.stdout === process.stdout && process.stdout.isTTY && process.env['NO_COLOR'] === undefined;
    const say = (line: string): void => void io.stderr.write(`[demo] ${line}\n`);

    const cleanup: (() => Promise<void>)[] = [];
    try {
      // 1. Brokers and registry.
      let brokers = base.kafka.brokers;
      let registryUrl = base.registry.url;
      if (brokers.length === 0) {
        const stack = startLocalStack(say);
        brokers = [stack.brokers];
        registryUrl = stack.registryUrl;
        if (stack.started) cleanup.push(async () => stopLocalStack(say));
      } else if (registryUrl === null) {
        throw new CnerError('INVALID_CONFIG', 'KAFKA_BROKERS is set: set SCHEMA_REGISTRY_URL too (or unset both to use the local stack)');
      } else {
        say(`using KAFKA_BROKERS=${brokers.join(',')} and SCHEMA_REGISTRY_URL=${registryUrl}; starting nothing`);
      }

      // 2. Topics of our own.
      const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
      const inputTopic = `demo.emr.records.raw.${run}`;
      const config: Config = {
        ...base,
        httpPort: 0,
        registry: { ...base.registry, url: registryUrl },
        kafka: {
          ...base.kafka,
          brokers,
          groupId: `cner-demo-${run}`,
          inputTopic,
          outputTopic: `demo.emr.records.entities.${run}`,
          dltTopic: `${inputTopic}.DLT`,
          instanceId: run,
          transactionalIdPrefix: `cner-demo-${run}`,
          topicPartitions: 1,
          topicReplicationFactor: 1,
          createTopics: true,
        },
      };
      const { kafka: k } = config;
      const kafka = createKafkaClient({ ...k, log: log.child({ component: 'kafka' }) });
      await kafka.createTopics([k.inputTopic, k.outputTopic, k.dltTopic].map((topic) => ({ topic, partitions: 1, replicationFactor: 1 })));
      cleanup.push(() => kafka.deleteTopics([k.inputTopic, k.outputTopic, k.dltTopic]).catch(() => say('could not delete the demo topics')));
      say(`created topics ${k.inputTopic}, ${k.outputTopic}, ${k.dltTopic}`);

      // 3. The records: Avro (registered EmrRecord), the second one as JSON.
      const registry = new SchemaRegistry({ url: registryUrl, auth: config.registry.auth });
      const emr = loadSchema('EmrRecord');
      cleanup.push(async () => {
        for (const topic of [k.inputTopic, k.outputTopic]) await registry.deleteSubject(`${topic}-value`).catch(() => {});
      });
      const schemaId = await registry.register(`${k.inputTopic}-value`, emr.text);
      await kafka.produce(
        k.inputTopic,
        records.map((r, i) => ({
          key: Buffer.from(r.recordId),
          value: i === 1 ? Buffer.from(JSON.stringify(r)) : frame(schemaId, emr.type.toBuffer({ ...r, timestamp: toMillis(r.timestamp) })),
          headers: {},
        })),
      );
      say(`produced ${records.length} records (${records.length - 1} Avro, 1 JSON; one has an empty text on purpose)`);

      // 4. The processor, in this process.
      const started = Date.now();
      const service: RunningService = await startService({ config, log, httpHost: '127.0.0.1' });
      cleanup.push(() => service.stop());
      say(`processor running (model ${config.model.dir}); waiting for its events ...`);

      // 5. Read what it committed (read_committed) and print it.
      const valid = records.filter((r) => r.text.length > 0).length;
      const [events, deadLetters] = await Promise.all([
        kafka.collect(k.outputTopic, { timeoutMs, until: (seen) => seen.length >= valid }),
        kafka.collect(k.dltTopic, { timeoutMs, until: (seen) => seen.length >= records.length - valid }),
      ]);
      const out = loadSchema('ClinicalEntities');
      const byId = new Map(records.map((r) => [r.recordId, r]));
      io.stdout.write(`\n${legend(color)}\n\n`);
      for (const m of events) {
        const framed = m.value === null ? null : unframe(m.value);
        if (framed === null) continue;
        const event = out.type.fromBuffer(framed.payload) as ClinicalEntitiesEvent;
        const record = byId.get(event.recordId);
        if (record === undefined) continue;
        const linker = event.linkerVersion === null ? '' : `, linker ${event.linkerVersion}`;
        io.stdout.write(`${event.recordId}  (model ${event.modelVersion}${linker}, ${event.entities.length} entities)\n`);
        io.stdout.write(`  ${highlight(record.text, event, color)}\n`);
        for (const line of codeLines(event)) io.stdout.write(`    ${line}\n`);
        io.stdout.write('\n');
      }
      for (const m of deadLetters) {
        const info = readDeadLetterHeaders(m.headers);
        io.stdout.write(`${m.key?.toString() ?? '(no key)'}  → dead-letter topic: ${info?.errorCode ?? '?'} (${info?.message ?? ''})\n`);
      }
      const ok = events.length >= valid && deadLetters.length >= records.length - valid;
      say(`${events.length} events and ${deadLetters.length} dead letter(s) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (!ok) say(`timed out after ${timeoutMs / 1000} s waiting for ${valid} events`);
      return ok ? EXIT.ok : EXIT.failures;
    } finally {
      for (const step of cleanup.reverse()) await step().catch(() => {});
    }
  },
};

function readRecords(file: string): DemoRecord[] {
  if (!existsSync(file)) throw new CnerError('INVALID_CONFIG', `--records: ${file} does not exist`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as DemoRecord);
}

const toMillis = (t: string | number): number => (typeof t === 'number' ? t : Date.parse(t));

function startLocalStack(say: (line: string) => void): { brokers: string; registryUrl: string; started: boolean } {
  const script = path.join(PACKAGE_ROOT, 'scripts', 'stack.sh');
  if (!existsSync(script)) throw new CnerError('INVALID_CONFIG', `KAFKA_BROKERS is not set and ${script} is missing: set KAFKA_BROKERS and SCHEMA_REGISTRY_URL`);
  const running = spawnSync(script, ['status'], { stdio: ['ignore', 'ignore', 'ignore'] }).status === 0;
  say(running ? 'local stack already running: using it (and leaving it running)' : 'starting the local stack (scripts/stack.sh up; the first run downloads Kafka and Apicurio) ...');
  const up = spawnSync(script, ['up'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (up.status !== 0) throw new CnerError('INVALID_CONFIG', 'scripts/stack.sh up failed (see above)');
  const env = Object.fromEntries(up.stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]));
  const brokers = env['KAFKA_BROKERS'];
  const registryUrl = env['SCHEMA_REGISTRY_URL'];
  if (brokers === undefined || registryUrl === undefined) throw new CnerError('INVALID_CONFIG', 'scripts/stack.sh up did not print KAFKA_BROKERS and SCHEMA_REGISTRY_URL');
  return { brokers, registryUrl, started: !running };
}

function stopLocalStack(say: (line: string) => void): void {
  say('stopping the local stack it started (scripts/stack.sh down)');
  spawnSync(path.join(PACKAGE_ROOT, 'scripts', 'stack.sh'), ['down'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function legend(color: boolean): string {
  return ENTITY_TYPES.map((t) => (color ? `${COLORS[t.code]}${t.code} ${t.label}${RESET}` : `[${t.code} ${t.label}]`)).join('  ');
}

/** One line per entity that has codes: its text → each concept's code, name and score. */
export function codeLines(event: { readonly entities: readonly Pick<EventEntity, 'text' | 'codes'>[] }): string[] {
  return event.entities
    .filter((e) => e.codes.length > 0)
    .map((e) => `${e.text} → ${e.codes.map((c) => `${c.code} ${c.name} (${c.score.toFixed(2)})`).join('; ')}`);
}

/** The text with each entity wrapped in its type's colour (or [text|TYPE] without colour). */
export function highlight(text: string, event: { readonly entities: readonly Pick<EventEntity, 'start' | 'end' | 'type'>[] }, color: boolean): string {
  const chars = Array.from(text);
  const starts = new Map(event.entities.map((e) => [e.start, e]));
  let out = '';
  for (let i = 0; i < chars.length; ) {
    const e = starts.get(i);
    if (e === undefined || e.end <= i) {
      out += chars[i];
      i++;
      continue;
    }
    const span = chars.slice(e.start, e.end).join('');
    out += color ? `${COLORS[e.type]}${span}${RESET}` : `[${span}|${e.type}]`;
    i = e.end;
  }
  return out;
}
