// `cner <command> [options]`: a small dispatcher. Each command is one module
// in this folder exporting `command: Command`; add it to COMMANDS. Modules
// load lazily, so `cner tag` never loads Kafka clients and help stays fast.

import { type Command, type CommandIo, EXIT } from './command.js';

interface CommandEntry {
  readonly summary: string;
  readonly load: () => Promise<{ readonly command: Command }>;
}

export const COMMANDS: Readonly<Record<string, CommandEntry>> = Object.freeze({
  tag: { summary: 'tag JSON Lines from stdin, write entities as JSON Lines', load: () => import('./tag.js') },
  eval: { summary: 'strict entity-level P/R/F1 on a CCKS-format JSONL file', load: () => import('./eval.js') },
  link: { summary: 'link diagnoses (JSON Lines from stdin) to ICD-10 codes with a linker bundle', load: () => import('./link.js') },
  serve: { summary: 'run the Kafka stream processor (configured by environment variables)', load: () => import('./serve.js') },
  model: { summary: 'publish a model bundle to the model topic, list its versions, select the live one', load: () => import('./model.js') },
  demo: { summary: 'run the processor end to end on synthetic records and print the entities', load: () => import('./demo.js') },
});


export async function main(argv: readonly string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    io.stdout.write(usage());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (entry === undefined) {
    io.stderr.write(`cner: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return EXIT.usage;
  }
  const { command } = await entry.load();
  if (rest.includes('-h') || rest.includes('--help')) {
    io.stdout.write(command.usage);
    return EXIT.ok;
  }
  return command.run(rest, io);
}

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const lines = Object.entries(COMMANDS).map(([n, e]) => `  ${n.padEnd(width)}  ${e.summary}`);
  return `Usage: cner <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun 'cner <command> --help' for a command's options.\n`;
}
