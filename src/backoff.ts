// Exponential backoff with jitter, and a sleep that stops early on abort.

export interface BackoffOptions {
  /** First delay, ms. */
  readonly initialMs: number;
  /** Cap of the delay, ms. */
  readonly maxMs: number;
  readonly multiplier: number;
  /** 0..1: the delay is drawn from [d·(1−jitter), d]. */
  readonly jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 250, maxMs: 30_000, multiplier: 2, jitter: 0.5 });

/** Delay before retry number `attempt` (1-based). */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exp = options.initialMs * options.multiplier ** Math.max(0, attempt - 1);
  const capped = Math.min(options.maxMs, exp);
  return Math.round(capped * (1 - options.jitter * random()));
}

/** Resolves after `ms`, or as soon as `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Waits for `promise` to settle, at most `ms` (the timer does not outlive the wait). */
export async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.then(noop, noop), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

const noop = (): void => {};
