// The model-version topic from the Kafka side: publishing a bundle (the
// TypeScript twin of `cner-train publish`), selecting the live version,
// reading the topic once (`cner model list`), and the value decoder the
// ModelManager uses. Records and their layout: src/versions/catalog.ts and
// docs/model-versions.md.

import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type avro from 'avsc';
import { DEFAULT_PART_BYTES, packBundle, sha256Hex, splitArchive } from './archive.js';
import { ModelCatalog, type ModelTopicRecord, type ModelVersionInfo, SAFE_VERSION, keyOf, modelSchema, fromAvro, toAvro } from './catalog.js';
import { TAGS } from '../pipeline/labels.js';
import { CnerError } from '../errors.js';
import { frame, unframe } from '../records/avro.js';
import { avroBoundsProblem } from '../records/avro-bounds.js';
import type { KafkaTools } from '../kafka/adapter.js';
import type { SchemaRegistry } from '../records/registry.js';
import type { ModelTopicClient } from '../kafka/port.js';

export const modelSubject = (topic: string): string => `${topic}-value`;

/** Creates the model topic (one partition, compacted) if it is missing. */
export async function ensureModelTopic(client: ModelTopicClient, topic: string, replicationFactor = 1): Promise<void> {
  if ((await client.missingTopics([topic])).length === 0) return;
  try {
    await client.createTopics([{ topic, partitions: 1, replicationFactor, config: { 'cleanup.policy': 'compact' } }]);
  } catch (e) {
    if ((await client.missingTopics([topic])).length > 0) throw e; // else a concurrent publisher created it
  }
}

export interface PublishOptions {
  readonly live?: boolean;
  readonly reason?: string;
  readonly partBytes?: number;
  readonly uri?: string | null;
  readonly by?: string;
}

export interface Published {
  readonly version: string;
  readonly sha256: string;
  readonly size: number;
  readonly parts: number;
  readonly records: number;
}

/** The records that publish `dir`: announcement, then the parts (none with a uri). */
export async function bundleRecords(dir: string, options: PublishOptions = {}): Promise<{ info: ModelVersionInfo; records: ModelTopicRecord[] }> {
  const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { version?: unknown; name?: unknown; created?: unknown; metrics?: { dev_per_type?: unknown } };
  const labels = JSON.parse(await readFile(path.join(dir, 'labels.json'), 'utf8')) as unknown;
  if (typeof manifest.version !== 'string' || !SAFE_VERSION.test(manifest.version)) {
    throw new CnerError('INTERNAL', `manifest.json version ${JSON.stringify(manifest.version)} must match ${SAFE_VERSION}`);
  }
  const archive = await packBundle(dir);
  const sha256 = sha256Hex(archive);
  const uri = options.uri ?? null;
  const parts = uri === null ? splitArchive(archive, options.partBytes ?? DEFAULT_PART_BYTES) : [];
  const created = typeof manifest.created === 'string' ? Date.parse(manifest.created) : Number.NaN;
  const info: ModelVersionInfo = {
    version: manifest.version,
    name: typeof manifest.name === 'string' ? manifest.name : '',
    created: Number.isFinite(created) ? created : Date.now(),
    metrics: typeMetrics(manifest.metrics?.dev_per_type),
    labels: Array.isArray(labels) ? labels.map(String) : [],
    sha256,
    size: archive.length,
    parts: parts.length,
    uri,
    publishedBy: options.by ?? `cner/${os.userInfo().username}`,
  };
  return {
    info,
    records: [{ kind: 'version', info }, ...parts.map((data, index): ModelTopicRecord => ({ kind: 'part', part: { version: info.version, sha256, index, count: parts.length, data } }))],
  };
}

function typeMetrics(perType: unknown): ModelVersionInfo['metrics'] {
  const out: Record<string, { precision: number; recall: number; f1: number; support: number }> = {};
  if (typeof perType !== 'object' || perType === null) return out;
  for (const [code, m] of Object.entries(perType as Record<string, Record<string, unknown>>)) {
    const n = (k: string): number | null => (typeof m?.[k] === 'number' ? m[k] : null);
    const [p, r, f] = [n('precision'), n('recall'), n('f1')];
    if (p !== null && r !== null && f !== null) out[code] = { precision: p, recall: r, f1: f, support: Math.trunc(n('support') ?? n('number') ?? 0) };
  }
  return out;
}

export class ModelTopicWriter {
  readonly #client: ModelTopicClient;
  readonly #registry: SchemaRegistry;
  readonly #topic: string;
  readonly #replicationFactor: number;
  #schemaId: number | null = null;

  /** `replicationFactor`: of the topic, if this creates it. */
  constructor(client: ModelTopicClient, registry: SchemaRegistry, topic: string, replicationFactor = 1) {
    this.#client = client;
    this.#registry = registry;
    this.#topic = topic;
    this.#replicationFactor = replicationFactor;
  }

