// The verified bundles on disk: a complete publication (its parts from the
// topic, or the archive behind its URI) is checked (size, sha256, tar layout,
// labels, manifest version) and written to <cache>/<sha256>/ (with its
// linker in linker/, if it carries one) only once it passed, with its announcement beside it, so a restart finds it again.
// <cache>/live.json names the version this instance served last.

import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { TAGS } from '../pipeline/labels.js';
import type { Logger } from '../model/log.js';
import { LINKER_SUBDIR } from '../model/bundle.js';
import { reassemble, reject, unpackArchive, verifyArchive } from './archive.js';
import type { ModelVersionInfo } from './catalog.js';

export interface Verified {
  readonly info: ModelVersionInfo;
  readonly dir: string;
}

export class BundleStore {
  readonly #dir: string;
  readonly #log: Logger;
  /** By archive sha256. */
  readonly #verified = new Map<string, Verified>();

  constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  /** Creates the cache directory and indexes the bundles an earlier run verified (their files are checked again when opened). */
  async open(): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    for (const name of await readdir(this.#dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}$/.test(name)) {
        if (name.includes('.tmp-')) await rm(path.join(this.#dir, name), { recursive: true, force: true });
        continue;
      }
      try {
        const info = JSON.parse(await readFile(path.join(this.#dir, name, '.announcement.json'), 'utf8')) as ModelVersionInfo;
        if (info.sha256 === name) this.#verified.set(name, { info, dir: path.join(this.#dir, name) });
      } catch {
        await rm(path.join(this.#dir, name), { recursive: true, force: true });
      }
    }
  }

  get(sha256: string): Verified | undefined {
    return this.#verified.get(sha256);
  }

  has(sha256: string): boolean {
    return this.#verified.has(sha256);
  }

  get versions(): readonly string[] {
    return [...this.#verified.values()].map((v) => v.info.version);
  }

  /** Verifies a complete publication and caches it; throws a rejection (archive.ts) or a file-system error. */
  async add(info: ModelVersionInfo, parts: ReadonlyMap<number, Buffer>): Promise<Verified> {
    const archive = info.uri !== null ? verifyArchive(await fetchUri(info), info) : reassemble(parts, info);
    const files = await unpackArchive(archive);
    checkContents(info, files);
    const dir = path.join(this.#dir, info.sha256);
    const tmp = `${dir}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    for (const [name, data] of files) {
      // unpackArchive let through only `<file>` and `linker/<file>` (archive.ts): nothing lands outside tmp.
      const file = path.join(tmp, ...name.split('/'));
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, data);
    }
    await writeFile(path.join(tmp, '.announcement.json'), JSON.stringify(info));
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    const verified = { info, dir };
    this.#verified.set(info.sha256, verified);
    return verified;
  }

  /** Removes the cached bundles whose sha256 is not in `keep`. */
  async prune(keep: ReadonlySet<string>): Promise<void> {
    for (const [sha, v] of this.#verified) {
      if (keep.has(sha)) continue;
      this.#verified.delete(sha);
      await rm(v.dir, { recursive: true, force: true }).catch(() => {});
      this.#log.info({ version: v.info.version, sha256: sha }, 'cached model version no longer on the topic: removed from the cache');
    }
  }

  /** The cached bundle this instance served last, if it is still cached. */
  async lastLive(): Promise<Verified | undefined> {
    try {
      const last = JSON.parse(await readFile(path.join(this.#dir, 'live.json'), 'utf8')) as { sha256?: unknown };
      return typeof last.sha256 === 'string' ? this.#verified.get(last.sha256) : undefined;
    } catch {
      return undefined; // no live.json yet
    }
  }

  async rememberLive(version: string, sha256: string): Promise<void> {
    await writeFile(path.join(this.#dir, 'live.json'), JSON.stringify({ version, sha256 })).catch(() => {});
  }
}

/** The announced labels and the bundle's must be the contract's 13 tags; the manifest must name the announced version. */
export function checkContents(info: ModelVersionInfo, files: ReadonlyMap<string, Buffer>): void {
  const json = (name: string): unknown => {
    const data = files.get(name);
    if (data === undefined) throw reject('manifest', `model version ${info.version}: the archive has no ${name}`, { version: info.version });
    try {
      return JSON.parse(data.toString('utf8')) as unknown;
    } catch {
      throw reject('manifest', `model version ${info.version}: ${name} is not valid JSON`, { version: info.version });
    }
  };
  const same = (a: unknown): boolean => Array.isArray(a) && a.length === TAGS.length && a.every((t, i) => t === TAGS[i]);
  const labels = json('labels.json');
  if (!same(labels) || !same(info.labels)) {
    throw reject('labels', `model version ${info.version}: label set ${JSON.stringify(labels)} (announced ${JSON.stringify(info.labels)}) differs from the contract's ${JSON.stringify(TAGS)}`, {
      version: info.version,
    });
  }
  const manifest = json('manifest.json') as { version?: unknown; linker?: unknown } | null;
  if (manifest?.version !== info.version) {
    throw reject('version_mismatch', `model version ${info.version}: manifest.json says version ${JSON.stringify(manifest?.version)}`, { version: info.version });
  }
  // A linker/ folder is the bundle's linker only with a manifest entry naming it (its files' sha256s are checked when the bundle is opened).
  if ([...files.keys()].some((n) => n.startsWith(`${LINKER_SUBDIR}/`)) && (typeof manifest.linker !== 'object' || manifest.linker === null)) {
    throw reject('manifest', `model version ${info.version}: the archive has a ${LINKER_SUBDIR}/ folder and manifest.json no "linker" entry`, { version: info.version });
  }
}

async function fetchUri(info: ModelVersionInfo): Promise<Buffer> {
  const uri = info.uri!;
  try {
    if (uri.startsWith('file:')) return await readFile(new URL(uri));
    const res = await fetch(uri, { signal: AbortSignal.timeout(120_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return Buffer.from(await res.arrayBuffer());
  } catch (e) {
    throw reject('unavailable', `model version ${info.version}: cannot fetch ${uri}: ${e instanceof Error ? e.message : String(e)}`, { version: info.version });
  }
}
