// Loading a linker bundle directory (`cner-train link-export`): linker.onnx
// (a diagnosis → its nearest candidate names, by cosine, top k inside the
// graph), names.tsv (row → standard name and its codes), vocab.txt (cner's
// character vocabulary), config.json (code system, k, the longest query, the
// part separators and the keep-or-drop thresholds), and optionally
// reranker.onnx (a cross-encoder that scores each (diagnosis, candidate name)
// pair; config.json's "reranker" then says which candidates it scores and
// which scores keep a name). A linker graph with a memory of training pairs
// (config.json's "memory") also answers each query's nearest training
// diagnoses and their gold names, whose votes join the re-ranker's decision.
// As for a tagger bundle,
// every file is checked against the manifest's sha256 first, and every
// problem is reported at once.

import path from 'node:path';
import { isLeft } from 'fp-ts/lib/Either.js';
import { CnerError } from '../errors.js';
import { type Vocab, parseVocab } from '../pipeline/encode.js';
import { type CandidateRule, type LinkDecision, type RerankDecision, compileSeparators } from '../pipeline/link.js';
import { type BundleManifest, openBundleDir, readJson, readText } from './bundle.js';

export const LINKER_FILES = ['linker.onnx', 'names.tsv', 'vocab.txt', 'config.json'] as const;
export const RERANKER_FILE = 'reranker.onnx';
/** The linker graph's outputs, and those it adds with a memory of training pairs. */
export const LINKER_OUTPUTS = ['scores', 'indices'] as const;
export const MEMORY_OUTPUTS = ['memory_scores', 'memory_rows', 'memory_names', 'memory_cosines'] as const;

/** The re-ranking stage: candidates from the nearest names (and the memory), each (text, name) pair scored by the cross-encoder. */
export interface RerankerConfig {
  readonly modelPath: string;
  /** Candidates: the whole text's nearest `kWhole` names, each listed part's nearest `kPart`, the `voters` nearest training diagnoses' gold names. */
  readonly candidates: CandidateRule;
  /** The text and the name are each cut to this many code points in a pair. */
  readonly maxLength: number;
  readonly decision: RerankDecision;
}

export interface LinkerBundle {
  readonly dir: string;
  readonly modelPath: string;
  readonly manifest: BundleManifest;
  readonly version: string;
  /** The code system of every code (e.g. ICD-10-BJ-v601). */
  readonly system: string;
  /** Entity types whose mentions are linked (e.g. DIS). */
  readonly entityTypes: readonly string[];
  readonly topK: number;
  /** Queries are cut to this many code points, as in training. */
  readonly maxQueryLength: number;
  readonly separators: RegExp;
  readonly decision: LinkDecision;
  /** The graph's memory of training pairs: how many nearest it answers per query, of how many pairs; null: none. */
  readonly memory: { readonly top: number; readonly pairs: number } | null;
  /** Null: the nearest names and `decision` alone choose. */
  readonly reranker: RerankerConfig | null;
  /** By row of the graph's indices. */
  readonly names: readonly string[];
  readonly codes: readonly (readonly string[])[];
  readonly vocab: Vocab;
}

