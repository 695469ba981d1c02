// `npm run bench:md [-- RESULT.json]`: writes BENCHMARKS.md (the table, the
// machine, the exact command) from one result of `npm run bench`; by default
// the newest full (not --smoke) result in bench/results/.

import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/config.js';
import { type BenchResult, renderMarkdown } from './report.js';

async function newestResult(dir: string): Promise<string> {
  // Names are ISO timestamps, so the lexical order is the time order.
  const files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.json') && !f.endsWith('-smoke.json')).sort();
  const last = files.at(-1);
  if (last === undefined) throw new Error(`no results in ${path.relative(PACKAGE_ROOT, dir)}: run \`npm run bench\` first`);
  return path.join(dir, last);
}

const arg = process.argv[2];
const file = arg === undefined ? await newestResult(path.join(PACKAGE_ROOT, 'bench', 'results')) : path.resolve(arg);
const result = JSON.parse(await readFile(file, 'utf8')) as BenchResult;
if (result.schema !== 1) throw new Error(`${file}: unknown result schema ${String(result.schema)}`);
if (result.settings.smoke) process.stderr.write(`warning: ${file} is a --smoke run; its numbers mean little\n`);
const target = path.join(PACKAGE_ROOT, 'BENCHMARKS.md');
await writeFile(target, renderMarkdown(result, path.relative(PACKAGE_ROOT, file)));
process.stdout.write(`wrote ${path.relative(PACKAGE_ROOT, target)} from ${path.relative(PACKAGE_ROOT, file)}\n`);
