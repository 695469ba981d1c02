// `npm run soak [-- --records N --processors N --kills N --pauses N --broker-restarts N --poison-every N --seed N --model DIR]`:
// the full soak against KAFKA_BROKERS / SCHEMA_REGISTRY_URL (default: the
// local stack, started if needed by `npm run soak`'s script). Prints the
// report as JSON; exits 1 on any lost or duplicated record.

import { parseArgs } from 'node:util';
import { getServices } from '../integration/helpers.js';
import { runSoak } from './soak.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '10000' },
    processors: { type: 'string', default: '3' },
    kills: { type: 'string', default: '20' },
    pauses: { type: 'string', default: '3' },
    'broker-restarts': { type: 'string', default: '3' },
    'poison-every': { type: 'string', default: '50' },
    partitions: { type: 'string', default: '6' },
    seed: { type: 'string', default: '1' },
    model: { type: 'string' },
  },
  strict: true,
});
const n = (v: string | undefined, name: string): number => {
  const x = Number(v);
  if (!Number.isSafeInteger(x) || x < 0) throw new Error(`--${name} must be a whole number, got ${v}`);
  return x;
};
const services = await getServices();
if (typeof services === 'string') {
  process.stderr.write(`${services}\n`);
  process.exit(2);
}
const report = await runSoak(services, {
  records: n(values.records, 'records'),
  processors: Math.max(1, n(values.processors, 'processors')),
  kills: n(values.kills, 'kills'),
  pauses: n(values.pauses, 'pauses'),
  brokerRestarts: n(values['broker-restarts'], 'broker-restarts'),
  poisonEvery: n(values['poison-every'], 'poison-every'),
  partitions: Math.max(1, n(values.partitions, 'partitions')),
  seed: n(values.seed, 'seed'),
  ...(values.model === undefined ? {} : { modelDir: values.model }),
});
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(report.ok ? 0 : 1);
