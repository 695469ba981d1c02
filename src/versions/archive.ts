// The bundle archive carried on the model-version topic (docs/model-versions.md):
// an uncompressed ustar archive of the bundle directory's files, written
// deterministically (names sorted, mode 0644, uid/gid 0, mtime 0, no owner
// names, padded to 10240-byte records as Python's tarfile does), so the same
// bundle gives the same bytes and the same sha256 from either publisher.
// A bundle may carry its ICD-10 linker in a `linker/` subfolder (a complete
// linker bundle): its files are entries `linker/<name>`, one level deep, and
// nothing else may have a path. Headers are encoded and parsed by the `tar`
// package; the archive is split into parts that fit the broker's message
// size and reassembled and verified by the reader before anything is written
// to disk.

import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { Header, Parser, type ReadEntry } from 'tar';
import { CnerError } from '../errors.js';
import { LINKER_SUBDIR } from '../model/bundle.js';

const BLOCK = 512;
/** Python's tarfile.RECORDSIZE: archives are padded to a multiple of it. */
const RECORD = 20 * BLOCK;
/** Largest part: a part record (key, Avro framing, headers) stays under the broker's default 1 MB message.max.bytes. */
export const DEFAULT_PART_BYTES = 900 * 1024;
/** Largest archive accepted (a bundle is tens of MB; this bounds memory on the reader). */
export const MAX_ARCHIVE_BYTES = 2 * 1024 ** 3;

/** Plain file names only (not `.` or `..`). */
const SAFE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9._-]+$/;

/** An archive entry's name: a plain file of the bundle, or a plain file of its `linker/` subfolder. */
export const isBundleEntryName = (name: string): boolean => {
  const slash = name.indexOf('/');
  return slash < 0 ? SAFE_NAME.test(name) : name.slice(0, slash) === LINKER_SUBDIR && SAFE_NAME.test(name.slice(slash + 1));
};

/** Why a version was rejected (the `reason` label of cner_model_versions_rejected_total). */
export type RejectReason =
  | 'missing_parts'
  | 'truncated'
  | 'checksum'
  | 'archive'
  | 'manifest'
  | 'labels'
  | 'version_mismatch'
  | 'onnx_load'
  | 'signature'
  | 'unavailable'
  | 'cache';

export const reject = (reason: RejectReason, message: string, context: Record<string, unknown> = {}): CnerError =>
  new CnerError('MODEL_REJECTED', message, { context: { ...context, reason } });

export const rejectReason = (e: unknown): RejectReason | null =>
  e instanceof CnerError && e.code === 'MODEL_REJECTED' ? (e.context['reason'] as RejectReason) : null;

export const sha256Hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/**
 * The deterministic archive of every regular file in `dir` and in its
 * `linker/` subfolder, if any (entries `linker/<name>`); nothing deeper.
 */
export async function packBundle(dir: string): Promise<Buffer> {
  const names = [...(await plainFiles(dir)), ...(await plainFiles(path.join(dir, LINKER_SUBDIR))).map((n) => `${LINKER_SUBDIR}/${n}`)].sort();
  const chunks: Buffer[] = [];
  for (const name of names) {
    const data = await readFile(path.join(dir, ...name.split('/')));
    const header = new Header({ path: name, mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: new Date(0), type: 'File', uname: '', gname: '' });
    const block = Buffer.alloc(BLOCK);
    header.encode(block, 0);
    chunks.push(block, data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  chunks.push(Buffer.alloc(2 * BLOCK));
  const body = Buffer.concat(chunks);
  return Buffer.concat([body, Buffer.alloc((RECORD - (body.length % RECORD)) % RECORD)]);
}

/** The plain files directly in `dir` with safe names (none when `dir` is missing). */
async function plainFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => SAFE_NAME.test(n))) {
    if ((await stat(path.join(dir, name))).isFile()) files.push(name);
  }
  return files;
}

/**
 * The archive's files, name → bytes (`linker/<name>` for the linker's).
 * Rejects anything but regular files of the bundle or of its `linker/`
 * subfolder: no links, no directory entries, no other paths.
 */
export async function unpackArchive(archive: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const problems: string[] = [];
  await new Promise<void>((resolve, reject_) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const name = entry.path;
        if (entry.type !== 'File' || !isBundleEntryName(name) || files.has(name)) {
          problems.push(`${JSON.stringify(name)} (${entry.type}) is not a plain file of the bundle or of its ${LINKER_SUBDIR}/ folder`);
          entry.resume();
          return;
        }
        const parts: Buffer[] = [];
        entry.on('data', (d: Buffer) => parts.push(d));
        entry.on('end', () => files.set(name, Buffer.concat(parts)));
      },
    });
    parser.on('error', (e: unknown) => reject_(e));
    parser.on('warn', (_code: string, message: string | Error) => problems.push(String(message instanceof Error ? message.message : message)));
    parser.on('end', () => resolve());
    parser.end(archive);
  }).catch((cause: unknown) => {
    throw reject('archive', `the bundle archive is not a valid tar: ${cause instanceof Error ? cause.message : String(cause)}`, {});
  });
  if (problems.length > 0) throw reject('archive', `the bundle archive is invalid: ${problems.join('; ')}`, { problems });
  return files;
}

/** Cuts the archive into parts of at most `partBytes`. */
export function splitArchive(archive: Buffer, partBytes = DEFAULT_PART_BYTES): Buffer[] {
  if (!Number.isInteger(partBytes) || partBytes < 1) throw new RangeError(`partBytes must be a positive integer, got ${partBytes}`);
  const parts: Buffer[] = [];
  for (let off = 0; off < archive.length; off += partBytes) parts.push(archive.subarray(off, off + partBytes));
  return parts.length === 0 ? [Buffer.alloc(0)] : parts;
}

export interface ArchiveExpectation {
  readonly version: string;
  readonly sha256: string;
  readonly size: number;
  readonly parts: number;
}

/**
 * Joins parts 0..count-1 and checks the size and sha256 announced. Missing
 * parts, a short or long archive and a checksum mismatch are rejections.
 */
export function reassemble(parts: ReadonlyMap<number, Buffer>, expect: ArchiveExpectation): Buffer {
  const missing: number[] = [];
  for (let i = 0; i < expect.parts; i++) if (!parts.has(i)) missing.push(i);
  if (missing.length > 0) {
    throw reject('missing_parts', `model version ${expect.version}: ${missing.length} of ${expect.parts} parts are missing from the model topic (first: ${missing[0]})`, {
      version: expect.version,
      missing: missing.slice(0, 10),
    });
  }
  const archive = Buffer.concat(Array.from({ length: expect.parts }, (_, i) => parts.get(i)!));
  return verifyArchive(archive, expect);
}

export function verifyArchive(archive: Buffer, expect: Pick<ArchiveExpectation, 'version' | 'sha256' | 'size'>): Buffer {
  if (archive.length !== expect.size) {
    throw reject('truncated', `model version ${expect.version}: the archive has ${archive.length} bytes, the announcement says ${expect.size}`, {
      version: expect.version,
      size: archive.length,
      expected: expect.size,
    });
  }
  const actual = sha256Hex(archive);
  if (actual !== expect.sha256) {
    throw reject('checksum', `model version ${expect.version}: the archive's sha256 is ${actual}, the announcement says ${expect.sha256}`, {
      version: expect.version,
      actual,
      expected: expect.sha256,
    });
  }
  return archive;
}
