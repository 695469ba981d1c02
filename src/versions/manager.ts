// ModelManager: which model tags the records, and changing it without a
// restart (docs/model-versions.md). It composes:
//
//   follower.ts  model topic (every record, from the beginning, this instance only)
//   catalog.ts   → announcements, parts, live selection
//   store.ts     → a complete version reassembled (or fetched), checked, and
//                  cached in <cache>/<sha256>/ only once verified
//   here         → the live version opened in the background (new worker pool
//                  and sessions: every file's sha256, the ONNX load, the
//                  input/output names; its linker too: `open` decides which,
//                  CNER_LINKER_DIR), then switched in: the next slice gets
//                  the tagger and its linker together
//   leases.ts    each slice holds a lease on the model it started with; a
//                replaced model is closed when its last lease is released
//   shadow.ts    with CNER_SHADOW_FRACTION > 0 the newest verified version
//                that is not live tags that fraction of records in shadow
//
// A version that fails any check is rejected (log line +
// cner_model_versions_rejected_total{reason}) and the current model keeps serving.

import { CnerError } from '../errors.js';
import type { ModelTopicClient } from '../kafka/port.js';
import type { Logger } from '../model/log.js';
import type { Linker } from '../model/linker.js';
import type { LoadedModel } from '../model/model.js';
import type { Metrics } from '../observability/metrics.js';
import { type RejectReason, reject, rejectReason } from './archive.js';
import { ModelCatalog, type ModelTopicRecord, type ModelVersionInfo } from './catalog.js';
import { TopicFollower } from './follower.js';
import { DEFAULT_SHA, type ModelLease, type ModelProvider, ServedModel } from './leases.js';
import { ShadowScorer } from './shadow.js';
import { BundleStore, type Verified } from './store.js';

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
  readonly log: Logger;
  /** How long start() waits to read the topic up to its end (default 30 s). */
  readonly catchUpTimeoutMs?: number;
  readonly random?: () => number;
}

export class ModelManager implements ModelProvider {
  readonly #o: ModelManagerOptions;
  readonly #store: BundleStore;
  readonly #follower: TopicFollower | null;
  #catalog: ModelCatalog;
  /** Rejected publications, by sha256 → reason (each logged and counted once). */
  readonly #rejected = new Map<string, RejectReason>();
  #current: ServedModel | null = null;
  #shadow: ShadowScorer | null = null;
  #reconciling: Promise<void> | null = null;
  #again = false;
  #liveSeenAt: number | null = null;
  #closed = false;

