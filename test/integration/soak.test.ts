// The soak, short (the full one is `npm run soak`): 3 processors, poison
// records of every kind mixed in, SIGKILLs, a pause past the session timeout
// and a broker restart while they work. Every record must end as exactly one
// event or one dead letter for read_committed readers.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runSoak } from '../soak/soak.js';
import { type Services, getServices } from './helpers.js';

const services = await getServices();
const skip = typeof services === 'string' ? services : false;

describe('soak (short)', { skip, timeout: 600_000 }, () => {
  it('no record lost or duplicated through kills, a pause and a broker restart, with poison mixed in', async (t) => {
    const report = await runSoak(services as Services, {
      records: 1_500,
      processors: 3,
      kills: 4,
      pauses: 1,
      brokerRestarts: 1,
      poisonEvery: 25,
      partitions: 6,
      seed: 7,
      log: (line) => t.diagnostic(line),
    });
    t.diagnostic(JSON.stringify(report));
    assert.equal(report.lost, 0, 'lost');
    assert.equal(report.duplicated, 0, 'duplicated');
    assert.equal(report.both, 0, 'both an event and a dead letter');
    assert.equal(report.misrouted, 0, 'good records dead-lettered, poison tagged, or record data in the logs');
    assert.equal(report.deadLetters, report.poison);
    assert.equal(report.events, report.records - report.poison);
    assert.ok(report.ok);
  });
});
