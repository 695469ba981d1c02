import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, settleWithin, sleep } from '../src/backoff.js';

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
