import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/model/log.js';
import { type ModelTopicRecord, fromAvro, modelSchema } from '../../src/versions/catalog.js';
import { TopicFollower } from '../../src/versions/follower.js';
import { FakeModelTopic } from './fake-topic.js';

const live = (version: string): ModelTopicRecord => ({ kind: 'live', live: { version, by: 'test', reason: '', at: 1 } });

function follower(topic: FakeModelTopic, createTopic = true) {
  const seen: string[] = [];
  const events: string[] = [];
  const f = new TopicFollower({
    client: topic,
    topic: 't',
    groupId: 'g',
    createTopic,
    replicationFactor: 1,
    log: silentLogger,
    onRestart: () => events.push('restart'),
    onRecord: async (_key, value) => {
      const r = fromAvro(modelSchema().type.fromBuffer(value!));
      seen.push(r.kind === 'live' ? r.live.version : r.kind);
    },
    onCaughtUpBatch: () => events.push('caught-up'),
  });
  return { f, seen, events };
}

describe('TopicFollower', () => {
  it('hands over the records in offset order and catches up to the end offsets', async () => {
    const topic = new FakeModelTopic();
    await topic.write([live('a'), live('b')]);
    const { f, seen, events } = follower(topic);
    assert.equal(await f.start(5_000), 'caught-up');
    assert.ok(f.caughtUp);
    assert.deepEqual(seen, ['a', 'b']);
    await topic.write([live('c')]);
    assert.deepEqual(seen, ['a', 'b', 'c']);
    assert.deepEqual(events, ['restart', 'caught-up', 'caught-up']);
    await f.close();
  });

  it('fails without creating a missing topic when told not to', async () => {
    const topic = new FakeModelTopic();
    topic.exists = false;
    const { f } = follower(topic, false);
    assert.equal(await f.start(100), 'failed');
    assert.equal(topic.tails, 0);
    assert.ok(!f.caughtUp);
    await f.close();
  });

  it('reads the topic again from the beginning after its reader crashes', async () => {
    const topic = new FakeModelTopic();
    await topic.write([live('a')]);
    const { f, seen, events } = follower(topic);
    await f.start(5_000);
    topic.crash();
    assert.ok(!f.caughtUp);
    const end = Date.now() + 5_000; // the first retry comes after 0.5–1 s
    while (topic.tails < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(topic.tails, 2);
    assert.deepEqual(seen, ['a', 'a']);
    assert.equal(events.filter((e) => e === 'restart').length, 2);
    await f.close();
  });
});
