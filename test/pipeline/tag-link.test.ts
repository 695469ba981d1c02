import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CnerError } from '../../src/errors.js';
import type { EntityLinker } from '../../src/pipeline/link.js';
import { tagAndLink } from '../../src/pipeline/tag-link.js';
import { tagRecord } from '../../src/pipeline/tag.js';
import { fakeModel, heldModel, recordingLinker, unhandledRejections } from '../helpers.js';

// Three chunks of 100 code points; the fake model tags the first of each as DIS.
const TEXT = ['癌', '痛', '炎'].map((first) => `${first}${'咳'.repeat(98)}。`).join('');

describe('tagAndLink', () => {
  it('links each chunk\'s entities as soon as that chunk is tagged, before later chunks\' emissions arrive', async () => {
    const model = heldModel(await fakeModel());
    const linker = recordingLinker();
    const record = tagAndLink(TEXT, model, linker);
    assert.equal(model.held, 3, 'every chunk asked for at once');
    await model.release(); // the first chunk's batch
    assert.deepEqual(linker.calls, [['癌']]);
    assert.equal(model.held, 2, 'sent to the linker while the other chunks wait for their emissions');
    await model.release();
    assert.deepEqual(linker.calls, [['癌'], ['痛']]);
    await model.release();
    const linked = await record.linked;
    assert.deepEqual(linked.map((e) => [e.start, e.text, e.codes?.map((c) => c.code)]), [
      [0, '癌', ['C-癌']],
      [100, '痛', ['C-痛']],
      [200, '炎', ['C-炎']],
    ]);
    const tagged = await record.tagged;
    assert.deepEqual(tagged, await tagRecord(TEXT, await fakeModel()));
    assert.deepEqual(linked.map(({ codes: _, ...e }) => e), tagged, 'the tagged entities, in order');
  });

  it('without a linker, gives the tagged entities', async () => {
    const record = tagAndLink(TEXT, await fakeModel(), null);
    assert.equal(record.linked, record.tagged);
    assert.deepEqual(await record.linked, await tagRecord(TEXT, await fakeModel()));
  });

  it('fails with the linker\'s error while the tagging succeeds, once every chunk is done', async () => {
    const linker = recordingLinker();
    const failing: EntityLinker = {
      ...linker,
      link: async (texts) => {
        if (texts[0] === '痛') throw new CnerError('WORKER_CRASHED', 'linker down');
        if (texts[0] === '炎') await new Promise((r) => setImmediate(r)); // answered after the failure
        return linker.link(texts);
      },
    };
    const record = tagAndLink(TEXT, await fakeModel(), failing);
    await assert.rejects(record.linked, /linker down/);
    assert.deepEqual(linker.calls, [['癌'], ['炎']], 'settled after the later chunk\'s linking, not at the failure');
    assert.equal((await record.tagged).length, 3);
  });

  it('fails both with the tagging error, and either may be left unawaited', async () => {
    const failing = await fakeModel({ fail: () => new CnerError('INFERENCE_FAILED', 'device lost') });
    const linker = recordingLinker();
    const unhandled = await unhandledRejections(async () => {
      await assert.rejects(tagAndLink(TEXT, failing, linker).tagged, /device lost/);
      await assert.rejects(tagAndLink(TEXT, failing, linker).linked, /device lost/);
    });
    assert.deepEqual(unhandled, []);
    assert.deepEqual(linker.calls, []);
  });
});
