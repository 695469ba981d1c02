// `cner model publish | live | list` end to end against the real broker and
// registry, in-process (the commands read the same environment variables as
// `cner serve`).

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { main } from '../../src/cli/main.js';
import { tinyVariant } from '../model/variants.js';
import { memoryIo } from '../cli/helpers.js';
import { type Services, getServices, tools, uniqueName } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;

describe('cner model commands', { skip, timeout: 60_000 }, () => {
  const s = services as Services;
  const topic = uniqueName('it.models.cli');
  const saved = { ...process.env };
  after(async () => {
    process.env = saved;
    if (typeof services !== 'string') await tools(s.brokers).deleteTopics([topic]).catch(() => {});
  });

  it('publishes, selects the live version, rolls back and lists', async () => {
    Object.assign(process.env, { KAFKA_BROKERS: s.brokers, SCHEMA_REGISTRY_URL: s.registryUrl, KAFKA_MODEL_TOPIC: topic });
    const run = async (...argv: string[]): Promise<{ code: number; out: string; err: string }> => {
      const io = memoryIo();
      const code = await main(['model', ...argv], io);
      return { code, out: io.out(), err: io.err() };
    };
    const empty = await run('list');
    assert.equal(empty.code, 0);
    assert.match(empty.out, /no live version/);

    const p1 = await run('publish', await tinyVariant('cli-1'), '--live', '--part-bytes', '150000');
    assert.equal(p1.code, 0, p1.err);
    assert.deepEqual(JSON.parse(p1.out), { ...JSON.parse(p1.out), topic, version: 'cli-1', parts: 3, live: true });
    assert.equal((await run('publish', await tinyVariant('cli-2'))).code, 0);
    assert.equal((await run('live', 'cli-2', '--reason', 'test')).code, 0);
    let list = await run('list');
    assert.match(list.out, /^\*\s+cli-2 /m);
    assert.match(list.out, /^\s+cli-1 .* 3\/3 +ok /m);
    assert.match(list.out, /live: cli-2/);

    const unknown = await run('live', 'cli-9');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /not on/);

    assert.equal((await run('live', 'cli-1', '--reason', 'rollback')).code, 0);
    list = await run('list');
    assert.match(list.out, /^\*\s+cli-1 /m);
  });
});
