#!/usr/bin/env node
// Entry point of `npx cner …`. Runs the compiled CLI in dist/ (built by
// `npm install` through the `prepare` script, or `npm run build`). In a
// checkout where src/ was edited after the last build (or dist/ is missing)
// and tsx is installed, it runs the TypeScript source instead, so a command
// never runs stale code.
import { existsSync, readdirSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const compiled = new URL('dist/cli/main.js', root);
const buildStamp = new URL('dist/.tsbuildinfo', root);
const sourceDir = new URL('src/', root);
const source = new URL('src/cli/main.ts', root);

function newestMtime(dirUrl) {
  let newest = 0;
  for (const entry of readdirSync(dirUrl, { withFileTypes: true })) {
    const url = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dirUrl);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(url) : statSync(url).mtimeMs);
  }
  return newest;
}

function builtAt() {
  if (existsSync(buildStamp)) return statSync(buildStamp).mtimeMs;
  return existsSync(compiled) ? statSync(compiled).mtimeMs : -1;
}

async function loadTsx() {
  try {
    return await import('tsx/esm/api');
  } catch {
    return null; // a production install without dev dependencies
  }
}

async function loadMain() {
  const stale = existsSync(source) && newestMtime(sourceDir) > builtAt();
  if (stale) {
    const tsx = await loadTsx();
    if (tsx !== null) {
      tsx.register();
      return import(source.href);
    }
  }
  if (existsSync(compiled)) return import(compiled.href);
  process.stderr.write('cner: dist/ is missing; run `npm run build` (or `npm install`, which builds it)\n');
  process.exit(2);
}

const { main } = await loadMain();
try {
  process.exitCode = await main(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
} catch (error) {
  // Expected failures (bad bundle, bad option) carry a code: print the message, not a stack.
  const code = error && typeof error === 'object' && 'code' in error ? error.code : undefined;
  process.stderr.write(code === undefined ? `${error?.stack ?? error}\n` : `cner: ${error.message} [${code}]\n`);
  const usageError = code === 'INVALID_CONFIG' || String(code).startsWith('ERR_PARSE_ARGS');
  process.exitCode = usageError ? 2 : 1;
}
