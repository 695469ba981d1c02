// Tags and entity types (docs/contract.md, "Labels"). The index order is the
// model's output order and must match `labels.json` in every bundle.

export const ENTITY_TYPES = [
  { code: 'DIS', label: '疾病和诊断' },
  { code: 'EXA', label: '影像检查' },
  { code: 'TES', label: '实验室检验' },
  { code: 'OPE', label: '手术' },
  { code: 'DRU', label: '药物' },
  { code: 'ANA', label: '解剖部位' },
] as const;

export type EntityCode = (typeof ENTITY_TYPES)[number]['code'];
export type EntityLabel = (typeof ENTITY_TYPES)[number]['label'];

export const ENTITY_CODES: readonly EntityCode[] = ENTITY_TYPES.map((t) => t.code);

export const LABEL_BY_CODE: Readonly<Record<EntityCode, EntityLabel>> = Object.freeze(
  Object.fromEntries(ENTITY_TYPES.map((t) => [t.code, t.label])) as Record<EntityCode, EntityLabel>,
);

export const CODE_BY_LABEL: ReadonlyMap<string, EntityCode> = new Map(ENTITY_TYPES.map((t) => [t.label, t.code]));

/** `O, B-DIS, I-DIS, B-EXA, I-EXA, …`: O first, then B/I per type in ENTITY_TYPES order. */
export const TAGS: readonly string[] = Object.freeze([
  'O',
  ...ENTITY_TYPES.flatMap((t) => [`B-${t.code}`, `I-${t.code}`]),
]);

export const NUM_TAGS = TAGS.length; // 13
export const TAG_O = 0;

// The layout makes tag arithmetic cheap: type k (0-based) has B at 2k+1 and I at 2k+2.
export const beginTag = (typeIndex: number): number => 2 * typeIndex + 1;
export const insideTag = (typeIndex: number): number => 2 * typeIndex + 2;
export const isBegin = (tag: number): boolean => tag > 0 && tag % 2 === 1;
export const isInside = (tag: number): boolean => tag > 0 && tag % 2 === 0;
/** Entity type index of a B or I tag; -1 for O. */
export const typeIndexOf = (tag: number): number => (tag === TAG_O ? -1 : (tag - 1) >> 1);

export function isEntityCode(value: string): value is EntityCode {
  return (ENTITY_CODES as readonly string[]).includes(value);
}

export function codeOfTypeIndex(typeIndex: number): EntityCode {
  const t = ENTITY_TYPES[typeIndex];
  if (t === undefined) throw new RangeError(`no entity type at index ${typeIndex}`);
  return t.code;
}

/**
 * Whether tag `to` may follow tag `from` under strict BIO (`from` = -1 means
 * the sequence start): I-X only after B-X or I-X, never first.
 */
export function isAllowedTransition(from: number, to: number): boolean {
  if (!isInside(to)) return true;
  return from >= 0 && from !== TAG_O && typeIndexOf(from) === typeIndexOf(to);
}
