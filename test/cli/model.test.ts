import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main } from '../../src/cli/main.js';
import { memoryIo } from './helpers.js';

describe('cner model (no Kafka needed)', () => {
  it('prints usage and exits 2 without a subcommand or its argument', async () => {
    for (const argv of [['model'], ['model', 'nope'], ['model', 'publish'], ['model', 'live']]) {
      const io = memoryIo();
      assert.equal(await main(argv, io), 2, argv.join(' '));
      assert.match(io.err(), /Usage: cner model/);
    }
  });

  it('refuses parts that cannot fit a 1 MB message', async () => {
    const io = memoryIo();
    assert.equal(await main(['model', 'publish', 'dir', '--part-bytes', '2000000'], io), 2);
    assert.match(io.err(), /--part-bytes/);
  });

  it('has its own help', async () => {
    const io = memoryIo();
    assert.equal(await main(['model', '--help'], io), 0);
    assert.match(io.out(), /publish DIR/);
    assert.match(io.out(), /live VERSION/);
  });
});
