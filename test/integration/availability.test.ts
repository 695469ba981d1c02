// Registry or broker unavailable: the processor waits with backoff, says so
// in its logs, /readyz and /metrics, does not exit, and carries on when the
// dependency comes back. The dependency "goes away" behind a TCP proxy that
// the test closes and opens.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import avro from 'avsc';
import { loadConfig } from '../../src/config.js';
import { frame, loadSchema } from '../../src/records/avro.js';
import { SchemaRegistry } from '../../src/records/registry.js';
import { type RunningService, startService } from '../../src/service.js';
import { type Services, ToggleProxy, capturingLogger, freePort, getServices, httpGet, jsonRecord, runEnv, spawnServe, testRun, tools, waitFor } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;
const FAST = { initialMs: 100, maxMs: 1_000, multiplier: 2, jitter: 0.2 } as const;

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url.includes('://') ? url : `kafka://${url}`);
  return { host: u.hostname, port: Number(u.port) };
}

describe('dependencies unavailable', { skip, timeout: 180_000 }, () => {
  const s = services as Services;
  const kafka = typeof services === 'string' ? null : tools(s.brokers);
  const topics: string[] = [];
  after(async () => {
    if (topics.length > 0) await kafka?.deleteTopics(topics).catch(() => {});
  });

  it('waits for the schema registry at startup and during processing', async () => {
    const names = testRun('it.reg');
    const { input, output } = names;
    topics.push(input, output, names.dlt);
    const registryUrl = new URL(s.registryUrl);
    const proxy = await ToggleProxy.create(hostPort(s.registryUrl.split('/apis')[0]!));
    const port = await freePort();
    const logs: string[] = [];
    const { config } = loadConfig(runEnv(s, names, { SCHEMA_REGISTRY_URL: `http://127.0.0.1:${proxy.port}${registryUrl.pathname}`, CNER_HTTP_PORT: String(port) }));
    const starting = startService({ config, log: capturingLogger(logs), httpHost: '127.0.0.1', backoff: FAST });
    let service: RunningService | null = null;
    try {
      // Registry closed: alive, not ready, and it says why.
      await waitFor('the unavailable log line', 20_000, () => logs.some((l) => l.includes('schema registry unavailable')));
      const ready = await httpGet(port, '/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body, /registryAvailable/);
      assert.equal((await httpGet(port, '/livez')).status, 200);
      const metrics = (await httpGet(port, '/metrics')).body;
      assert.match(metrics, /cner_dependency_up\{dependency="registry"\} 0/);
      assert.match(metrics, /cner_dependency_unavailable_total\{dependency="registry"\} [1-9]/);

      await proxy.open();
      service = await starting;
      await waitFor('ready', 30_000, async () => (await httpGet(port, '/readyz')).status === 200);

      // Registry gone while a record with a new schema id arrives: the slice is retried, then tagged.
      // (A new version: the processor already knows the id of the EmrRecord it registered itself.)
      const registry = new SchemaRegistry({ url: s.registryUrl, auth: null });
      const emr = JSON.parse(loadSchema('EmrRecord').text) as { fields: unknown[] };
      const v2 = { ...emr, fields: [...emr.fields, { name: 'ward', type: ['null', 'string'], default: null, doc: 'Ward (test-only field).' }] };
      const id = await registry.register(`${input}-value`, JSON.stringify(v2));
      const v2Type = avro.Type.forSchema(v2 as avro.Schema);
      await proxy.close();
      await kafka!.produce(input, [
        { key: Buffer.from('r1'), value: frame(id, v2Type.toBuffer({ recordId: 'r1', text: '头颅MRI未见异常。', sourceSystem: 'it', timestamp: Date.now(), metadata: null, ward: '神经内科' })), headers: {} },
      ]);
      await waitFor('not ready while the registry is gone', 20_000, async () => (await httpGet(port, '/readyz')).status === 503);
      const during = (await httpGet(port, '/metrics')).body;
      assert.match(during, /cner_retries_total\{code="REGISTRY_UNAVAILABLE"\} [1-9]/);
      await proxy.open();
      const events = await kafka!.collect(output, { timeoutMs: 30_000, until: (m) => m.length >= 1 });
      assert.equal(events.length, 1);
      await waitFor('ready again', 20_000, async () => (await httpGet(port, '/readyz')).status === 200);
      assert.ok(logs.some((l) => l.includes('schema registry available again')));
    } finally {
      await proxy.open();
      service ??= await starting.catch(() => null);
      await service?.stop();
      await proxy.close();
    }
  });

  it('waits for the broker without exiting (cner serve)', async () => {
    const names = testRun('it.brk');
    const { input, output } = names;
    topics.push(input, output, names.dlt);
    const proxy = await ToggleProxy.create(hostPort(s.brokers.split(',')[0]!));
    const port = await freePort();
    const serve = spawnServe(runEnv(s, names, { KAFKA_BROKERS: `127.0.0.1:${proxy.port}`, CNER_HTTP_PORT: String(port) }));
    try {
      await waitFor('the unavailable log line', 60_000, () => serve.output().includes('Kafka unavailable'), 200);
      assert.equal(serve.child.exitCode, null, 'still running');
      assert.equal((await httpGet(port, '/readyz')).status, 503);
      assert.match((await httpGet(port, '/metrics')).body, /cner_dependency_up\{dependency="kafka"\} 0/);

      await proxy.open();
      await waitFor('ready once the broker answers', 90_000, async () => (await httpGet(port, '/readyz')).status === 200, 500);
      await kafka!.produce(input, [{ key: Buffer.from('r1'), value: jsonRecord('r1', '腹部B超示脂肪肝。'), headers: {} }]);
      const events = await kafka!.collect(output, { timeoutMs: 30_000, until: (m) => m.length >= 1 });
      assert.equal(events.length, 1);
      assert.match(serve.output(), /Kafka available again/);

      serve.child.kill('SIGTERM');
      assert.equal((await serve.exited).code, 0);
    } finally {
      serve.child.kill('SIGKILL');
      await proxy.close();
    }
  });
});
