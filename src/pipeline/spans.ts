// Tags → entity spans (strict IOB2, docs/contract.md "Labels") and the
// entities they name in the original record.

import { type EntityCode, type EntityLabel, LABEL_BY_CODE, codeOfTypeIndex, isBegin, isInside, typeIndexOf } from './labels.js';

export interface Span {
  readonly start: number;
  readonly end: number; // exclusive
  readonly typeIndex: number; // index into ENTITY_TYPES
}

/** An entity in a record: code-point offsets into the original text. */
export interface Entity {
  readonly code: EntityCode;
  readonly label: EntityLabel;
  readonly start: number;
  readonly end: number; // exclusive
  readonly text: string; // the original code points [start, end), not the normalized ones
  readonly confidence: number;
}

/**
 * Strict IOB2 reading of `tags[0..length)`: an entity starts at B-X and
 * continues over I-X only; a stray I-X is ignored (seqeval's strict mode,
 * `spans_from_tags` in text.py). Offsets are positions in `tags`.
 */
export function spansFromTags(tags: ArrayLike<number>, length: number = tags.length): Span[] {
  const spans: Span[] = [];
  let curStart = -1;
  let curType = -1;
  for (let i = 0; i < length; i++) {
    const tag = tags[i]!;
    if (curStart >= 0 && !(isInside(tag) && typeIndexOf(tag) === curType)) {
      spans.push({ start: curStart, end: i, typeIndex: curType });
      curStart = -1;
    }
    if (isBegin(tag)) {
      curStart = i;
      curType = typeIndexOf(tag);
    }
  }
  if (curStart >= 0) spans.push({ start: curStart, end: length, typeIndex: curType });
  return spans;
}

/** The entity a chunk-local span names, moved to record offsets by `chunkStart`. */
export function toEntity(chars: readonly string[], chunkStart: number, span: Span, confidence: number): Entity {
  const code = codeOfTypeIndex(span.typeIndex);
  const start = chunkStart + span.start;
  const end = chunkStart + span.end;
  return { code, label: LABEL_BY_CODE[code], start, end, text: chars.slice(start, end).join(''), confidence };
}
