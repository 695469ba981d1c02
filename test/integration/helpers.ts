// Shared by the integration tests: where the broker and registry are, unique
// topic names, a child `cner serve`, polling helpers.
//
// The services: KAFKA_BROKERS and SCHEMA_REGISTRY_URL from the environment
// (scripts/stack.sh up prints them); else, when a Docker engine answers, an
// Apache Kafka and an Apicurio Registry container (testcontainers); else the
// tests are skipped with a message saying how to run them.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server, type Socket, connect } from 'node:net';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { PACKAGE_ROOT } from '../../src/config.js';
import { createKafkaClient } from '../../src/kafka/adapter.js';
import { createLogger } from '../../src/observability/logger.js';

export const ROOT = PACKAGE_ROOT;
export const TINY_BUNDLE = path.join(ROOT, 'fixtures', 'tiny-bundle');

export interface Services {
  readonly brokers: string;
  readonly registryUrl: string;
  readonly stop: () => Promise<void>;
}

let services: Promise<Services | string> | null = null;

/** The services, or a string saying why the integration tests are skipped. */
export function getServices(): Promise<Services | string> {
  services ??= resolveServices();
  return services;
}

async function resolveServices(): Promise<Services | string> {
  const brokers = process.env['KAFKA_BROKERS'];
  const registryUrl = process.env['SCHEMA_REGISTRY_URL'];
  if (brokers && registryUrl) return { brokers, registryUrl, stop: async () => {} };
  try {
    return await startContainers();
  } catch (e) {
    return `integration tests skipped: set KAFKA_BROKERS and SCHEMA_REGISTRY_URL (e.g. eval "$(scripts/stack.sh env)" after scripts/stack.sh up), or run them where a Docker engine answers (testcontainers: ${e instanceof Error ? e.message.split('\n')[0] : String(e)})`;
  }
}

/** Kafka 4 (KRaft, one node) and Apicurio Registry 3 in containers, for a laptop with Docker. */
async function startContainers(): Promise<Services> {
  const tc = await import('testcontainers');
  await tc.getContainerRuntimeClient(); // throws without a Docker engine
  const kafkaPort = await freePort();
  const kafka = await new tc.GenericContainer('apache/kafka:4.1.1')
    .withExposedPorts({ container: 9092, host: kafkaPort })
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: 'PLAINTEXT://:9092,CONTROLLER://:9093',
      KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort}`,
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
    })
    .withWaitStrategy(tc.Wait.forLogMessage(/Kafka Server started/))
    .withStartupTimeout(120_000)
    .start();
  const registry = await new tc.GenericContainer('apicurio/apicurio-registry:3.0.9')
    .withExposedPorts(8080)
    .withEnvironment({ APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED: 'false', APICURIO_REST_DELETION_ARTIFACT_ENABLED: 'true' })
    .withWaitStrategy(tc.Wait.forHttp('/apis/ccompat/v7/subjects', 8080))
    .withStartupTimeout(120_000)
    .start();
  return {
    brokers: `127.0.0.1:${kafkaPort}`,
    registryUrl: `http://${registry.getHost()}:${registry.getMappedPort(8080)}/apis/ccompat/v7`,
    stop: async () => {
      await registry.stop();
      await kafka.stop();
    },
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;
}

/** One test's own names, derived from a unique run name: topics, consumer group, transactional ids. */
export interface TestRun {
  readonly run: string;
  readonly input: string;
  readonly output: string;
  readonly dlt: string;
  readonly models: string;
  readonly group: string;
}

export function testRun(prefix: string): TestRun {
  const run = uniqueName(prefix);
  const input = `${run}.records.raw`;
  return { run, input, output: `${run}.records.entities`, dlt: `${input}.DLT`, models: `${run}.models`, group: `${run}.group` };
}

/**
 * The environment of a processor on a run's own topics, group and transactional
 * ids (never the shared ner.models.versions), serving the tiny bundle; `more`
 * adds settings or overrides these.
 */
export function runEnv(s: Services, r: TestRun, more: Record<string, string> = {}): Record<string, string> {
  return {
    KAFKA_BROKERS: s.brokers,
    SCHEMA_REGISTRY_URL: s.registryUrl,
    KAFKA_INPUT_TOPIC: r.input,
    KAFKA_OUTPUT_TOPIC: r.output,
    KAFKA_MODEL_TOPIC: r.models,
    KAFKA_GROUP_ID: r.group,
    KAFKA_TRANSACTIONAL_ID_PREFIX: r.run,
    CNER_MODEL_DIR: TINY_BUNDLE,
    ...more,
  };
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** The processor's logger writing into `lines` (for asserting what reaches the logs). */
export function capturingLogger(lines: string[], level: 'debug' | 'info' = 'debug'): Logger {
  return createLogger({ level, destination: { write: (chunk: string) => void lines.push(chunk) } });
}

export function tools(brokers: string, log: Logger = silentLogger()) {
  return createKafkaClient({
    brokers: brokers.split(','),
    clientId: 'cner-it',
    groupId: 'cner-it-unused',
    tls: null,
    sasl: null,
    sessionTimeoutMs: 10_000,
    log,
    retries: 3,
  });
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined | false> | T | undefined | false, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2_000) });
  return { status: res.status, body: await res.text() };
}

/** A running `cner serve` child process with its output collected. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnServe(env: Record<string, string>): ServeProcess {
  const chunks: string[] = [];
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'cner.js'), 'serve'], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.setEncoding('utf8').on('data', (d: string) => chunks.push(d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => chunks.push(d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => chunks.join(''), exited };
}

/**
 * A TCP proxy to `target` that can be closed and opened: the dependency
 * behind it "goes away" (connection refused) and "comes back".
 */
export class ToggleProxy {
  readonly port: number;
  readonly #target: { host: string; port: number };
  #server: Server | null = null;
  readonly #sockets = new Set<Socket>();

  private constructor(port: number, target: { host: string; port: number }) {
    this.port = port;
    this.#target = target;
  }

  static async create(target: { host: string; port: number }): Promise<ToggleProxy> {
    return new ToggleProxy(await freePort(), target);
  }

  async open(): Promise<void> {
    if (this.#server !== null) return;
    const server = createServer((client) => {
      const upstream = connect(this.#target.port, this.#target.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.#server = server;
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    for (const s of this.#sockets) s.destroy();
    if (server !== null) await new Promise((r) => server.close(r));
  }
}

/** A record value as the JSON variant of EmrRecord. */
export function jsonRecord(recordId: string, text: string, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ recordId, text, sourceSystem: 'it', timestamp: Date.now(), metadata: null, ...extra }));
}
