import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, retrying, settleWithin, sleep } from '../src/backoff.js';
import { CnerError } from '../src/errors.js';

describe('backoff', () => {
  const opts = { initialMs: 100, maxMs: 1_000, multiplier: 2, jitter: 0.5 };
  it('grows exponentially up to the cap', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 10].map((n) => backoffDelay(n, opts, () => 0)), [100, 200, 400, 800, 1000, 1000]);
  });
  it('jitters down by at most the jitter fraction', () => {
    assert.equal(backoffDelay(2, opts, () => 1), 100);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(3, opts);
      assert.ok(d >= 200 && d <= 400, String(d));
    }
  });
  it('sleep ends early on abort', async () => {
    const abort = new AbortController();
    const t0 = Date.now();
    setTimeout(() => abort.abort(), 10);
    await sleep(10_000, abort.signal);
    assert.ok(Date.now() - t0 < 1_000);
    await sleep(10_000, abort.signal); // already aborted
  });
  it('settleWithin waits at most the given time', async () => {
    const t0 = Date.now();
    await settleWithin(new Promise(() => {}), 20);
    assert.ok(Date.now() - t0 < 1_000);
    await settleWithin(Promise.reject(new Error('x')), 1_000);
  });
});

describe('retrying', () => {
  const fast = { initialMs: 1, maxMs: 4, multiplier: 2, jitter: 0 };
  const down = (): CnerError => new CnerError('BROKER_UNAVAILABLE', 'down');

  it('tries again while the failure is retriable, with the attempt number and a growing delay', async () => {
    const seen: [string, number, number][] = [];
    let calls = 0;
    const value = await retrying(
      async (attempt) => {
        calls++;
        assert.equal(attempt.number, calls);
        if (calls < 4) throw down();
        return 'up';
      },
      { backoff: fast, onRetry: (_e, info, attempt, delay) => seen.push([info.code, attempt, delay]) },
    );
    assert.equal(value, 'up');
    assert.deepEqual(seen, [['BROKER_UNAVAILABLE', 1, 1], ['BROKER_UNAVAILABLE', 2, 2], ['BROKER_UNAVAILABLE', 3, 4]]);
  });

  it("never retries a programmer error, a record's fault or a cause to fix", async () => {
    for (const error of [new TypeError('x is undefined'), new CnerError('TEXT_TOO_LONG', 'long'), new CnerError('INVALID_CONFIG', 'bad')]) {
      let calls = 0;
      await assert.rejects(
        retrying(async () => {
          calls++;
          throw error;
        }, { backoff: fast }),
        error,
      );
      assert.equal(calls, 1, error.message);
    }
  });

  it('starts the backoff over after an attempt that progressed', async () => {
    const delays: number[] = [];
    let calls = 0;
    await retrying(
      async (attempt) => {
        calls++;
        if (calls === 3) attempt.progressed();
        if (calls < 5) throw down();
      },
      { backoff: fast, onRetry: (_e, _i, attempt) => delays.push(attempt) },
    );
    assert.deepEqual(delays, [1, 2, 1, 2]);
  });

  it('throws the failure at hand once its signal aborts', async () => {
    const abort = new AbortController();
    let calls = 0;
    const failure = down();
    const run = retrying(
      async () => {
        calls++;
        throw failure;
      },
      { backoff: { ...fast, initialMs: 60_000, maxMs: 60_000 }, signal: abort.signal },
    );
    setTimeout(() => abort.abort(), 10);
    await assert.rejects(run, failure);
    assert.equal(calls, 1);
  });
});
