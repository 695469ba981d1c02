// `cner link`: diagnosis strings in (JSON Lines with "text" and an optional
// "id"), one line out per input line, in order: {"id", "links": [{code, name,
// score}]}, the ICD-10 (Beijing clinical v601) concepts the text denotes, best
// first. What the CHIP-CDN evaluation runs.

import { parseArgs } from 'node:util';
import { CnerError } from '../errors.js';
import { openLinkerOf } from '../model/model.js';
import { type LineError, parseTextLine, readLines, write } from './io.js';
import { type Command, type CommandIo, EXIT } from './command.js';
import { MODEL_FLAGS_USAGE, MODEL_FLAG_OPTIONS, toolSetup } from './options.js';

const USAGE = `Usage: cner link [--linker NAME|DIR] [--model NAME|DIR] < in.jsonl > out.jsonl

Reads one JSON object per line with a diagnosis in "text" and an optional
"id"; writes one line per input line with the id and "links": [{"code",
"name", "score"}], best first (score: with a re-ranking bundle, the
bundle's probability that the name is one of the text's standard names, a
logistic regression over the re-ranker's probability, the cosine and the
memory's vote; else the cosine between the text, or the listed part that
found it, and the name). A line that cannot be linked gets {"id", "error"} and the exit code is 1.
The linker is chosen as for cner tag and cner serve: --linker (or
CNER_LINKER_DIR) names a linker bundle, by default the shipped one (icd10);
with bundle, the one the model bundle (--model) carries in linker/
(cner-train link-attach).

Options:
  --batch N            lines read, then linked together (default 64; the linker's own batches are of 64 distinct queries)
${MODEL_FLAGS_USAGE}`;

type LineResult = { id?: unknown; links: { code: string; name: string; score: number }[] } | LineError;

export const command: Command = {
  usage: USAGE,
  async run(argv: readonly string[], io: CommandIo): Promise<number> {
    const { values } = parseArgs({ args: [...argv], options: { ...MODEL_FLAG_OPTIONS, batch: { type: 'string' } }, strict: true });
    const batch = Number(values.batch ?? 64);
    if (!Number.isInteger(batch) || batch < 1) throw new CnerError('INVALID_CONFIG', '--batch must be an integer >= 1');
    const { modelDir, linker: source, linkerOptions } = toolSetup(values);
    const linker = await openLinkerOf(source, modelDir, linkerOptions);
    if (linker === null) {
      const why = source.kind === 'none' ? 'linking is off (none)' : `the model bundle ${modelDir} carries no linker`;
      io.stderr.write(`cner link: a linker is required and ${why}: name one with --linker NAME|DIR (or CNER_LINKER_DIR), or attach one to the bundle (cner-train link-attach)\n\n${USAGE}`);
      return EXIT.usage;
    }
    let failures = 0;
    try {
      let pending: { line: string; parsed: ParsedLine }[] = [];
      const flush = async (): Promise<void> => {
        const valid = pending.filter((p) => 'text' in p.parsed);
        const links = await linker.link(valid.map((p) => (p.parsed as { text: string }).text));
        let v = 0;
        for (const p of pending) {
          const out: LineResult = 'text' in p.parsed ? { ...p.parsed.id, links: links[v++]!.map(({ code, name, score }) => ({ code, name, score })) } : p.parsed;
          if ('error' in out) failures++;
          await write(io.stdout, `${JSON.stringify(out)}\n`);
        }
        pending = [];
      };
      for await (const line of readLines(io.stdin)) {
        if (line.trim().length === 0) continue;
        pending.push({ line, parsed: parseLine(line) });
        if (pending.length >= batch) await flush();
      }
      await flush();
    } finally {
      await linker.close();
    }
    return failures > 0 ? EXIT.failures : EXIT.ok;
  },
};

type ParsedLine = { readonly id: { id?: unknown }; readonly text: string } | LineError;

function parseLine(line: string): ParsedLine {
  const parsed = parseTextLine(line, ['text']);
  if ('error' in parsed || parsed.text.trim().length > 0) return parsed;
  return { ...parsed.id, error: { code: 'INVALID_RECORD', message: 'needs a non-empty string "text"' } };
}
