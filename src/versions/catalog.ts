// The model-version topic's records (schemas/ModelVersionEvent.avsc,
// docs/model-versions.md) in plain types, their keys and Avro encoding, and
// the catalog that folds the topic into "which versions exist, which parts of
// each have arrived, which version is live". No Kafka here: the records come
// from the adapter's tail (the processor) or a collect (`cner model list`).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { PACKAGE_ROOT } from '../paths.js';

export const MODEL_SCHEMA_FILE = path.join(PACKAGE_ROOT, 'schemas', 'ModelVersionEvent.avsc');
const NS = 'health.cner.';

export interface TypeMetrics {
  readonly precision: number;
  readonly recall: number;
  readonly f1: number;
  readonly support: number;
}

export interface ModelVersionInfo {
  readonly version: string;
  readonly name: string;
  /** Epoch milliseconds. */
  readonly created: number;
  readonly metrics: Readonly<Record<string, TypeMetrics>>;
  readonly labels: readonly string[];
  readonly sha256: string;
  readonly size: number;
  readonly parts: number;
  readonly uri: string | null;
  readonly publishedBy: string;
}

export interface BundlePart {
  readonly version: string;
  readonly sha256: string;
  readonly index: number;
  readonly count: number;
  readonly data: Buffer;
}

export interface LiveSelection {
  readonly version: string;
  readonly by: string;
  readonly reason: string;
  readonly at: number;
}

export type ModelTopicRecord =
  | { readonly kind: 'version'; readonly info: ModelVersionInfo }
  | { readonly kind: 'part'; readonly part: BundlePart }
  | { readonly kind: 'live'; readonly live: LiveSelection };

export const SAFE_VERSION = /^[A-Za-z0-9._+-]{1,128}$/;

export const keyOf = (r: ModelTopicRecord): string =>
  r.kind === 'version' ? `version/${r.info.version}` : r.kind === 'part' ? `version/${r.part.version}/part/${r.part.index}` : 'live';

export interface ModelSchema {
  /** Minified .avsc text, as registered. */
  readonly text: string;
  readonly type: avro.Type;
}

let schema: ModelSchema | null = null;

export function modelSchema(): ModelSchema {
  if (schema === null) {
    const json = JSON.parse(readFileSync(MODEL_SCHEMA_FILE, 'utf8')) as avro.Schema;
    schema = { text: JSON.stringify(json), type: avro.Type.forSchema(json, { wrapUnions: true }) };
  }
  return schema;
}

/** Avro body (wrapped unions) of a record. */
export function toAvro(r: ModelTopicRecord): unknown {
  switch (r.kind) {
    case 'version':
      return { body: { [`${NS}ModelVersion`]: { ...r.info, labels: [...r.info.labels], uri: r.info.uri === null ? null : { string: r.info.uri } } } };
    case 'part':
      return { body: { [`${NS}ModelBundlePart`]: { ...r.part } } };
    case 'live':
      return { body: { [`${NS}LiveVersion`]: { ...r.live } } };
  }
}

export function fromAvro(value: unknown): ModelTopicRecord {
  const body = (value as { body: Record<string, Record<string, unknown>> }).body;
  const [name, v] = Object.entries(body)[0]!;
  switch (name) {
    case `${NS}ModelVersion`: {
      const uri = v['uri'] as { string: string } | null;
      return { kind: 'version', info: { ...(v as unknown as ModelVersionInfo), uri: uri === null ? null : uri.string } };
    }
    case `${NS}ModelBundlePart`:
      return { kind: 'part', part: v as unknown as BundlePart };
    case `${NS}LiveVersion`:
      return { kind: 'live', live: v as unknown as LiveSelection };
    default:
      throw new RangeError(`unknown model topic record ${name}`);
  }
}

export interface VersionState {
  readonly info: ModelVersionInfo;
  /** Parts received for info.sha256, by index (dropped once handed over). */
  readonly parts: Map<number, Buffer>;
  /** Offset of the announcement. */
  readonly offset: string;
}

/**
 * Folds the topic in offset order. A new announcement of a version replaces
 * the old one and its parts; parts of another publication (other sha256) are
 * ignored; a tombstone (null value) of `version/<v>` forgets the version.
 */
export class ModelCatalog {
  readonly versions = new Map<string, VersionState>();
  live: LiveSelection | null = null;
  /** Parts are kept only while this says so (the manager drops them for versions it has cached). */
  wantParts: (info: ModelVersionInfo) => boolean = () => true;

  /** Returns the version whose parts just became complete, if any. */
  apply(key: string, record: ModelTopicRecord | null, offset: string): ModelVersionInfo | null {
    if (record === null) {
      if (key === 'live') this.live = null;
      else if (key.startsWith('version/') && !key.includes('/part/')) this.versions.delete(key.slice('version/'.length));
      return null;
    }
    switch (record.kind) {
      case 'version':
        this.versions.set(record.info.version, { info: record.info, parts: new Map(), offset });
        return record.info.parts === 0 ? record.info : null;
      case 'live':
        this.live = record.live;
        return null;
      case 'part': {
        const p = record.part;
        const state = this.versions.get(p.version);
        if (state === undefined || state.info.sha256 !== p.sha256 || !this.wantParts(state.info)) return null;
        state.parts.set(p.index, Buffer.from(p.data));
        return state.parts.size === state.info.parts ? state.info : null;
      }
    }
  }
}
