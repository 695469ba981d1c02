import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoadedModel } from '../../src/model/model.js';
import { ServedModel, fixedModel } from '../../src/versions/leases.js';
import { fakeModel } from '../helpers.js';

async function loaded(closeError?: Error): Promise<LoadedModel & { closes: number }> {
  const model = await fakeModel();
  const out = Object.assign(Object.create(model) as LoadedModel, {
    version: 'v-test',
    closes: 0,
    close: async () => {
      out.closes++;
      if (closeError !== undefined) throw closeError;
    },
  });
  return out;
}

describe('ServedModel', () => {
  it('stays open while a lease holds it after retirement, and closes once when the last one is released', async () => {
    const model = await loaded();
    const served = new ServedModel(model, 'sha', () => assert.fail('no close error expected'));
    served.retain();
    served.retain();
    served.retire();
    assert.equal(model.closes, 0);
    served.release();
    assert.equal(model.closes, 0);
    served.release();
    assert.equal(model.closes, 1);
    served.retire();
    assert.equal(model.closes, 1);
  });

  it('closes at once when retired with no lease, and is never closed while serving', async () => {
    const serving = await loaded();
    const s = new ServedModel(serving, 'a', () => {});
    s.retain();
    s.release();
    assert.equal(serving.closes, 0, 'released but not retired: still the live model');
    const idle = await loaded();
    new ServedModel(idle, 'b', () => {}).retire();
    assert.equal(idle.closes, 1);
  });

  it('hands a failing close to its callback instead of throwing', async () => {
    const model = await loaded(new Error('session gone'));
    const errors: unknown[] = [];
    new ServedModel(model, 'c', (e) => errors.push(e)).retire();
    await new Promise((r) => setImmediate(r));
    assert.equal((errors[0] as Error).message, 'session gone');
  });
});

describe('fixedModel', () => {
  it('lends the same model every time, with no shadow run', async () => {
    const model = await fakeModel();
    const provider = fixedModel(model);
    const a = provider.acquire();
    const b = provider.acquire();
    assert.equal(a.model, model);
    assert.equal(b.model, model);
    assert.equal(a.shadow, null);
    a.release();
    a.release();
  });
});
