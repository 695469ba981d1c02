// The ClinicalEntities event published for one record.

import type { EntityCode, EntityLabel } from './labels.js';
import type { Entity } from './spans.js';

export interface EventEntity {
  readonly type: EntityCode; // DIS, EXA, …
  readonly label: EntityLabel; // 疾病和诊断, …
  readonly start: number; // code points, end exclusive
  readonly end: number;
  readonly text: string;
  readonly confidence: number; // [0, 1]
}

export interface ClinicalEntitiesEvent {
  readonly recordId: string;
  readonly modelVersion: string;
  /** Epoch milliseconds. */
  readonly processedAt: number;
  readonly entities: readonly EventEntity[];
}

export function buildEvent(recordId: string, modelVersion: string, entities: readonly Entity[], processedAt: number): ClinicalEntitiesEvent {
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
    })),
  };
}
