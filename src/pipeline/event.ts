// The ClinicalEntities event published for one record (schemas/ClinicalEntities.avsc).

import type { EntityCode, EntityLabel } from './labels.js';
import type { Entity } from './spans.js';

/** One concept of a code system that a mention denotes (for DIS: ICD-10, Beijing clinical edition v601). */
export interface ConceptCode {
  readonly system: string;
  readonly code: string;
  readonly name: string;
  readonly score: number;
}

export interface EventEntity {
  readonly type: EntityCode; // DIS, EXA, …
  readonly label: EntityLabel; // 疾病和诊断, …
  readonly start: number; // code points, end exclusive
  readonly end: number;
  readonly text: string;
  readonly confidence: number; // [0, 1]
  /** Best first; empty when no linker ran or the type is not linked. */
  readonly codes: readonly ConceptCode[];
}

export interface ClinicalEntitiesEvent {
  readonly recordId: string;
  readonly modelVersion: string;
  /** Epoch milliseconds. */
  readonly processedAt: number;
  readonly entities: readonly EventEntity[];
  /** The linker bundle that produced the codes; null when none ran. */
  readonly linkerVersion: string | null;
}

/** An entity with the codes a linker found for it (none when absent). */
export type LinkedEntity = Entity & { readonly codes?: readonly ConceptCode[] };

export function buildEvent(recordId: string, modelVersion: string, entities: readonly LinkedEntity[], processedAt: number, linkerVersion: string | null = null): ClinicalEntitiesEvent {
  return {
    recordId,
    modelVersion,
    processedAt,
    entities: entities.map((e) => ({
      type: e.code,
      label: e.label,
      start: e.start,
      end: e.end,
      text: e.text,
      confidence: e.confidence,
      codes: e.codes ?? [],
    })),
    linkerVersion,
  };
}
