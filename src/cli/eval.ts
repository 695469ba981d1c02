// `cner eval --data FILE`: tags every record of a CCKS-format JSONL file
// ({"originalText", "entities": [{label_type, start_pos, end_pos}]}) and
// prints strict entity-level P/R/F1 per type and averaged.

import { createReadStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { CnerError } from '../errors.js';
import { ENTITY_TYPES } from '../pipeline/labels.js';
import { tagRecord } from '../pipeline/tag.js';
import { openModel } from '../model/model.js';
import { mapOrdered, readLines, write } from './io.js';
import { type Command, type CommandIo, EXIT } from './command.js';
import { EntityScorer, type LabeledSpan, type Report } from './metrics.js';
import { MODEL_FLAGS_USAGE, MODEL_FLAG_OPTIONS, toolSetup } from './options.js';

const USAGE = `Usage: cner eval --data FILE [--json] [--model DIR]

Strict entity-level precision, recall and F1 (start, end and type must all
match) per entity type, micro- and macro-averaged, on a CCKS-format JSONL file.

Options:
  --data FILE          JSONL with "originalText" (or "text") and gold "entities"
  --json               print the report as JSON instead of a table
  --concurrency N      records tagged at once (default 64)
${MODEL_FLAGS_USAGE}`;

interface GoldRecord {
  readonly text: string;
  readonly gold: LabeledSpan[];
}

export const command: Command = {
  usage: USAGE,
  async run(argv: readonly string[], io: CommandIo): Promise<number> {
    const { values } = parseArgs({
      args: [...argv],
      options: { ...MODEL_FLAG_OPTIONS, data: { type: 'string' }, json: { type: 'boolean' }, concurrency: { type: 'string' } },
      strict: true,
    });
    if (values.data === undefined) {
      io.stderr.write(`cner eval: --data FILE is required\n\n${USAGE}`);
      return EXIT.usage;
    }
    const concurrency = Number(values.concurrency ?? 64);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new CnerError('INVALID_CONFIG', '--concurrency must be an integer >= 1');
    const { modelDir, modelOptions } = toolSetup(values);
    const model = await openModel(modelDir, modelOptions);
    const scorer = new EntityScorer(ENTITY_TYPES.map((t) => t.label));
    const started = performance.now();
    try {
      const records = goldRecords(readLines(createReadStream(values.data, 'utf8')), values.data);
      const tagged = mapOrdered(records, concurrency, async (r) => ({ r, predicted: await tagRecord(r.text, model) }));
      for await (const { r, predicted } of tagged) {
        scorer.add(r.gold, predicted.map((e) => ({ start: e.start, end: e.end, label: e.label })));
      }
    } finally {
      await model.close();
    }
    const report = scorer.report();
    const seconds = (performance.now() - started) / 1000;
    const out = values.json
      ? `${JSON.stringify({ data: values.data, model: model.bundle.manifest.name, modelVersion: model.version, seconds, ...report }, null, 2)}\n`
      : formatTable(report, `${model.bundle.manifest.name} ${model.version}`, seconds);
    await write(io.stdout, out);
    return EXIT.ok;
  },
};

async function* goldRecords(lines: AsyncIterable<string>, file: string): AsyncGenerator<GoldRecord> {
  let n = 0;
  for await (const raw of lines) {
    n++;
    const line = n === 1 ? raw.replace(/^\uFEFF/, '') : raw; // the CCKS-2019 originals start with a BOM
    if (line.trim().length === 0) continue;
    yield parseGoldLine(line, `${file}:${n}`);
  }
}

export function parseGoldLine(line: string, where: string): GoldRecord {
  const fail = (problem: string): never => {
    throw new CnerError('INVALID_RECORD', `${where}: ${problem}`, { context: { where } });
  };
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    return fail('not valid JSON');
  }
  if (typeof obj !== 'object' || obj === null) return fail('not a JSON object');
  const rec = obj as Record<string, unknown>;
  const text = rec['originalText'] ?? rec['text'];
  if (typeof text !== 'string') return fail('needs a string "originalText"');
  const entities = rec['entities'] ?? [];
  if (!Array.isArray(entities)) return fail('"entities" must be an array');
  const gold = entities.map((e: unknown, i): LabeledSpan => {
    const ent = (typeof e === 'object' && e !== null ? e : {}) as Record<string, unknown>;
    const { label_type: label, start_pos: start, end_pos: end } = ent;
    if (typeof label !== 'string' || !Number.isInteger(start) || !Number.isInteger(end)) {
      return fail(`entities[${i}] needs label_type, start_pos and end_pos`);
    }
    return { label, start: start as number, end: end as number };
  });
  return { text, gold };
}

const pct = (x: number): string => (100 * x).toFixed(2);

/** Terminal width of a string: CJK and full-width forms take two columns. */
function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    w += (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) || (cp >= 0xffe0 && cp <= 0xffe6) || cp >= 0x20000 ? 2 : 1;
  }
  return w;
}

const padEndWidth = (s: string, width: number): string => s + ' '.repeat(Math.max(0, width - displayWidth(s)));

export function formatTable(report: Report, model: string, seconds: number): string {
  const codeOf = new Map<string, string>(ENTITY_TYPES.map((t) => [t.label, t.code]));
  const rows: string[][] = Object.entries(report.perType).map(([label, s]) => [
    `${codeOf.get(label) ?? '?'} ${label}`,
    String(s.support),
    String(s.tp),
    String(s.fp),
    String(s.fn),
    pct(s.precision),
    pct(s.recall),
    pct(s.f1),
  ]);
  const m = report.micro;
  const footer = [
    ['micro', String(m.support), String(m.tp), String(m.fp), String(m.fn), pct(m.precision), pct(m.recall), pct(m.f1)],
    ['macro', '', '', '', '', pct(report.macro.precision), pct(report.macro.recall), pct(report.macro.f1)],
  ];
  const header = ['type', 'support', 'tp', 'fp', 'fn', 'P', 'R', 'F1'];
  const all = [header, ...rows, ...footer];
  const widths = header.map((_, c) => Math.max(...all.map((r) => displayWidth(r[c]!))));
  const fmt = (r: string[]): string => r.map((cell, c) => (c === 0 ? padEndWidth(cell, widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const rule = '-'.repeat(widths.reduce((a, w) => a + w + 2, -2));
  return [
    `model ${model}; ${report.documents} documents in ${seconds.toFixed(1)} s; strict entity-level matching`,
    fmt(header),
    rule,
    ...rows.map(fmt),
    rule,
    ...footer.map(fmt),
    '',
  ].join('\n');
}
