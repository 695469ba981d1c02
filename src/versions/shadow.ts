// Shadow scoring: the candidate version (the newest verified one that is not
// live) tags a configured fraction of the records after their slice commits;
// its entity-level agreement with the live model (per type, live as the
// reference) is exported. Shadow output is never published.

import type { Metrics } from '../observability/metrics.js';
import { agreementF1 } from '../pipeline/agreement.js';
import type { Entity } from '../pipeline/spans.js';
import { tagRecord } from '../pipeline/tag.js';
import type { Logger } from '../model/log.js';
import type { ServedModel, ShadowRun } from './leases.js';

export interface ShadowOptions {
  /** 0..1 of the records. */
  readonly fraction: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly random?: () => number;
}

/** Records at most in shadow tagging at once: past it a record is skipped rather than queued. */
const MAX_SHADOW_IN_FLIGHT = 256;

export class ShadowScorer {
  readonly candidate: ServedModel;
  readonly #o: ShadowOptions;
  /** Entity counts per type (and `all`); tp: both models, fp: only the candidate, fn: only the live model. */
  readonly #counts = new Map<string, { tp: number; fp: number; fn: number }>();
  #inFlight = 0;

  constructor(candidate: ServedModel, options: ShadowOptions) {
    this.candidate = candidate;
    this.#o = options;
  }

  /** The shadow run of one slice, scored against `liveVersion`. */
  run(liveVersion: string): ShadowRun {
    const random = this.#o.random ?? Math.random;
    return {
      pick: () => this.#inFlight < MAX_SHADOW_IN_FLIGHT && random() < this.#o.fraction,
      compare: (text, entities) => this.#compare(text, entities, liveVersion),
    };
  }

  async #compare(text: string, entities: readonly Entity[], liveVersion: string): Promise<void> {
    const { metrics } = this.#o;
    const version = this.candidate.version;
    this.#inFlight++;
    try {
      const found = await tagRecord(text, this.candidate.model);
      const key = (e: Entity): string => `${e.code}:${e.start}:${e.end}`;
      const ref = new Map(entities.map((e) => [key(e), e.code]));
      const got = new Map(found.map((e) => [key(e), e.code]));
      const add = (type: string, field: 'tp' | 'fp' | 'fn'): void => {
        for (const t of [type, 'all']) {
          const c = this.#counts.get(t) ?? { tp: 0, fp: 0, fn: 0 };
          c[field]++;
          this.#counts.set(t, c);
        }
      };
      for (const [k, type] of got) add(type, ref.has(k) ? 'tp' : 'fp');
      for (const [k, type] of ref) if (!got.has(k)) add(type, 'fn');
      metrics.shadowRecords.inc({ candidate: version });
      for (const [type, c] of this.#counts) {
        metrics.shadowF1.set({ type, candidate: version, live: liveVersion }, agreementF1(c.tp, c.tp + c.fp, c.tp + c.fn));
      }
    } catch (e) {
      this.#o.log.warn({ err: e, candidate: version }, 'shadow tagging failed (ignored)');
    } finally {
      this.#inFlight--;
    }
  }
}
