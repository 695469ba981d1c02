// Same output check: per record, the set of (start, end, type) of cner's
// entities against a peer's. Confidences and texts are not compared (the
// peers compute neither); offsets and types are the contract.

import { agreementF1 } from '../src/pipeline/agreement.js';
import type { Entity } from '../src/pipeline/spans.js';

export interface EntityComparison {
  readonly records: number;
  readonly entities: number;
  readonly mismatchedRecords: number;
  /** 2·|cner ∩ peer| / (|cner| + |peer|) over all records: 1 when identical. */
  readonly agreementF1: number;
  /** Up to 10 records that differ: what only cner found, what only the peer found. */
  readonly examples: readonly { record: number; onlyCner: string[]; onlyPeer: string[] }[];
}

const key = (start: number, end: number, code: string): string => `${start}-${end}:${code}`;

export function compareEntities(cner: readonly (readonly Entity[])[], peer: readonly (readonly [number, number, string][])[]): EntityComparison {
  if (cner.length !== peer.length) throw new RangeError(`cner tagged ${cner.length} records, the peer ${peer.length}`);
  let entities = 0;
  let peerEntities = 0;
  let common = 0;
  let mismatchedRecords = 0;
  const examples: { record: number; onlyCner: string[]; onlyPeer: string[] }[] = [];
  cner.forEach((ours, record) => {
    const a = new Set(ours.map((e) => key(e.start, e.end, e.code)));
    const b = new Set(peer[record]!.map(([s, e, c]) => key(s, e, c)));
    entities += a.size;
    peerEntities += b.size;
    const onlyCner = [...a].filter((k) => !b.has(k));
    common += a.size - onlyCner.length;
    const onlyPeer = [...b].filter((k) => !a.has(k));
    if (onlyCner.length === 0 && onlyPeer.length === 0) return;
    mismatchedRecords++;
    if (examples.length < 10) examples.push({ record, onlyCner, onlyPeer });
  });
  return { records: cner.length, entities, mismatchedRecords, agreementF1: agreementF1(common, entities, peerEntities), examples };
}
