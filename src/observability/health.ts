// Liveness and readiness. Ready = model loaded, consumer joined to its group,
// broker and registry answering, not shutting down. Every change of a
// dependency's availability is logged once (not on every retry) and mirrored
// in the metrics, so "unavailable" is visible in logs, metrics and /readyz.

import type { Logger } from 'pino';
import type { Dependency, Metrics } from './metrics.js';

export type Condition = 'modelLoaded' | 'consumerJoined';

export interface HealthSnapshot {
  readonly live: boolean;
  readonly ready: boolean;
  /** What keeps the processor from being ready; empty when ready. */
  readonly waitingFor: readonly string[];
}

export class Health {
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #conditions = new Map<Condition, boolean>([
    ['modelLoaded', false],
    ['consumerJoined', false],
  ]);
  readonly #available = new Map<Dependency, boolean | null>([
    ['kafka', null],
    ['registry', null],
  ]);
  #shuttingDown = false;
  #live = true;

  constructor(metrics: Metrics, log: Logger) {
    this.#metrics = metrics;
    this.#log = log;
    this.#update();
  }

  set(condition: Condition, value: boolean): void {
    this.#conditions.set(condition, value);
    if (condition === 'modelLoaded') this.#metrics.dependencyUp.set({ dependency: 'model' }, value ? 1 : 0);
    this.#update();
  }

  /** Records that a dependency answered (true) or not (false, with why and when we try again). */
  setAvailable(dependency: Exclude<Dependency, 'model'>, available: boolean, details: { readonly err?: unknown; readonly retryInMs?: number } = {}): void {
    const before = this.#available.get(dependency);
    this.#available.set(dependency, available);
    this.#metrics.dependencyUp.set({ dependency }, available ? 1 : 0);
    if (!available) this.#metrics.unavailable.inc({ dependency });
    if (before !== available) {
      const name = dependency === 'kafka' ? 'Kafka' : 'schema registry';
      if (available) this.#log.info({ dependency }, `${name} available${before === false ? ' again' : ''}`);
      else this.#log.warn({ dependency, err: details.err, retryInMs: details.retryInMs }, `${name} unavailable: retrying with backoff, not ready until it answers`);
    } else if (!available) {
      this.#log.debug({ dependency, err: details.err, retryInMs: details.retryInMs }, 'still unavailable');
    }
    this.#update();
  }

  shuttingDown(): void {
    this.#shuttingDown = true;
    this.#update();
  }

  /** The process can no longer make progress (e.g. a fatal error): liveness fails. */
  dead(): void {
    this.#live = false;
    this.#update();
  }

  snapshot(): HealthSnapshot {
    const waitingFor: string[] = [];
    for (const [c, ok] of this.#conditions) if (!ok) waitingFor.push(c);
    for (const [d, ok] of this.#available) if (ok !== true) waitingFor.push(`${d}Available`);
    if (this.#shuttingDown) waitingFor.push('notShuttingDown');
    return { live: this.#live, ready: this.#live && waitingFor.length === 0, waitingFor };
  }

  #update(): void {
    this.#metrics.ready.set(this.snapshot().ready ? 1 : 0);
  }
}
