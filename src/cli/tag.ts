// `cner tag`: JSON Lines in ({"text"|"originalText": …, "id"?: …}), one JSON
// line out per input line, in order: {"id", "entities": [{label_type,
// start_pos, end_pos, text, score, type}]} with code-point offsets, end
// exclusive (the CCKS-2019 convention). With a linker (by default the shipped
// ICD-10 linker; --linker or CNER_LINKER_DIR choose, as for cner serve),
// each entity of a linked type also carries its "codes".

import { parseArgs } from 'node:util';
import { CnerError, isCnerError } from '../errors.js';
import type { ConceptCode, LinkedEntity } from '../pipeline/event.js';
import type { EntityLinker } from '../pipeline/link.js';
import { tagAndLink } from '../pipeline/tag-link.js';
import { type LoadedModel, openModel } from '../model/model.js';
import { type LineError, mapOrdered, parseTextLine, readLines, write } from './io.js';
import { type Command, type CommandIo, EXIT } from './command.js';
import { MODEL_FLAGS_USAGE, MODEL_FLAG_OPTIONS, toolSetup } from './options.js';

const USAGE = `Usage: cner tag [--model DIR] < in.jsonl > out.jsonl

Reads one JSON object per line with the text in "text" or "originalText" and
an optional "id"; writes one line per input line with the id and "entities":
[{"label_type", "start_pos", "end_pos", "text", "score", "type"}]. Offsets are
code points, end exclusive. With a linker (--linker; by default the shipped
ICD-10 linker, icd10), every entity also has "codes":
[{"system", "code", "name", "score"}], best first (empty for the types the
linker does not link). A line that cannot be tagged gets {"id", "error"} and
the exit code is 1.

Options:
  --concurrency N      lines tagged at once (default 64)
${MODEL_FLAGS_USAGE}`;

export interface CcksEntity {
  readonly label_type: string;
  readonly start_pos: number;
  readonly end_pos: number;
  readonly text: string;
  readonly score: number;
  readonly type: string;
  readonly codes?: readonly ConceptCode[];
}

export const toCcksEntity = (e: LinkedEntity): CcksEntity => ({
  label_type: e.label,
  start_pos: e.start,
  end_pos: e.end,
  text: e.text,
  score: e.confidence,
  type: e.code,
  ...(e.codes === undefined ? {} : { codes: e.codes }),
});

export const command: Command = {
  usage: USAGE,
  async run(argv: readonly string[], io: CommandIo): Promise<number> {
    const { values } = parseArgs({ args: [...argv], options: { ...MODEL_FLAG_OPTIONS, concurrency: { type: 'string' } }, strict: true });
    const { modelDir, modelOptions, linker, linkerOptions } = toolSetup(values);
    const concurrency = Number(values.concurrency ?? 64);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new CnerError('INVALID_CONFIG', '--concurrency must be an integer >= 1');
    // The model opens the linker --linker names (the one its bundle carries, by default) and closes it with itself.
    const model = await openModel(modelDir, { ...modelOptions, linker, linkerOptions });
    let failures = 0;
    try {
      const lines = nonEmpty(readLines(io.stdin));
      for await (const out of mapOrdered(lines, concurrency, (line) => tagLine(line, model, model.linker))) {
        if ('error' in out) failures++;
        await write(io.stdout, `${JSON.stringify(out)}\n`);
      }
    } finally {
      await model.close();
    }
    return failures > 0 ? EXIT.failures : EXIT.ok;
  },
};

type LineResult = { id?: unknown; entities: CcksEntity[] } | LineError;

/** Tags one input line; never throws for bad input, only for model failures. */
export async function tagLine(line: string, model: LoadedModel, linker: EntityLinker | null = null): Promise<LineResult> {
  const parsed = parseTextLine(line, ['text', 'originalText']);
  if ('error' in parsed) return parsed;
  const { id, text } = parsed;
  try {
    // Each chunk linked as soon as it is tagged, as the processor does (src/pipeline/tag-link.ts).
    const linked = await tagAndLink(text, model, linker).linked;
    return { ...id, entities: linked.map(toCcksEntity) };
  } catch (e) {
    if (isCnerError(e) && e.code !== 'MODEL_CLOSED') return { ...id, error: { code: e.code, message: e.message } };
    throw e;
  }
}

async function* nonEmpty(lines: AsyncIterable<string>): AsyncGenerator<string> {
  for await (const line of lines) if (line.trim().length > 0) yield line;
}