  async publish(dir: string, options: PublishOptions = {}): Promise<Published> {
    const { info, records } = await bundleRecords(dir, options);
    const all = options.live === true ? [...records, liveRecord(info.version, options)] : records;
    await this.#write(all);
    return { version: info.version, sha256: info.sha256, size: info.size, parts: info.parts, records: all.length };
  }

  async setLive(version: string, options: Pick<PublishOptions, 'reason' | 'by'> = {}): Promise<void> {
    await this.#write([liveRecord(version, options)]);
  }

  /** Writes raw records (tests use it to publish broken versions). */
  async write(records: readonly ModelTopicRecord[]): Promise<void> {
    await this.#write(records);
  }

  async #write(records: readonly ModelTopicRecord[]): Promise<void> {
    await ensureModelTopic(this.#client, this.#topic, this.#replicationFactor);
    const schema = modelSchema();
    this.#schemaId ??= await this.#registry.register(modelSubject(this.#topic), schema.text);
    const id = this.#schemaId;
    await this.#client.produceEach(
      this.#topic,
      records.map((r) => ({ key: Buffer.from(keyOf(r)), value: frame(id, schema.type.toBuffer(toAvro(r))), headers: {} })),
    );
  }
}

function liveRecord(version: string, options: Pick<PublishOptions, 'reason' | 'by'>): ModelTopicRecord {
  return { kind: 'live', live: { version, by: options.by ?? `cner/${os.userInfo().username}`, reason: options.reason ?? '', at: Date.now() } };
}

/** Decodes model-topic values written with any registered version of the schema. */
export function modelTopicDecoder(registry: SchemaRegistry): (value: Buffer) => Promise<ModelTopicRecord> {
  const reader = modelSchema().type;
  const resolvers = new Map<number, Promise<{ readonly writer: avro.Type; readonly resolver: avro.Resolver }>>();
  return async (value) => {
    const framed = unframe(value);
    if (framed === null) throw new CnerError('UNDECODABLE_VALUE', 'model topic value is not Confluent-framed Avro');
    let pending = resolvers.get(framed.schemaId);
    if (pending === undefined) {
      pending = registry.writerType(framed.schemaId).then((writer) => ({ writer, resolver: reader.createResolver(writer) }));
      resolvers.set(framed.schemaId, pending);
      pending.catch(() => resolvers.delete(framed.schemaId));
    }
    const { writer, resolver } = await pending;
    // Bounded like the input (avro-bounds.ts): a malformed value must not block the event loop.
    const problem = avroBoundsProblem(writer, framed.payload);
    if (problem !== null) throw new CnerError('UNDECODABLE_VALUE', `model topic value is malformed for its writer schema (id ${framed.schemaId}): ${problem}`);
    return fromAvro(reader.fromBuffer(framed.payload, resolver));
  };
}

export interface VersionRow {
  readonly version: string;
  readonly live: boolean;
  readonly created: string;
  readonly sha256: string;
  readonly size: number;
  readonly parts: string;
  readonly labelsOk: boolean;
  readonly f1: string;
  readonly publishedBy: string;
}

/** Reads the whole topic once and lists its versions (the live one marked). */
export async function listVersions(client: ModelTopicClient & Pick<KafkaTools, 'collect'>, registry: SchemaRegistry, topic: string, timeoutMs = 10_000): Promise<{ rows: VersionRow[]; live: string | null }> {
  if ((await client.missingTopics([topic])).length > 0) return { rows: [], live: null };
  const ends = await client.endOffsets(topic);
  const total = Object.values(ends).reduce((n, o) => n + Number(o), 0);
  const decode = modelTopicDecoder(registry);
  const catalog = new ModelCatalog();
  const messages = await client.collect(topic, {
    timeoutMs,
    until: (seen) => seen.reduce((max, m) => Math.max(max, Number(m.offset) + 1), 0) >= total,
  });
  for (const m of messages.sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset)))) {
    const record = m.value === null ? null : await decode(m.value).catch(() => null);
    catalog.apply(m.key?.toString('utf8') ?? '', record, m.offset);
  }
  const live = catalog.live?.version ?? null;
  const rows = [...catalog.versions.values()]
    .sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset)))
    .map(({ info, parts }) => {
      const all = info.metrics;
      const f1s = Object.values(all).map((m) => m.f1);
      return {
        version: info.version,
        live: info.version === live,
        created: new Date(info.created).toISOString(),
        sha256: info.sha256,
        size: info.size,
        parts: info.uri !== null ? `uri ${info.uri}` : `${parts.size}/${info.parts}`,
        labelsOk: info.labels.length === TAGS.length && info.labels.every((t, i) => t === TAGS[i]),
        f1: f1s.length === 0 ? '-' : (f1s.reduce((a, b) => a + b, 0) / f1s.length).toFixed(3),
        publishedBy: info.publishedBy,
      };
    });
  return { rows, live };
}
