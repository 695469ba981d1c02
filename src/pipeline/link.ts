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
 * Which candidates the cross-encoder scores, and which are kept. The
 * `rerankTop` candidates with the highest prescore `preCosine × cosine +
 * preVote × vote` (0: all), less those whose prescore probability
 * sigmoid(prescore + `preBias`) is under `rerankFloor` (never all: the best
 * stays), are re-ranked; each then scores
 * sigmoid(`probability` × p + `cosine` × cosine + `vote` × vote + `bias`), a
 * logistic regression fitted on training-side pairs; kept: those scoring at
 * least `threshold`, never none (the best), at most `maxNames`.
 */
export interface RerankDecision {
  readonly probability: number;
  readonly cosine: number;
  readonly vote: number;
  readonly bias: number;
  readonly threshold: number;
  readonly maxNames: number;
  readonly rerankTop: number;
  readonly preCosine: number;
  readonly preVote: number;
  readonly preBias: number;
  readonly rerankFloor: number;
}

/** A candidate name for one text: a row of the names, its best cosine to the text or a part, and its vote from the memory (0 without one). */
export interface Candidate {
  readonly index: number;
  readonly cosine: number;
  readonly vote: number;
}

/**
 * One text's nearest training diagnoses (the linker's memory), best first:
 * each one's cosine to the text, and its gold names (rows of the names) with
 * the text's cosine to each.
 */
export interface MemoryNeighbour {
  readonly score: number;
  readonly names: readonly { readonly index: number; readonly cosine: number }[];
}

/** How candidates are gathered: the nearest `kWhole` names of the whole text and `kPart` of each part, and the `voters` nearest training diagnoses' votes. */
export interface CandidateRule {
  readonly kWhole: number;
  readonly kPart: number;
  readonly voters: number;
  /** Softness of the neighbours' vote weights, in cosine units. */
  readonly temperature: number;
}

/**
 * name row → its vote and the text's cosine to it: the first `voters`
 * neighbours each vote for their gold names with weight exp((cosine − best
 * cosine) / temperature), normalized to sum to 1 over the neighbours.
 */
export function memoryVotes(memory: readonly MemoryNeighbour[], voters: number, temperature: number): Map<number, { vote: number; cosine: number }> {
  const near = memory.slice(0, voters);
  const out = new Map<number, { vote: number; cosine: number }>();
  if (near.length === 0) return out;
  const weights = near.map((m) => Math.exp((m.score - near[0]!.score) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  near.forEach((m, j) => {
    for (const { index, cosine } of m.names) out.set(index, { vote: (out.get(index)?.vote ?? 0) + weights[j]! / total, cosine });
  });
  return out;
}

/**
 * One text's candidates: the whole text's nearest `kWhole` names and each
 * part's nearest `kPart`, and (with a memory) the gold names of its nearest
 * training diagnoses; each once with its best cosine and its vote, ordered by
 * cosine (ties: the nearest names first, then the order found).
 * `nearest[0]` is the whole text's.
 */
export function candidateList(nearest: readonly NearestNames[], rule: CandidateRule, memory: readonly MemoryNeighbour[] | null = null): Candidate[] {
  const best = new Map<number, number>();
  nearest.forEach((n, j) => {
    const k = Math.min(j === 0 ? rule.kWhole : rule.kPart, n.indices.length);
    for (let r = 0; r < k; r++) best.set(n.indices[r]!, Math.max(best.get(n.indices[r]!) ?? -2, n.scores[r]!));
  });
  // One stable sort at the end: the nearest names were found first, so on ties they stay ahead of the memory's.
  const votes = memory === null ? new Map<number, { vote: number; cosine: number }>() : memoryVotes(memory, rule.voters, rule.temperature);
  for (const [index, { cosine }] of votes) best.set(index, Math.max(best.get(index) ?? -2, cosine));
  return [...best.entries()].sort((a, b) => b[1] - a[1]).map(([index, cosine]) => ({ index, cosine, vote: votes.get(index)?.vote ?? 0 }));
}

const sigmoid = (z: number): number => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** The candidates the cross-encoder scores: the `rerankTop` best by prescore above the floor (the best always), in candidate order. */
export function toRerank(candidates: readonly Candidate[], decision: RerankDecision): Candidate[] {
  const pre = candidates.map((c) => decision.preCosine * c.cosine + decision.preVote * c.vote);
  let best = candidates.map((_, i) => i).sort((a, b) => pre[b]! - pre[a]!); // stable: ties keep candidate order
  if (decision.rerankTop > 0) best = best.slice(0, decision.rerankTop);
  if (decision.rerankFloor > 0) best = best.filter((i, r) => r === 0 || sigmoid(pre[i]! + decision.preBias) >= decision.rerankFloor);
  return best.sort((a, b) => a - b).map((i) => candidates[i]!);
}

/** The kept candidates with their scores, best first (`probabilities[k]` is `candidates[k]`'s). */
export function chooseReranked(candidates: readonly Candidate[], probabilities: ArrayLike<number>, decision: RerankDecision): { index: number; score: number }[] {
  const d = decision;
  const ranked = candidates
    .map((c, k) => ({ index: c.index, score: sigmoid(d.probability * probabilities[k]! + d.cosine * c.cosine + d.vote * c.vote + d.bias) }))
    .sort((a, b) => b.score - a.score); // stable: ties keep candidate order
  if (ranked.length === 0) return [];
  const kept = ranked.filter((c) => c.score >= d.threshold).slice(0, d.maxNames);
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