export async function loadLinkerBundle(dirArg: string): Promise<LinkerBundle> {
  const { dir, manifest } = await openBundleDir(dirArg, LINKER_FILES);
  const errors: string[] = [];
  const config = await readJson(dir, 'config.json');
  const c = typeof config === 'object' && config !== null && !Array.isArray(config) ? (config as Record<string, unknown>) : {};
  if (c !== config) errors.push('config.json must be a JSON object');
  const str = (key: string): string => {
    const v = c[key];
    if (typeof v !== 'string' || v.length === 0) errors.push(`config.json: ${key} must be a non-empty string`);
    return typeof v === 'string' ? v : '';
  };
  const int = (obj: Record<string, unknown>, key: string, where: string): number => {
    const v = obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) errors.push(`config.json: ${where}${key} must be a whole number ≥ 1`);
    return typeof v === 'number' ? v : 1;
  };
  if (c['kind'] !== 'linker') errors.push(`config.json: kind must be "linker", found ${JSON.stringify(c['kind'] ?? null)}`);
  const system = str('system');
  const entityTypes = Array.isArray(c['entity_types']) && c['entity_types'].every((t) => typeof t === 'string') ? (c['entity_types']) : [];
  if (entityTypes.length === 0) errors.push('config.json: entity_types must be a non-empty list of type codes');
  if (JSON.stringify(c['inputs']) !== JSON.stringify(['input_ids', 'attention_mask'])) errors.push('config.json: inputs must be ["input_ids", "attention_mask"]');
  const memoryOutputs = JSON.stringify([...LINKER_OUTPUTS, ...MEMORY_OUTPUTS]);
  if (![JSON.stringify(LINKER_OUTPUTS), memoryOutputs].includes(JSON.stringify(c['outputs']))) {
    errors.push(`config.json: outputs must be ${JSON.stringify(LINKER_OUTPUTS)}, or ${memoryOutputs} with a memory`);
  }
  const topK = int(c, 'top_k', '');
  let memory: LinkerBundle['memory'] = null;
  if (c['memory'] !== undefined) {
    const m = typeof c['memory'] === 'object' && c['memory'] !== null ? (c['memory'] as Record<string, unknown>) : {};
    memory = { top: int(m, 'top', 'memory.'), pairs: int(m, 'pairs', 'memory.') };
    if (JSON.stringify(c['outputs']) !== memoryOutputs) errors.push(`config.json: a bundle with a memory must have outputs ${memoryOutputs}`);
  } else if (JSON.stringify(c['outputs']) === memoryOutputs) {
    errors.push('config.json: the graph answers memory outputs, and config.json has no "memory"');
  }
  const maxQueryLength = int(c, 'max_query_length', '');
  let separators = /$^/gu;
  try {
    separators = compileSeparators(str('part_separators'));
  } catch (e) {
    errors.push(`config.json: part_separators is not a pattern JavaScript can compile: ${e instanceof Error ? e.message : String(e)}`);
  }
  const d = typeof c['decision'] === 'object' && c['decision'] !== null ? (c['decision'] as Record<string, unknown>) : {};
  const cos = (key: string): number => {
    const v = d[key];
    if (typeof v !== 'number' || !(v >= -1 && v <= 1)) errors.push(`config.json: decision.${key} must be a cosine, from -1 to 1`);
    return typeof v === 'number' ? v : 1;
  };
  const decision: LinkDecision = { whole: cos('whole'), part: cos('part'), maxNames: int(d, 'max_names', 'decision.') };
  let reranker: RerankerConfig | null = null;
  if (c['reranker'] !== undefined) {
    const r = typeof c['reranker'] === 'object' && c['reranker'] !== null ? (c['reranker'] as Record<string, unknown>) : {};
    if (JSON.stringify(r['inputs']) !== JSON.stringify(['input_ids', 'attention_mask', 'token_type_ids'])) errors.push('config.json: reranker.inputs must be ["input_ids", "attention_mask", "token_type_ids"]');
    if (JSON.stringify(r['outputs']) !== JSON.stringify(['probabilities'])) errors.push('config.json: reranker.outputs must be ["probabilities"]');
    const rd = typeof r['decision'] === 'object' && r['decision'] !== null ? (r['decision'] as Record<string, unknown>) : {};
    const num = (key: string): number => {
      const v = rd[key];
      if (typeof v !== 'number' || !Number.isFinite(v)) errors.push(`config.json: reranker.decision.${key} must be a number`);
      return typeof v === 'number' ? v : 0;
    };
    const threshold = num('threshold');
    if (!(threshold >= 0 && threshold <= 1)) errors.push('config.json: reranker.decision.threshold must be a score, from 0 to 1');
    const rerankTop = rd['rerank_top'];
    if (typeof rerankTop !== 'number' || !Number.isInteger(rerankTop) || rerankTop < 0) errors.push('config.json: reranker.decision.rerank_top must be a whole number ≥ 0 (0: every candidate)');
    const decision: RerankDecision = {
      probability: num('probability'),
      cosine: num('cosine'),
      vote: num('vote'),
      bias: num('bias'),
      threshold,
      maxNames: int(rd, 'max_names', 'reranker.decision.'),
      rerankTop: typeof rerankTop === 'number' ? rerankTop : 0,
      preCosine: num('pre_cosine'),
      preVote: num('pre_vote'),
      preBias: rd['pre_bias'] === undefined ? 0 : num('pre_bias'),
      rerankFloor: rd['rerank_floor'] === undefined ? 0 : num('rerank_floor'),
    };
    if (!(decision.rerankFloor >= 0 && decision.rerankFloor <= 1)) errors.push('config.json: reranker.decision.rerank_floor must be a probability, from 0 to 1');
    let voters = 0;
    let temperature = 1;
    if (memory !== null) {
      const v = typeof r['vote'] === 'object' && r['vote'] !== null ? (r['vote'] as Record<string, unknown>) : {};
      voters = int(v, 'k', 'reranker.vote.');
      const t = v['temperature'];
      if (typeof t !== 'number' || !(t > 0)) errors.push('config.json: reranker.vote.temperature must be a number > 0');
      temperature = typeof t === 'number' ? t : 1;
      if (voters > memory.top) errors.push(`config.json: reranker.vote.k must be at most memory.top ${memory.top}`);
    } else if (decision.vote !== 0 || decision.preVote !== 0) {
      errors.push('config.json: reranker.decision weighs votes, and the bundle has no memory');
    }
    if (!(RERANKER_FILE in manifest.files)) errors.push(`manifest.json: files must list ${RERANKER_FILE} (config.json has a reranker)`);
    reranker = {
      modelPath: path.join(dir, RERANKER_FILE),
      candidates: { kWhole: int(r, 'k_whole', 'reranker.'), kPart: int(r, 'k_part', 'reranker.'), voters, temperature },
      maxLength: int(r, 'max_length', 'reranker.'),
      decision,
    };
    if (Math.max(reranker.candidates.kWhole, reranker.candidates.kPart) > topK) errors.push(`config.json: reranker.k_whole and k_part must be at most top_k ${topK}`);
  }

  const names: string[] = [];
  const codes: string[][] = [];
  for (const [i, line] of (await readText(dir, 'names.tsv')).split('\n').entries()) {
    if (line === '') continue;
    const [name, list, ...rest] = line.split('\t');
    if (name === undefined || name === '' || list === undefined || list === '' || rest.length > 0) {
      errors.push(`names.tsv line ${i + 1}: must be name<TAB>code[,code…]`);
      continue;
    }
    names.push(name);
    codes.push(list.split(','));
  }
  if (names.length < topK) errors.push(`names.tsv: ${names.length} names, fewer than top_k ${topK}`);
  const vocab = parseVocab(await readText(dir, 'vocab.txt'));
  if (isLeft(vocab)) errors.push(...vocab.left.map((e) => `vocab.txt: ${e}`));

  if (errors.length > 0 || isLeft(vocab)) {
    throw new CnerError('BUNDLE_INVALID', `linker bundle ${dir} is invalid:\n- ${errors.join('\n- ')}`, { context: { dir, errors } });
  }
  return Object.freeze({
    dir,
    modelPath: path.join(dir, 'linker.onnx'),
    manifest,
    version: manifest.version,
    system,
    entityTypes: Object.freeze([...entityTypes]),
    topK,
    maxQueryLength,
    separators,
    decision: Object.freeze(decision),
    memory: memory === null ? null : Object.freeze(memory),
    reranker: reranker === null ? null : Object.freeze({ ...reranker, candidates: Object.freeze(reranker.candidates), decision: Object.freeze(reranker.decision) }),
    names: Object.freeze(names),
    codes: Object.freeze(codes.map((x) => Object.freeze(x))),
    vocab: vocab.right,
  });
}
