import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HealthSnapshot } from '../../src/observability/health.js';
import { startHttpServer } from '../../src/observability/http.js';
import { createMetrics } from '../../src/observability/metrics.js';

describe('HTTP side server', () => {
  it('serves /livez, /readyz and /metrics', async () => {
    const metrics = createMetrics();
    metrics.eventsOut.inc(3);
    let snapshot: HealthSnapshot = { live: true, ready: false, waitingFor: ['consumerJoined'] };
    const server = await startHttpServer({ port: 0, host: '127.0.0.1', health: () => snapshot, registry: metrics.registry });
    const get = async (path: string, method = 'GET') => {
      const res = await fetch(`http://127.0.0.1:${server.port}${path}`, { method });
      return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
    };
    try {
      assert.equal((await get('/livez')).status, 200);
      const notReady = await get('/readyz');
      assert.equal(notReady.status, 503);
      assert.deepEqual(JSON.parse(notReady.body), { status: 'not ready', waitingFor: ['consumerJoined'] });
      snapshot = { live: true, ready: true, waitingFor: [] };
      assert.equal((await get('/readyz')).status, 200);
      snapshot = { live: false, ready: false, waitingFor: [] };
      assert.equal((await get('/livez')).status, 503);
      const m = await get('/metrics');
      assert.equal(m.status, 200);
      assert.match(m.type ?? '', /text\/plain/);
      assert.match(m.body, /^cner_events_out_total 3$/m);
      assert.match(m.body, /cner_process_cpu_seconds_total/);
      assert.equal((await get('/nope')).status, 404);
      assert.equal((await get('/livez', 'POST')).status, 405);
    } finally {
      await server.close();
    }
  });
});