  constructor(options: ModelManagerOptions) {
    this.#o = options;
    this.#store = new BundleStore(options.cacheDir, options.log);
    this.#catalog = this.#newCatalog();
    this.#follower =
      options.client === null
        ? null
        : new TopicFollower({
            client: options.client,
            topic: options.topic,
            groupId: options.readerGroupId,
            createTopic: options.createTopic,
            replicationFactor: options.replicationFactor ?? 1,
            log: options.log,
            onRestart: () => (this.#catalog = this.#newCatalog()),
            onRecord: (key, value, offset) => this.#apply(key, value, offset),
            onCaughtUpBatch: () => void this.#reconcile(),
          });
  }

  /** The version serving now. */
  get version(): string {
    return this.#current?.version ?? '';
  }

  /** Verified version names and the live selection (for tests and logs). */
  get state(): { readonly live: string | null; readonly serving: string; readonly verified: readonly string[]; readonly rejected: Readonly<Record<string, RejectReason>> } {
    const rejected: Record<string, RejectReason> = {};
    for (const [v, s] of this.#catalog.versions) {
      const r = this.#rejected.get(s.info.sha256);
      if (r !== undefined) rejected[v] = r;
    }
    return { live: this.#catalog.live?.version ?? null, serving: this.version, verified: this.#store.versions, rejected };
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
    this.#serve(this.#served(await this.#o.open(this.#o.defaultDir), DEFAULT_SHA));
  }

  /**
   * Reads the model topic to its end (bounded), switches to the live version,
   * then keeps following. Never throws: when the topic cannot be read the
   * current model serves and the reader is started again with backoff.
   */
  async follow(): Promise<void> {
    await this.#store.open();
    if (this.#follower === null) return;
    const result = await this.#follower.start(this.#o.catchUpTimeoutMs ?? 30_000);
    if (result === 'failed') this.#follower.retryLater();
    if (result === 'caught-up') await this.#reconcile();
    // Topic not read to its end: serve what this instance served last, if it is cached.
    else await this.#serveLastLive();
  }

  acquire(): ModelLease {
    const served = this.#current;
    if (served === null) throw new CnerError('MODEL_CLOSED', 'the model manager is not started or is closed');
    served.retain();
    const shadow = this.#shadow;
    shadow?.candidate.retain();
    let released = false;
    return {
      model: served.model,
      linker: served.model.linker,
      shadow: shadow === null ? null : shadow.run(served.version),
      release: () => {
        if (released) return;
        released = true;
        served.release();
        shadow?.candidate.release();
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#follower?.close();
    const current = this.#current;
    const shadow = this.#shadow;
    this.#current = null;
    this.#shadow = null;
    await current?.model.close();
    await shadow?.candidate.model.close();
  }

  #served(model: LoadedModel, sha256: string): ServedModel {
    return new ServedModel(model, sha256, (e) => this.#o.log.warn({ err: e }, 'closing a replaced model failed'));
  }

  #newCatalog(): ModelCatalog {
    const catalog = new ModelCatalog();
    catalog.wantParts = (info) => !this.#store.has(info.sha256) && !this.#rejected.has(info.sha256);
    return catalog;
  }

  // ------------------------------------------------------------ reading

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
    if (complete === null || this.#store.has(complete.sha256) || this.#rejected.has(complete.sha256)) return;
    const parts = this.#catalog.versions.get(complete.version)?.parts ?? new Map<number, Buffer>();
    try {
      await this.#store.add(complete, parts);
      this.#o.log.info({ version: complete.version, sha256: complete.sha256, size: complete.size, parts: complete.parts }, 'model version received and verified');
    } catch (e) {
      this.#rejectVersion(complete, e);
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

  /** The version in <cache>/live.json, when it is in the cache and nothing else was selected yet. */
  async #serveLastLive(): Promise<void> {
    const cached = await this.#store.lastLive();
    if (cached === undefined || this.#current?.sha256 !== DEFAULT_SHA) return;
    this.#o.log.warn({ version: cached.info.version }, 'model topic not read yet: serving the version this instance served last (from the cache)');
    await this.#switchTo(cached.info.sha256, cached.dir, cached.info);
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
          const v = this.#store.get(sha);
          if (v !== undefined) await this.#switchTo(sha, v.dir, v.info);
        }
      }
    }
    await this.#reconcileShadow();
    // Every version announced on the topic stays cached (a rollback needs no
    // download); a bundle no announcement refers to any more goes, unless it
    // serves. Only once the topic is read to its end: before, the catalog is partial.
    if (this.#follower?.caughtUp === true) {
      const keep = new Set([...this.#catalog.versions.values()].map((v) => v.info.sha256));
      keep.add(this.#current.sha256);
      if (this.#shadow !== null) keep.add(this.#shadow.candidate.sha256);
      await this.#store.prune(keep);
    }
  }

  async #switchTo(sha: string, dir: string, info: ModelVersionInfo | null): Promise<void> {
    const { log, metrics } = this.#o;
    const from = this.#current!.version;
    let next: ServedModel;
    try {
      next = this.#shadow?.candidate.sha256 === sha ? this.#takeShadow() : this.#served(await this.#o.open(dir), sha);
      if (info !== null && next.version !== info.version) {
        await next.model.close();
        throw reject('version_mismatch', `bundle version ${next.version} differs from the announced ${info.version}`);
      }
    } catch (e) {
      if (info !== null) this.#rejectVersion(info, e);
      else log.error({ err: e }, 'the bundled default model cannot be loaded: keeping the current model');
      return;
    }
    if (this.#closed) {
      await next.model.close();
      return;
    }
    this.#serve(next);
    if (this.#liveSeenAt !== null) metrics.modelSwitchSeconds.observe((Date.now() - this.#liveSeenAt) / 1000);
    this.#liveSeenAt = null;
    log.info({ from, to: next.version, sha256: sha }, `model switched: ${from} → ${next.version} (the next slice uses it; slices in flight finish on ${from})`);
    await this.#store.rememberLive(next.version, sha);
  }

  #serve(next: ServedModel): void {
    const old = this.#current;
    this.#current = next;
    const { metrics } = this.#o;
    if (old !== null) {
      metrics.modelLive.set({ version: old.version }, 0);
      if (old.model.linker !== null) metrics.linkerInfo.set(linkerLabels(old.model.linker), 0);
      old.retire();
    }
    metrics.modelLive.set({ version: next.version }, 1);
    if (next.model.linker !== null) metrics.linkerInfo.set(linkerLabels(next.model.linker), 1);
  }

  // ------------------------------------------------------------ shadow

  async #reconcileShadow(): Promise<void> {
    if (this.#o.shadowFraction <= 0 || this.#current === null) return;
    // The candidate: the newest verified announcement that is not serving.
    let candidate: Verified | null = null;
    let newest = -1n;
    for (const s of this.#catalog.versions.values()) {
      const v = this.#store.get(s.info.sha256);
      if (v !== undefined && s.info.sha256 !== this.#current.sha256 && BigInt(s.offset) > newest) {
        newest = BigInt(s.offset);
        candidate = v;
      }
    }
    if (candidate?.info.sha256 === this.#shadow?.candidate.sha256) return;
    this.#shadow?.candidate.retire();
    this.#shadow = null;
    if (candidate === null) return;
    try {
      const model = await this.#o.open(candidate.dir);
      this.#shadow = new ShadowScorer(this.#served(model, candidate.info.sha256), {
        fraction: this.#o.shadowFraction,
        metrics: this.#o.metrics,
        log: this.#o.log,
        ...(this.#o.random === undefined ? {} : { random: this.#o.random }),
      });
      this.#o.log.info({ candidate: model.version, live: this.version, fraction: this.#o.shadowFraction }, 'shadow run started');
    } catch (e) {
      this.#rejectVersion(candidate.info, e);
    }
  }

  /** The candidate becomes live: the same served model (its leases stay counted), no longer scored. */
  #takeShadow(): ServedModel {
    const candidate = this.#shadow!.candidate;
    this.#shadow = null;
    return candidate;
  }
}

const linkerLabels = (linker: Linker): { version: string; reranker: string } => ({ version: linker.version, reranker: String(linker.bundle.reranker !== null) });

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
