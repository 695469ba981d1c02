// Where the package's own files are, and how a model bundle is named: a leaf
// module (Node built-ins only), so configuration, the CLI and the benchmarks
// resolve a bundle the same way.

import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (src/ and dist/ are one level down). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The bundles shipped in the package, by name: `models/<name>`. */
export const BUNDLED_MODELS_DIR = path.join(PACKAGE_ROOT, 'models');

export const DEFAULT_MODEL = 'default';

/** The ICD-10 linker shipped in the package (`models/icd10`): CNER_LINKER_DIR's default. */
export const DEFAULT_LINKER = 'icd10';

const BUNDLE_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * A model bundle given as a name or a directory: a bare name (no path
 * separator) of a bundle shipped in the package (`default`) is
 * `models/<name>` in the package; anything else is a directory, resolved
 * against `base` when relative (write `./default` for a folder named default there).
 */
export function resolveModelDir(value: string, base: string): string {
  if (BUNDLE_NAME.test(value)) {
    const bundled = path.join(BUNDLED_MODELS_DIR, value);
    if (existsSync(path.join(bundled, 'manifest.json'))) return bundled;
  }
  return path.resolve(base, value);
}

/** The names of the bundles shipped in the package (for messages): the folders of `models/` with a manifest. */
export function bundledModelNames(): string[] {
  const names = existsSync(BUNDLED_MODELS_DIR) ? readdirSync(BUNDLED_MODELS_DIR) : [];
  return names.filter((n) => BUNDLE_NAME.test(n) && existsSync(path.join(BUNDLED_MODELS_DIR, n, 'manifest.json'))).sort();
}
