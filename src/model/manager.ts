// ModelManager: which model tags the records, and changing it without a restart
// (docs/model-versions.md).
//
//   model topic (every record, from the beginning, group of this instance only)
//     → ModelCatalog (announcements, parts, live selection)
//     → a complete version: reassemble, check size and sha256, unpack, check
//       the manifest version and the labels; written to the cache directory
//       (<cache>/<sha256>/) only once verified
//     → the live version: opened (new worker pool and sessions, which checks
//       every file's sha256, the ONNX load and the input/output names) in the
//       background, then switched in: the next slice of the stream loop gets it
//   Each slice holds a lease on the model it started with; a replaced model
//   is closed when its last lease is released. A version that fails any check
//   is rejected (log line + cner_model_versions_rejected_total{reason}) and the
//   current model keeps serving.
//
// With CNER_SHADOW_FRACTION > 0 the newest verified version that is not live
// (the candidate) is loaded too and tags that fraction of records in shadow;
// its entity-level agreement with the live model (F1 per type, live as the
// reference) is exported. Shadow output is never published.

import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type BackoffOptions, backoffDelay } from '../backoff.js';
import type { Metrics } from '../observability/metrics.js';
import type { ModelTopicClient, TopicTail } from '../kafka/port.js';
import { CnerError } from '../errors.js';
import { TAGS } from '../pipeline/labels.js';
import { agreementF1 } from '../pipeline/agreement.js';
import type { Entity } from '../pipeline/spans.js';
import type { TaggingModel } from '../pipeline/tag.js';
import { type RejectReason, reassemble, reject, rejectReason, unpackArchive, verifyArchive } from './archive.js';
import type { Logger } from './log.js';
import type { LoadedModel } from './model.js';
import { ModelCatalog, type ModelTopicRecord, type ModelVersionInfo } from './versions.js';

/** A model held for one slice: tag with `model`; `shadow` (if any) gets a fraction of the records. */
/** Between attempts to (re)start the model topic's reader (jittered, so that pods do not retry in step). */
const READER_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 1_000, maxMs: 30_000, multiplier: 2, jitter: 0.5 });

export interface ModelLease {
  readonly model: TaggingModel;
  readonly shadow: ShadowRun | null;
  release(): void;
}

export interface ShadowRun {
  /** True for the records to run in shadow (the configured fraction). */
  pick(): boolean;
  /** Tags `text` with the candidate and scores it against the live model's `entities`; never throws. */
  compare(text: string, entities: readonly Entity[]): Promise<void>;
}

export interface ModelProvider {
  acquire(): ModelLease;
}

export const isModelProvider = (m: TaggingModel | ModelProvider): m is ModelProvider => typeof (m as ModelProvider).acquire === 'function';

export interface ModelManagerOptions {
  /** The bundled default, served while the topic names no live version. */
  readonly defaultDir: string;
  readonly cacheDir: string;
  readonly topic: string;
  /** Group id of this instance's reader (unique: every instance reads the whole topic). */
  readonly readerGroupId: string;
  /** null: no Kafka (serve the default only). */
  readonly client: ModelTopicClient | null;
  readonly decode: (value: Buffer) => Promise<ModelTopicRecord>;
  readonly open: (dir: string) => Promise<LoadedModel>;
  readonly createTopic: boolean;
  /** Replication factor when the manager creates the model topic (default 1). */
  readonly replicationFactor?: number;
  readonly shadowFraction: number;
  readonly metrics: Metrics;
  readonly log: Logger & { debug?(obj: object, msg: string): void };
  /** How long start() waits to read the topic up to its end (default 30 s). */
  readonly catchUpTimeoutMs?: number;
  readonly random?: () => number;
  readonly tagRecord: (text: string, model: TaggingModel) => Promise<Entity[]>;
}

interface Served {
  readonly model: LoadedModel;
  /** Archive sha256, or "default". */
  readonly sha256: string;
  refs: number;
  retired: boolean;
}

interface Verified {
  readonly info: ModelVersionInfo;
  readonly dir: string;
}

const DEFAULT_SHA = 'default';
/** Records at most in shadow tagging at once. */
const MAX_SHADOW_IN_FLIGHT = 256;

interface ShadowState {
  readonly served: Served;
  readonly version: string;
  /** Entity counts per type (and `all`), live model as the reference. */
  readonly counts: Map<string, { tp: number; fp: number; fn: number }>;
}

