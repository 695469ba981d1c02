// The ICD-10 linker's rules, as the linker bundle states them (config.json):
// which parts of a diagnosis string are looked up besides the whole, and which
// of the names found are kept. The twin of training/src/cner_train/link.py
// (query_parts, Decision.choose); fixtures/golden/link.json holds cases
// computed there and checked here.

import type { ConceptCode, LinkedEntity } from './event.js';
import type { Entity } from './spans.js';
import { codePointLength } from './unicode.js';

/** Thresholds on cosines: the whole text's best name is kept at `whole` or above, a listed part's at `part`. */
export interface LinkDecision {
  readonly whole: number;
  readonly part: number;
  readonly maxNames: number;
}

/** One query's nearest names, best first: rows of the bundle's names.tsv and their cosines. */
export interface NearestNames {
  readonly indices: ArrayLike<number>;
  readonly scores: ArrayLike<number>;
}

/** The bundle's part separators (Python `re` syntax kept to what JavaScript reads the same), compiled once. */
export const compileSeparators = (pattern: string): RegExp => new RegExp(pattern, 'gu');

/** The whole text, then its parts of two code points or more when it lists several diagnoses. */
export function queryParts(text: string, separators: RegExp): string[] {
  const parts = text.split(separators).filter((p) => codePointLength(p) >= 2);
  return [text, ...parts.filter((p) => p !== text)];
}

/**
 * The names kept for one diagnosis string, best first: the whole text's best
 * name when it clears `whole` (or when no part was listed), each part's best
 * name when it clears `part`, never none (the whole text's best then), at most
 * `maxNames`. `nearest[0]` is the whole text's, the rest its parts' in order.
 */
export function chooseNames(nearest: readonly NearestNames[], decision: LinkDecision): number[] {
  const [whole, ...parts] = nearest;
  if (whole === undefined || whole.indices.length === 0) return [];
  const scored = new Map<number, number>();
  if (whole.scores[0]! >= decision.whole || parts.length === 0) scored.set(whole.indices[0]!, whole.scores[0]!);
  for (const p of parts) {
    if (p.indices.length > 0 && p.scores[0]! >= decision.part) {
      const i = p.indices[0]!;
      scored.set(i, Math.max(scored.get(i) ?? -1, p.scores[0]!));
    }
  }
  if (scored.size === 0) scored.set(whole.indices[0]!, whole.scores[0]!);
  return [...scored.entries()]
    .sort((a, b) => b[1] - a[1]) // stable: ties keep the order they were found in
    .slice(0, decision.maxNames)
    .map(([i]) => i);
}

/**
 * Which re-ranked candidates are kept. A candidate's score is
 * `(1 − cosineWeight) × probability + cosineWeight × cosine` (its best cosine
 * among the nearest names); kept: those scoring at least `threshold`, never
 * none (the best), at most `maxNames`.
 */
export interface RerankDecision {
  readonly threshold: number;
  readonly maxNames: number;
  readonly cosineWeight: number;
}

/** A candidate for the re-ranker: a row of the names and its best cosine to the text or a part. */
export interface Candidate {
  readonly index: number;
  readonly cosine: number;
}

/**
 * One text's candidates for the re-ranker: the whole text's nearest `kWhole`
 * names, then each part's nearest `kPart`, each once, ordered by its best
 * cosine (ties: the order found). `nearest[0]` is the whole text's.
 */
export function candidateList(nearest: readonly NearestNames[], kWhole: number, kPart: number): Candidate[] {
  const best = new Map<number, number>();
  nearest.forEach((n, j) => {
    const k = Math.min(j === 0 ? kWhole : kPart, n.indices.length);
    for (let r = 0; r < k; r++) best.set(n.indices[r]!, Math.max(best.get(n.indices[r]!) ?? -2, n.scores[r]!));
  });
  return [...best.entries()].sort((a, b) => b[1] - a[1]).map(([index, cosine]) => ({ index, cosine }));
}

/** The kept candidates with their scores, best first (`probabilities[k]` is `candidates[k]`'s). */
export function chooseReranked(candidates: readonly Candidate[], probabilities: ArrayLike<number>, decision: RerankDecision): { index: number; score: number }[] {
  const w = decision.cosineWeight;
  const ranked = candidates
    .map(({ index, cosine }, k) => ({ index, score: w === 0 ? probabilities[k]! : (1 - w) * probabilities[k]! + w * cosine }))
    .sort((a, b) => b.score - a.score); // stable: ties keep candidate order
  if (ranked.length === 0) return [];
  const kept = ranked.filter((c) => c.score >= decision.threshold).slice(0, decision.maxNames);
  return kept.length > 0 ? kept : [ranked[0]!];
}

/** A linker as the pipeline sees it (the model folder's Linker is one). */
export interface EntityLinker {
  /** The linker bundle's version, stamped on events. */
  readonly version: string;
  /** Type codes whose mentions are linked (e.g. DIS). */
  readonly entityTypes: readonly string[];
  /** Per text, the concepts it denotes, best first. */
  link(texts: readonly string[]): Promise<readonly (readonly ConceptCode[])[]>;
}

/** The entities with the concepts of those of a linked type (the others get none), in order. */
export async function linkEntities(entities: readonly Entity[], linker: EntityLinker): Promise<LinkedEntity[]> {
  const linked = entities.filter((e) => linker.entityTypes.includes(e.code));
  if (linked.length === 0) return entities.map((e) => ({ ...e, codes: [] }));
  const concepts = await linker.link(linked.map((e) => e.text));
  const byEntity = new Map(linked.map((e, i) => [e, concepts[i]!]));
  return entities.map((e) => ({ ...e, codes: byEntity.get(e) ?? [] }));
}
