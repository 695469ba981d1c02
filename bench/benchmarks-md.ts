// `npm run bench:md [-- RESULT.json [MORE.json …]]`: writes BENCHMARKS.md (the
// table, the machine, the exact command) from one result of `npm run bench`
// (by default the newest full, not --smoke, result in bench/results/), then a
// section per further result (other bundles or settings), then
// bench/NOTES.md: what each change was predicted to do and what it did.

import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/config.js';
import { type BenchResult, renderMarkdown, renderRunSection } from './report.js';

async function newestResult(dir: string): Promise<string> {
  // Names are ISO timestamps, so the lexical order is the time order.
  const files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.json') && !f.endsWith('-smoke.json')).sort();
  const last = files.at(-1);
  if (last === undefined) throw new Error(`no results in ${path.relative(PACKAGE_ROOT, dir)}: run \`npm run bench\` first`);
  return path.join(dir, last);
}

async function readResult(file: string): Promise<BenchResult> {
  const result = JSON.parse(await readFile(file, 'utf8')) as BenchResult;
  if (result.schema !== 1) throw new Error(`${file}: unknown result schema ${String(result.schema)}`);
  if (result.settings.smoke) process.stderr.write(`warning: ${file} is a --smoke run; its numbers mean little\n`);
  return result;
}

const args = process.argv.slice(2);
const files = args.length === 0 ? [await newestResult(path.join(PACKAGE_ROOT, 'bench', 'results'))] : args.map((a) => path.resolve(a));
const rel = (f: string): string => path.relative(PACKAGE_ROOT, f);
const parts = [renderMarkdown(await readResult(files[0]!), rel(files[0]!))];
for (const file of files.slice(1)) {
  const r = await readResult(file);
  parts.push(renderRunSection(r, rel(file), `Also measured: ${r.settings.cnerBundle === r.settings.bundle ? r.settings.bundle : `${r.settings.cnerBundle} against ${r.settings.bundle}`} (${r.settings.modelVersion})`));
}
const notes = await readFile(path.join(PACKAGE_ROOT, 'bench', 'NOTES.md'), 'utf8').catch(() => null);
if (notes !== null) parts.push(notes);
const target = path.join(PACKAGE_ROOT, 'BENCHMARKS.md');
await writeFile(target, parts.join('\n'));
process.stdout.write(`wrote ${rel(target)} from ${files.map(rel).join(', ')}\n`);
