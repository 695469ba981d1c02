// Exponential backoff with jitter, a sleep that stops early on abort, and the
// one retry helper: whether a failure is tried again is the error code's
// retry scope (errors.ts), never a list kept here.

import { type ErrorInfo, describeError } from './errors.js';

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

export interface RetryOptions {
  readonly backoff: BackoffOptions;
  /** Aborting it ends the waiting: the failure at hand is thrown. */
  readonly signal?: AbortSignal;
  /** Before each wait, with the retriable failure, the attempt that failed (1-based) and the delay. */
  readonly onRetry?: (error: unknown, info: ErrorInfo, attempt: number, delayMs: number) => void;
  readonly random?: () => number;
}

export interface Attempt {
  /** 1-based: failures in a row before this attempt, plus one. */
  readonly number: number;
  /** This attempt got somewhere (a session joined its group): if it fails, backoff starts over from the shortest delay. */
  progressed(): void;
}

/**
 * Runs `fn` until it returns. A failure whose code is retriable (retry scope
 * `slice` or `session`) waits backoffDelay(attempt) and `fn` runs again; any
 * other failure is thrown at once: a record's own fault, a cause to fix
 * (configuration, credentials, bundle) or a programmer error (anything not a
 * CnerError), which no retry can mend.
 */
export async function retrying<T>(fn: (attempt: Attempt) => Promise<T>, options: RetryOptions): Promise<T> {
  const aborted = (): boolean => options.signal?.aborted === true;
  let failures = 0;
  for (;;) {
    let progressed = false;
    try {
      return await fn({ number: failures + 1, progressed: () => (progressed = true) });
    } catch (e) {
      const info = describeError(e);
      if (!info.retriable || aborted()) throw e;
      failures = progressed ? 1 : failures + 1;
      const delay = backoffDelay(failures, options.backoff, options.random);
      options.onRetry?.(e, info, failures, delay);
      await sleep(delay, options.signal);
      if (aborted()) throw e;
    }
  }
}
