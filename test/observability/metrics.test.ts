import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetrics } from '../../src/observability/metrics.js';

describe('metrics', () => {
  it('exposes the processor metrics on a registry of its own', async () => {
    const a = createMetrics({ defaultMetrics: false });
    const b = createMetrics({ defaultMetrics: false });
    a.deadLettered.inc({ code: 'TEXT_TOO_LONG' });
    const text = await a.registry.metrics();
    for (const name of [
      'cner_records_in_total',
      'cner_events_out_total',
      'cner_dead_lettered_total',
      'cner_entities_total',
      'cner_batch_size',
      'cner_inference_duration_seconds',
      'cner_linking_duration_seconds',
      'cner_linker_info',
      'cner_end_to_end_latency_seconds',
      'cner_consumer_lag',
      'cner_transactions_total',
      'cner_retries_total',
      'cner_dependency_up',
      'cner_dependency_unavailable_total',
      'cner_ready',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /cner_dead_lettered_total\{code="TEXT_TOO_LONG"\} 1/);
    assert.match(text, /cner_dependency_up\{dependency="kafka"\} 0/);
    assert.doesNotMatch(await b.registry.metrics(), /TEXT_TOO_LONG/);
  });
});
