// The source layout's rules, checked on the import statements of src/:
// folders import only downward (no cycle between them, none between files),
// one adapter file per external system, and a pure pipeline.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PACKAGE_ROOT } from '../src/paths.js';

const SRC = path.join(PACKAGE_ROOT, 'src');
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g;

interface Module {
  readonly file: string; // relative to src/
  readonly local: string[]; // resolved files relative to src/
  readonly packages: string[];
}

function modules(): Module[] {
  const out: Module[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
        const text = readFileSync(p, 'utf8');
        const local: string[] = [];
        const packages: string[] = [];
        for (const m of text.matchAll(IMPORT)) {
          const spec = m[1] ?? m[2] ?? m[3]!;
          if (spec.startsWith('.')) local.push(path.relative(SRC, path.resolve(path.dirname(p), spec)).replace(/\.js$/, '.ts'));
          else packages.push(spec);
        }
        out.push({ file: path.relative(SRC, p), local, packages });
      }
    }
  };
  walk(SRC);
  return out;
}

/** A file's unit: its folder under src/, or the file itself for top-level files. */
const unit = (file: string): string => (file.includes('/') ? file.split('/')[0]! : file.replace(/\.ts$/, ''));

function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const found: string[][] = [];
  const visit = (u: string, stack: string[]): void => {
    state.set(u, 'open');
    stack.push(u);
    for (const v of graph.get(u) ?? []) {
      if (state.get(v) === 'open') found.push([...stack.slice(stack.indexOf(v)), v]);
      else if (!state.has(v)) visit(v, stack);
    }
    stack.pop();
    state.set(u, 'done');
  };
  for (const u of graph.keys()) if (!state.has(u)) visit(u, []);
  return found;
}

describe('source layout', () => {
  const all = modules();

  it('has no import cycle between files', () => {
    const graph = new Map(all.map((m) => [m.file, new Set(m.local)]));
    assert.deepEqual(cycles(graph).map((c) => c.join(' → ')), []);
  });

  it('has no import cycle between folders (each imports only downward)', () => {
    const graph = new Map<string, Set<string>>();
    for (const m of all) {
      const from = unit(m.file);
      for (const t of m.local) if (unit(t) !== from) graph.set(from, (graph.get(from) ?? new Set()).add(unit(t)));
    }
    assert.deepEqual(cycles(graph).map((c) => c.join(' → ')), []);
  });

  it('one adapter file per external system', () => {
    const importers = (pkg: string): string[] => all.filter((m) => m.packages.some((p) => p === pkg || p.startsWith(`${pkg}/`))).map((m) => m.file);
    assert.deepEqual(importers('kafkajs'), ['kafka/adapter.ts']);
    assert.deepEqual(importers('onnxruntime-node'), ['model/onnx-session.ts']);
    assert.deepEqual(importers('@kafkajs/confluent-schema-registry'), ['records/registry.ts']);
  });

  it('the pipeline is pure: it imports only itself and the error table', () => {
    for (const m of all.filter((x) => x.file.startsWith('pipeline/'))) {
      for (const t of m.local) assert.ok(t.startsWith('pipeline/') || t === 'errors.ts', `${m.file} imports ${t}`);
      for (const p of m.packages) assert.ok(p.startsWith('fp-ts/') || p.startsWith('node:'), `${m.file} imports ${p}`);
    }
  });
});
