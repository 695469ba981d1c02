// planTransaction with a model provider (the ModelManager): one model (and
// its linker) per slice, events stamped with both, the lease released when the slice (and its
// shadow runs) are done, even when the slice fails.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadSchema, unframe } from '../../src/records/avro.js';
import { type ProcessorOptions, planTransaction } from '../../src/stream/plan.js';
import type { ModelLease, ModelProvider } from '../../src/versions/leases.js';
import { CnerError } from '../../src/errors.js';
import type { TaggingModel } from '../../src/pipeline/tag.js';
import type { EntityLinker } from '../../src/pipeline/link.js';
import { fakeModel, message, processorOptions, recordingLinker } from '../helpers.js';

const out = loadSchema('ClinicalEntities');

const options = (models: ModelProvider): ProcessorOptions => processorOptions(models);

const json = (id: string, text: string): string => JSON.stringify({ recordId: id, sourceSystem: 's', timestamp: 1, text });

class Provider implements ModelProvider {
  current: TaggingModel;
  linker: EntityLinker | null = null;
  shadowed: string[] = [];
  held = 0;
  releases = 0;
  shadowDelayMs = 0;
  constructor(model: TaggingModel) {
    this.current = model;
  }
  acquire(): ModelLease {
    const model = this.current;
    const linker = this.linker;
    this.held++;
    return {
      model,
      linker,
      shadow: {
        pick: () => true,
        compare: async (text) => {
          await new Promise((r) => setTimeout(r, this.shadowDelayMs));
          this.shadowed.push(text);
        },
      },
      release: () => {
        this.held--;
        this.releases++;
      },
    };
  }
}

type Decoded = { modelVersion: string; linkerVersion: string | null; entities: { codes: { code: string }[] }[] };
const decoded = (v: Buffer | null): Decoded => out.type.fromBuffer(unframe(v!)!.payload) as Decoded;
const versionsOf = (values: readonly (Buffer | null)[]): string[] => values.map((v) => (out.type.fromBuffer(unframe(v!)!.payload) as { modelVersion: string }).modelVersion);

describe('planTransaction with a model provider', () => {
  it('tags a slice with the model it got and stamps its version; the next slice gets the new one', async () => {
    const a = { ...(await fakeModel()), version: 'a' };
    const p = new Provider(a);
    const msgs = [message(0, 0, json('r1', '咳嗽。')), message(0, 1, json('r2', '发热。'))];
    const first = planTransaction(msgs, 1, options(p));
    p.current = { ...(await fakeModel()), version: 'b' }; // switched while the first slice is in flight
    assert.deepEqual(versionsOf((await first).messages.map((m) => m.value)), ['a', 'a']);
    const second = await planTransaction(msgs, 1, options(p));
    assert.deepEqual(versionsOf(second.messages.map((m) => m.value)), ['b', 'b']);
  });

  it('links a slice with the linker lent with its model and stamps that linker\'s version; the next slice gets the new pair', async () => {
    const p = new Provider({ ...(await fakeModel()), version: 'a' });
    p.linker = { ...recordingLinker(), version: 'link-a' };
    const msgs = [message(0, 0, json('r1', '癌。')), message(0, 1, json('r2', '痛。'))];
    const first = planTransaction(msgs, 1, options(p));
    // switched while the first slice is in flight: to a model without a linker
    p.current = { ...(await fakeModel()), version: 'b' };
    p.linker = null;
    const events = (await first).messages.map((m) => decoded(m.value));
    assert.deepEqual(events.map((e) => [e.modelVersion, e.linkerVersion, e.entities.map((x) => x.codes.map((c) => c.code))]), [
      ['a', 'link-a', [['C-癌']]],
      ['a', 'link-a', [['C-痛']]],
    ]);
    const second = (await planTransaction(msgs, 1, options(p))).messages.map((m) => decoded(m.value));
    assert.deepEqual(second.map((e) => [e.modelVersion, e.linkerVersion, e.entities.map((x) => x.codes.length)]), [
      ['b', null, [0]],
      ['b', null, [0]],
    ]);
  });

  it('holds the lease until the shadow runs finish, then releases it', async () => {
    const p = new Provider(await fakeModel());
    p.shadowDelayMs = 50;
    await planTransaction([message(0, 0, json('r1', '咳嗽。')), message(0, 1, json('r2', '头痛'))], 1, options(p));
    assert.equal(p.held, 1, 'shadow runs still hold the lease after the plan');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(p.held, 0);
    assert.deepEqual(p.shadowed.sort(), ['咳嗽。', '头痛'].sort());
  });

  it('releases the lease when the slice fails', async () => {
    const p = new Provider(await fakeModel({ fail: () => new CnerError('INFERENCE_FAILED', 'oom') }));
    await assert.rejects(planTransaction([message(0, 0, json('r1', '咳嗽。'))], 1, options(p)), { code: 'INFERENCE_FAILED' });
    assert.equal(p.held, 0);
    assert.equal(p.releases, 1);
  });
});
