import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMMANDS, main } from '../../src/cli/main.js';
import { memoryIo } from './helpers.js';

describe('cner dispatcher', () => {
  it('lists the commands', async () => {
    const io = memoryIo();
    assert.equal(await main(['--help'], io), 0);
    for (const name of Object.keys(COMMANDS)) assert.match(io.out(), new RegExp(`^  ${name} `, 'm'));
  });

  it('prints usage and exits 2 without a command', async () => {
    const io = memoryIo();
    assert.equal(await main([], io), 2);
    assert.match(io.out(), /Usage: cner <command>/);
  });

  it('rejects an unknown command with exit code 2', async () => {
    const io = memoryIo();
    assert.equal(await main(['nope'], io), 2);
    assert.match(io.err(), /unknown command "nope"/);
  });

  it("shows a command's own help", async () => {
    const io = memoryIo();
    assert.equal(await main(['tag', '--help'], io), 0);
    assert.match(io.out(), /Usage: cner tag/);
    assert.match(io.out(), /--model DIR/);
  });
});
