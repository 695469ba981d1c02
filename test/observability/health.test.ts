import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Health } from '../../src/observability/health.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { memoryLogger } from '../helpers.js';

describe('Health', () => {
  it('is ready only with the model loaded, the consumer joined and both dependencies up', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const h = new Health(metrics, memoryLogger([]));
    assert.deepEqual(h.snapshot(), { live: true, ready: false, waitingFor: ['modelLoaded', 'consumerJoined', 'kafkaAvailable', 'registryAvailable'] });
    h.set('modelLoaded', true);
    h.set('consumerJoined', true);
    h.setAvailable('kafka', true);
    h.setAvailable('registry', true);
    assert.equal(h.snapshot().ready, true);
    assert.equal((await metrics.ready.get()).values[0]?.value, 1);
    h.setAvailable('registry', false);
    assert.deepEqual(h.snapshot().waitingFor, ['registryAvailable']);
    h.setAvailable('registry', true);
    h.shuttingDown();
    assert.deepEqual(h.snapshot(), { live: true, ready: false, waitingFor: ['notShuttingDown'] });
    h.dead();
    assert.equal(h.snapshot().live, false);
  });

  it('logs a change of availability once, and counts every unavailability', async () => {
    const lines: string[] = [];
    const metrics = createMetrics({ defaultMetrics: false });
    const h = new Health(metrics, memoryLogger(lines, 'info'));
    h.setAvailable('registry', false, { retryInMs: 100 });
    h.setAvailable('registry', false, { retryInMs: 200 });
    h.setAvailable('registry', false, { retryInMs: 400 });
    h.setAvailable('registry', true);
    h.setAvailable('registry', true);
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.deepEqual(msgs, ['schema registry unavailable: retrying with backoff, not ready until it answers', 'schema registry available again']);
    assert.equal((await metrics.unavailable.get()).values[0]?.value, 3);
    assert.equal((await metrics.dependencyUp.get()).values.find((v) => v.labels['dependency'] === 'registry')?.value, 1);
  });
});