export class ModelManager implements ModelProvider {
  readonly #o: ModelManagerOptions;
  #catalog: ModelCatalog;
  #generation = 0;
  #attempts = 0;
  #retryTimer: NodeJS.Timeout | null = null;
  /** Verified bundles on disk, by archive sha256. */
  readonly #verified = new Map<string, Verified>();
  /** Rejected publications, by sha256 → reason (each logged and counted once). */
  readonly #rejected = new Map<string, RejectReason>();
  #current: Served | null = null;
  #shadow: ShadowState | null = null;
  #shadowInFlight = 0;
  #tail: TopicTail | null = null;
  #queue: Promise<void> = Promise.resolve();
  #reconciling: Promise<void> | null = null;
  #again = false;
  #liveSeenAt: number | null = null;
  #closed = false;
  #caughtUp: (() => void) | null = null;
  #endOffsets: Record<number, bigint> = {};
  readonly #readTo = new Map<number, bigint>();

  constructor(options: ModelManagerOptions) {
    this.#o = options;
    this.#catalog = this.#newCatalog();
  }

  /** The version serving now. */
  get version(): string {
    return this.#current?.model.version ?? '';
  }

  /** Verified version names and the live selection (for tests and logs). */
  get state(): { readonly live: string | null; readonly serving: string; readonly verified: readonly string[]; readonly rejected: Readonly<Record<string, RejectReason>> } {
    const rejected: Record<string, RejectReason> = {};
    for (const [v, s] of this.#catalog.versions) {
      const r = this.#rejected.get(s.info.sha256);
      if (r !== undefined) rejected[v] = r;
    }
    return { live: this.#catalog.live?.version ?? null, serving: this.version, verified: [...this.#verified.values()].map((v) => v.info.version), rejected };
  }

  /**
   * Opens the default model, reads the model topic to its end (bounded by
   * catchUpTimeoutMs) and switches to the live version before resolving;
   * then keeps following the topic.
   */
  async start(): Promise<void> {
    await this.openDefault();
    await this.follow();
  }

  /** Opens the bundled default (a broken one fails here, before any wait for Kafka). */
  async openDefault(): Promise<void> {
    if (this.#current !== null) return;
    const initial = await this.#o.open(this.#o.defaultDir);
    this.#serve({ model: initial, sha256: DEFAULT_SHA, refs: 0, retired: false });
  }

  /**
   * Reads the model topic to its end (bounded), switches to the live version,
   * then keeps following. Never throws: when the topic cannot be read the
   * current model serves and the reader is started again with backoff.
   */
  async follow(): Promise<void> {
    await mkdir(this.#o.cacheDir, { recursive: true });
    await this.#loadCacheIndex();
    if (this.#o.client === null) return;
    const connected = await this.#connect(this.#o.catchUpTimeoutMs ?? 30_000);
    if (!connected) this.#retryLater();
    // Topic not read (to its end): serve what this instance served last, if it is cached.
    if (!connected || this.#caughtUp !== null) await this.#serveLastLive();
  }

  /** The version in <cache>/live.json, when it is in the cache and nothing else was selected yet. */
  async #serveLastLive(): Promise<void> {
    try {
      const last = JSON.parse(await readFile(path.join(this.#o.cacheDir, 'live.json'), 'utf8')) as { version?: unknown; sha256?: unknown };
      const cached = typeof last.sha256 === 'string' ? this.#verified.get(last.sha256) : undefined;
      if (cached === undefined || this.#current?.sha256 !== DEFAULT_SHA) return;
      this.#o.log.warn({ version: cached.info.version }, 'model topic not read yet: serving the version this instance served last (from the cache)');
      await this.#switchTo(cached.info.sha256, cached.dir, cached.info);
    } catch {
      // no live.json: the bundled default serves
    }
  }

  /** One reader from the beginning of the topic; waits up to `waitMs` for it to reach the end offsets. */
  async #connect(waitMs: number): Promise<boolean> {
    const { log } = this.#o;
    const client = this.#o.client!;
    const topic = this.#o.topic;
    try {
      const missing = await client.missingTopics([topic]);
      if (missing.length > 0) {
        if (!this.#o.createTopic) {
          if (this.#attempts === 0) log.warn({ topic }, 'model topic does not exist: serving the current model until it is created (KAFKA_CREATE_TOPICS=false)');
          return false;
        }
        await client.createTopics([{ topic, partitions: 1, replicationFactor: this.#o.replicationFactor ?? 1, config: { 'cleanup.policy': 'compact' } }]).catch(() => {});
      }
      const ends = await client.endOffsets(topic);
      // A fresh catalog per reader: it reads the topic from the beginning again.
      this.#catalog = this.#newCatalog();
      this.#readTo.clear();
      this.#endOffsets = Object.fromEntries(Object.entries(ends).map(([p, o]) => [Number(p), BigInt(o)]));
      const caughtUp = new Promise<void>((resolve) => (this.#caughtUp = resolve));
      this.#checkCaughtUp();
      const generation = ++this.#generation;
      this.#tail = await client.tail(topic, {
        groupId: `${this.#o.readerGroupId}.${generation}`,
        onMessages: (messages) => (generation === this.#generation ? this.#enqueue(messages) : Promise.resolve()),
        onCrash: (error) => {
          if (generation !== this.#generation || this.#closed) return;
          log.error({ err: error, topic }, 'model topic reader stopped: the current model keeps serving; reading again after backoff');
          this.#tail = null;
          this.#retryLater();
        },
      });
      this.#attempts = 0;
      const timedOut = await Promise.race([caughtUp.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), waitMs).unref())]);
      if (timedOut && waitMs > 0) log.warn({ topic, timeoutMs: waitMs }, 'model topic not read to its end in time: going on with the current model, switching later');
      if (!timedOut) {
        await this.#queue;
        await this.#reconcile();
      }
      return true;
    } catch (e) {
      if (this.#attempts === 0) log.error({ err: e, topic }, 'cannot read the model topic: the current model keeps serving; trying again with backoff');
      return false;
    }
  }

  #retryLater(): void {
    if (this.#closed || this.#retryTimer !== null) return;
    this.#attempts++;
    const delay = backoffDelay(this.#attempts, READER_BACKOFF);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#closed) return;
      void this.#connect(0).then((ok) => {
        if (!ok) this.#retryLater();
      });
    }, delay);
    this.#retryTimer.unref();
  }

  #newCatalog(): ModelCatalog {
    const catalog = new ModelCatalog();
    catalog.wantParts = (info) => !this.#verified.has(info.sha256) && !this.#rejected.has(info.sha256);
    return catalog;
  }

  acquire(): ModelLease {
    const served = this.#current;
    if (served === null) throw new CnerError('MODEL_CLOSED', 'the model manager is not started or is closed');
    served.refs++;
    const shadow = this.#shadow;
    if (shadow !== null) shadow.served.refs++;
    let released = false;
    return {
      model: served.model,
      shadow: shadow === null ? null : this.#shadowRun(shadow, served),
      release: () => {
        if (released) return;
        released = true;
        this.#unref(served);
        if (shadow !== null) this.#unref(shadow.served);
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer !== null) clearTimeout(this.#retryTimer);
    await this.#tail?.stop();
    await this.#queue.catch(() => {});
    const current = this.#current;
    const shadow = this.#shadow;
    this.#current = null;
    this.#shadow = null;
    await current?.model.close();
    await shadow?.served.model.close();
  }

  // ------------------------------------------------------------ reading

  #enqueue(messages: readonly { key: Buffer | null; value: Buffer | null; offset: string; partition: number }[]): Promise<void> {
    const run = this.#queue.then(async () => {
      for (const m of messages) {
        if (this.#closed) return;
        await this.#apply(m.key?.toString('utf8') ?? '', m.value, m.offset);
        const next = BigInt(m.offset) + 1n;
        if ((this.#readTo.get(m.partition) ?? 0n) < next) this.#readTo.set(m.partition, next);
      }
      this.#checkCaughtUp();
      if (this.#caughtUp === null) void this.#reconcile();
    });
    this.#queue = run.catch((e: unknown) => this.#o.log.error({ err: e }, 'model topic record failed'));
    return this.#queue;
  }

  #checkCaughtUp(): void {
    if (this.#caughtUp === null) return;
    const done = Object.entries(this.#endOffsets).every(([p, end]) => (this.#readTo.get(Number(p)) ?? 0n) >= end);
    if (done) {
      const resolve = this.#caughtUp;
      this.#caughtUp = null;
      resolve();
    }
  }

  async #apply(key: string, value: Buffer | null, offset: string): Promise<void> {
    let record: ModelTopicRecord | null = null;
    if (value !== null) {
      try {
        record = await this.#o.decode(value);
      } catch (e) {
        this.#o.log.error({ err: e, key, offset }, 'undecodable record on the model topic: ignored');
        return;
      }
    }
    if (record?.kind === 'live' && record.live.version !== this.#catalog.live?.version) this.#liveSeenAt = Date.now();
    const complete = this.#catalog.apply(key, record, offset);
    if (complete !== null) await this.#materialise(complete);
  }

  /** Reassembles, verifies and caches a complete publication. */
  async #materialise(info: ModelVersionInfo): Promise<void> {
    if (this.#verified.has(info.sha256) || this.#rejected.has(info.sha256)) return;
    const state = this.#catalog.versions.get(info.version);
    const parts = state?.parts ?? new Map<number, Buffer>();
    try {
      let archive: Buffer;
      if (info.uri !== null) {
        archive = verifyArchive(await fetchUri(info), info);
      } else {
        archive = reassemble(parts, info);
      }
      const files = await unpackArchive(archive);
      checkContents(info, files);
      const dir = path.join(this.#o.cacheDir, info.sha256);
      const tmp = `${dir}.tmp-${process.pid}`;
      await rm(tmp, { recursive: true, force: true });
      await mkdir(tmp, { recursive: true });
      for (const [name, data] of files) await writeFile(path.join(tmp, name), data);
      await writeFile(path.join(tmp, '.announcement.json'), JSON.stringify(info));
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir);
      this.#verified.set(info.sha256, { info, dir });
      this.#o.log.info({ version: info.version, sha256: info.sha256, size: info.size, parts: info.parts }, 'model version received and verified');
    } catch (e) {
      this.#rejectVersion(info, e);
    } finally {
      parts.clear();
    }
  }

  #rejectVersion(info: ModelVersionInfo, e: unknown): void {
    const reason = rejectReason(e) ?? reasonOf(e);
    if (this.#rejected.has(info.sha256)) return;
    this.#rejected.set(info.sha256, reason);
    this.#o.metrics.modelRejected.inc({ reason });
    this.#o.log.error({ version: info.version, sha256: info.sha256, reason, err: e }, `model version ${info.version} rejected (${reason}): the current model keeps serving`);
  }

  // ------------------------------------------------------------ switching

  /** Brings the served model (and the shadow candidate) in line with the catalog; one run at a time. */
  #reconcile(): Promise<void> {
    if (this.#reconciling !== null) {
      this.#again = true;
      return this.#reconciling;
    }
    this.#reconciling = (async () => {
      try {
        do {
          this.#again = false;
          await this.#reconcileOnce();
        } while (this.#again && !this.#closed);
      } catch (e) {
        this.#o.log.error({ err: e }, 'model switch failed: the current model keeps serving');
      } finally {
        this.#reconciling = null;
      }
    })();
    return this.#reconciling;
  }

  async #reconcileOnce(): Promise<void> {
    if (this.#closed || this.#current === null) return;
    const live = this.#catalog.live;
    const wanted = live === null ? null : this.#catalog.versions.get(live.version);
    if (live !== null && wanted === undefined) {
      this.#o.log.warn({ version: live.version }, 'the live record names a version that is not on the model topic: keeping the current model');
    } else {
      const sha = wanted === null || wanted === undefined ? DEFAULT_SHA : wanted.info.sha256;
      if (sha === this.#current.sha256) this.#liveSeenAt = null;
      else if (!this.#rejected.has(sha)) {
        if (sha === DEFAULT_SHA) await this.#switchTo(DEFAULT_SHA, this.#o.defaultDir, null);
        else {
          const v = this.#verified.get(sha);
          if (v !== undefined) await this.#switchTo(sha, v.dir, v.info);
        }
      }
    }
    await this.#reconcileShadow();
    await this.#prune();
  }

  /**
   * Drops cached bundles that no announcement on the topic refers to any more
   * (a version re-published with other bytes, or deleted with a tombstone),
   * unless they serve. Every version announced on the topic stays cached, so a
   * rollback needs no download.
   */
  async #prune(): Promise<void> {
    if (this.#caughtUp !== null) return; // the topic is not read to its end yet: the catalog is partial
    const announced = new Set([...this.#catalog.versions.values()].map((v) => v.info.sha256));
    const inUse = new Set([this.#current?.sha256, this.#shadow?.served.sha256]);
    for (const [sha, v] of this.#verified) {
      if (announced.has(sha) || inUse.has(sha)) continue;
      this.#verified.delete(sha);
      await rm(v.dir, { recursive: true, force: true }).catch(() => {});
      this.#o.log.info({ version: v.info.version, sha256: sha }, 'cached model version no longer on the topic: removed from the cache');
    }
  }

  async #switchTo(sha: string, dir: string, info: ModelVersionInfo | null): Promise<void> {
    const { log, metrics } = this.#o;
    const from = this.#current!.model.version;
    let model: LoadedModel;
    try {
      model = this.#shadow?.served.sha256 === sha ? this.#takeShadow() : await this.#o.open(dir);
      if (info !== null && model.version !== info.version) {
        await model.close();
        throw reject('version_mismatch', `bundle version ${model.version} differs from the announced ${info.version}`);
      }
    } catch (e) {
      if (info !== null) this.#rejectVersion(info, e);
      else log.error({ err: e }, 'the bundled default model cannot be loaded: keeping the current model');
      return;
    }
    if (this.#closed) {
      await model.close();
      return;
    }
    this.#serve({ model, sha256: sha, refs: 0, retired: false });
    if (this.#liveSeenAt !== null) metrics.modelSwitchSeconds.observe((Date.now() - this.#liveSeenAt) / 1000);
    this.#liveSeenAt = null;
    log.info({ from, to: model.version, sha256: sha }, `model switched: ${from} → ${model.version} (the next slice uses it; slices in flight finish on ${from})`);
    await writeFile(path.join(this.#o.cacheDir, 'live.json'), JSON.stringify({ version: model.version, sha256: sha })).catch(() => {});
  }

  #serve(next: Served): void {
    const old = this.#current;
    this.#current = next;
    if (old !== null) {
      this.#o.metrics.modelLive.set({ version: old.model.version }, 0);
      old.retired = true;
      this.#unref(old, 0);
    }
    this.#o.metrics.modelLive.set({ version: next.model.version }, 1);
  }

  #unref(served: Served, by = 1): void {
    served.refs -= by;
    if (served.retired && served.refs <= 0) {
      served.refs = Number.NaN; // closed once
      served.model.close().catch((e: unknown) => this.#o.log.warn({ err: e }, 'closing a replaced model failed'));
    }
  }

  // ------------------------------------------------------------ shadow

  async #reconcileShadow(): Promise<void> {
    if (this.#o.shadowFraction <= 0 || this.#current === null) return;
    // The candidate: the newest verified announcement that is not serving.
    let candidate: Verified | null = null;
    let newest = -1n;
    for (const s of this.#catalog.versions.values()) {
      const v = this.#verified.get(s.info.sha256);
      if (v !== undefined && s.info.sha256 !== this.#current.sha256 && BigInt(s.offset) > newest) {
        newest = BigInt(s.offset);
        candidate = v;
      }
    }
    if (candidate?.info.sha256 === this.#shadow?.served.sha256) return;
    this.#dropShadow();
    if (candidate === null) return;
    try {
      const model = await this.#o.open(candidate.dir);
      this.#shadow = { served: { model, sha256: candidate.info.sha256, refs: 0, retired: false }, version: model.version, counts: new Map() };
      this.#o.log.info({ candidate: model.version, live: this.version, fraction: this.#o.shadowFraction }, 'shadow run started');
    } catch (e) {
      this.#rejectVersion(candidate.info, e);
    }
  }

  #takeShadow(): LoadedModel {
    const shadow = this.#shadow!;
    this.#shadow = null;
    // Leases of the shadow keep a ref; as the live model it is closed by #serve's successor.
    shadow.served.refs = Number.NaN;
    return shadow.served.model;
  }

  #dropShadow(): void {
    const shadow = this.#shadow;
    if (shadow === null) return;
    this.#shadow = null;
    shadow.served.retired = true;
    this.#unref(shadow.served, 0);
  }

  #shadowRun(shadow: ShadowState, live: Served): ShadowRun {
    const random = this.#o.random ?? Math.random;
    const { metrics } = this.#o;
    return {
      // Shadow work runs after the slice's commit; past the cap it is skipped rather than queued.
      pick: () => this.#shadowInFlight < MAX_SHADOW_IN_FLIGHT && random() < this.#o.shadowFraction,
      compare: async (text, entities) => {
        this.#shadowInFlight++;
        try {
          const candidate = await this.#o.tagRecord(text, shadow.served.model);
          const key = (e: Entity): string => `${e.code}:${e.start}:${e.end}`;
          const ref = new Map(entities.map((e) => [key(e), e.code]));
          const got = new Map(candidate.map((e) => [key(e), e.code]));
          const add = (type: string, field: 'tp' | 'fp' | 'fn'): void => {
            for (const t of [type, 'all']) {
              const c = shadow.counts.get(t) ?? { tp: 0, fp: 0, fn: 0 };
              c[field]++;
              shadow.counts.set(t, c);
            }
          };
          for (const [k, type] of got) add(type, ref.has(k) ? 'tp' : 'fp');
          for (const [k, type] of ref) if (!got.has(k)) add(type, 'fn');
          metrics.shadowRecords.inc({ candidate: shadow.version });
          for (const [type, c] of shadow.counts) {
            // tp: both; fp: only the candidate; fn: only the live model.
            metrics.shadowF1.set({ type, candidate: shadow.version, live: live.model.version }, agreementF1(c.tp, c.tp + c.fp, c.tp + c.fn));
          }
        } catch (e) {
          this.#o.log.warn({ err: e, candidate: shadow.version }, 'shadow tagging failed (ignored)');
        } finally {
          this.#shadowInFlight--;
        }
      },
    };
  }

  // ------------------------------------------------------------ cache

  /** Bundles verified by an earlier run (<cache>/<sha256>/.announcement.json); their files are checked again when opened. */
  async #loadCacheIndex(): Promise<void> {
    for (const name of await readdir(this.#o.cacheDir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}$/.test(name)) {
        if (name.includes('.tmp-')) await rm(path.join(this.#o.cacheDir, name), { recursive: true, force: true });
        continue;
      }
      try {
        const info = JSON.parse(await readFile(path.join(this.#o.cacheDir, name, '.announcement.json'), 'utf8')) as ModelVersionInfo;
        if (info.sha256 === name) this.#verified.set(name, { info, dir: path.join(this.#o.cacheDir, name) });
      } catch {
        await rm(path.join(this.#o.cacheDir, name), { recursive: true, force: true });
      }
    }
  }
}

/** The rejection reason of an error from loading a bundle (bundle.ts, onnx-session.ts) or from the cache. */
function reasonOf(e: unknown): RejectReason {
  if (!(e instanceof CnerError)) return 'cache'; // writing the cache failed (disk full, permissions)
  switch (e.code) {
    case 'MODEL_LOAD_FAILED':
      return e.context['inputs'] !== undefined ? 'signature' : 'onnx_load';
    case 'BUNDLE_CHECKSUM_MISMATCH':
      return 'checksum';
    default:
      return 'manifest';
  }
}

/** The announced labels and the bundle's must be the contract's 13 tags; the manifest must name the announced version. */
export function checkContents(info: ModelVersionInfo, files: ReadonlyMap<string, Buffer>): void {
  const json = (name: string): unknown => {
    const data = files.get(name);
    if (data === undefined) throw reject('manifest', `model version ${info.version}: the archive has no ${name}`, { version: info.version });
    try {
      return JSON.parse(data.toString('utf8')) as unknown;
    } catch {
      throw reject('manifest', `model version ${info.version}: ${name} is not valid JSON`, { version: info.version });
    }
  };
  const same = (a: unknown): boolean => Array.isArray(a) && a.length === TAGS.length && a.every((t, i) => t === TAGS[i]);
  const labels = json('labels.json');
  if (!same(labels) || !same(info.labels)) {
    throw reject('labels', `model version ${info.version}: label set ${JSON.stringify(labels)} (announced ${JSON.stringify(info.labels)}) differs from the contract's ${JSON.stringify(TAGS)}`, {
      version: info.version,
    });
  }
  const manifest = json('manifest.json') as { version?: unknown } | null;
  if (manifest?.version !== info.version) {
    throw reject('version_mismatch', `model version ${info.version}: manifest.json says version ${JSON.stringify(manifest?.version)}`, { version: info.version });
  }
}

async function fetchUri(info: ModelVersionInfo): Promise<Buffer> {
  const uri = info.uri!;
  try {
    if (uri.startsWith('file:')) return await readFile(new URL(uri));
    const res = await fetch(uri, { signal: AbortSignal.timeout(120_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  } catch (e) {
    throw reject('unavailable', `model version ${info.version}: cannot fetch ${uri}: ${e instanceof Error ? e.message : String(e)}`, { version: info.version });
  }
}
