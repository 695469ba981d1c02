// One record tagged and linked chunk by chunk: each chunk's entities go to the
// linker as soon as that chunk is decoded, so the linker works while the
// tagger infers the batches holding the record's later chunks. (Tagging the
// whole record first and linking it after made the two costs add up: a
// record's chunks land in different batches of its slice, so nearly every
// record was done tagging only when the slice's last batch was.)

import type { LinkedEntity } from './event.js';
import { type EntityLinker, linkEntities } from './link.js';
import type { Entity } from './spans.js';
import { type TaggingModel, observed, tagChunks } from './tag.js';

export interface TaggedRecord {
  /** The record's entities, in order, once every chunk is decoded: `tagRecord`'s. */
  readonly tagged: Promise<Entity[]>;
  /**
   * The same entities, in order, with the concepts of those of a linked type
   * (`linkEntities` per chunk); without a linker, `tagged`. Settles once every
   * chunk has been linked or has failed, with the first failure in chunk order
   * (a chunk that failed tagging: its tagging error).
   */
  readonly linked: Promise<LinkedEntity[]>;
}

/**
 * Starts tagging `text` (synchronously: its chunks are queued for inference
 * before this returns, so a burst of calls fills batches across records) and
 * linking each chunk as it is tagged. Either promise may be left unawaited.
 */
export function tagAndLink(text: string, model: TaggingModel, linker: EntityLinker | null): TaggedRecord {
  const chunks = tagChunks(text, model);
  const tagged = observed(Promise.all(chunks).then((perChunk) => perChunk.flat()));
  if (linker === null) return { tagged, linked: tagged };
  const linking = chunks.map((chunk) => chunk.then((entities) => linkEntities(entities, linker)));
  const linked = Promise.allSettled(linking).then((results) =>
    results.flatMap((r) => {
      if (r.status === 'rejected') throw r.reason;
      return r.value;
    }),
  );
  return { tagged, linked: observed(linked) };
}
