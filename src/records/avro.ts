// Avro at the edge: our two schemas (schemas/*.avsc), the Confluent wire
// format (magic byte 0, 4-byte big-endian schema id, Avro binary), reading
// EmrRecord values written with any compatible writer schema, and writing
// ClinicalEntities events.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { PACKAGE_ROOT } from '../paths.js';
import { CnerError } from '../errors.js';
import type { ClinicalEntitiesEvent } from '../pipeline/event.js';
import { avroBoundsProblem } from './avro-bounds.js';

export const SCHEMA_DIR = path.join(PACKAGE_ROOT, 'schemas');
export const MAGIC_BYTE = 0;
const HEADER_BYTES = 5;

export interface AvroSchema {
  /** The .avsc text, as registered. */
  readonly text: string;
  readonly type: avro.Type;
}

export function loadSchema(name: 'EmrRecord' | 'ClinicalEntities'): AvroSchema {
  const file = path.join(SCHEMA_DIR, `${name}.avsc`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new CnerError('INTERNAL', `${file} is missing: the package must ship schemas/ next to dist/ (in an image: COPY schemas /app/schemas)`, { cause });
  }
  // Canonical-ish: the registry compares schemas, so register the minified JSON.
  const json = JSON.parse(text) as avro.Schema;
  return { text: JSON.stringify(json), type: avro.Type.forSchema(json) };
}

export function frame(schemaId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(MAGIC_BYTE, 0);
  header.writeUInt32BE(schemaId, 1);
  return Buffer.concat([header, payload]);
}

/** Splits a Confluent-framed value; null if it is too short to be one. */
export function unframe(value: Buffer): { readonly schemaId: number; readonly payload: Buffer } | null {
  if (value.length < HEADER_BYTES || value[0] !== MAGIC_BYTE) return null;
  return { schemaId: value.readUInt32BE(1), payload: value.subarray(HEADER_BYTES) };
}

export const isAvroFramed = (value: Buffer): boolean => value.length > 0 && value[0] === MAGIC_BYTE;

export interface WriterSchemas {
  /** The writer type of a schema id (the registry adapter's, parsed by the registry library). */
  writerType(id: number): Promise<avro.Type>;
}

interface Resolution {
  readonly writer: avro.Type;
  readonly resolver: avro.Resolver;
}

/**
 * Reads values written with any writer schema the reader schema can resolve
 * (Avro schema resolution: the writer's fields by name, defaults for fields it
 * lacks). One resolver per schema id, built once. Each value is first checked
 * against its writer schema for declarations its bytes cannot back
 * (avro-bounds.ts), so no value can make decoding loop or allocate beyond
 * its size.
 */
export class AvroReader {
  readonly #reader: avro.Type;
  readonly #schemas: WriterSchemas;
  readonly #resolvers = new Map<number, Promise<Resolution>>();

  constructor(reader: avro.Type, schemas: WriterSchemas) {
    this.#reader = reader;
    this.#schemas = schemas;
  }

  /**
   * Decodes a framed value. Throws CnerError: UNKNOWN_SCHEMA,
   * INCOMPATIBLE_SCHEMA, UNDECODABLE_VALUE (the record's fault) or
   * REGISTRY_UNAVAILABLE (not its fault: retry).
   */
  async decode(value: Buffer): Promise<unknown> {
    const framed = unframe(value);
    if (framed === null) throw new CnerError('UNDECODABLE_VALUE', 'value starts with the Avro magic byte 0 but is shorter than the 5-byte header');
    const { writer, resolver } = await this.#resolver(framed.schemaId);
    const problem = avroBoundsProblem(writer, framed.payload);
    if (problem !== null) {
      throw new CnerError('UNDECODABLE_VALUE', `Avro payload is malformed for its writer schema (id ${framed.schemaId}): ${problem}`, {
        context: { schemaId: framed.schemaId, bytes: framed.payload.length },
      });
    }
    try {
      return this.#reader.fromBuffer(framed.payload, resolver);
    } catch {
      // avsc's message may quote decoded data: keep only where it happened.
      throw new CnerError('UNDECODABLE_VALUE', `Avro payload does not decode with its writer schema (id ${framed.schemaId})`, {
        context: { schemaId: framed.schemaId, bytes: framed.payload.length },
      });
    }
  }

  #resolver(id: number): Promise<Resolution> {
    let pending = this.#resolvers.get(id);
    if (pending === undefined) {
      pending = this.#schemas.writerType(id).then((writer) => {
        try {
          return { writer, resolver: this.#reader.createResolver(writer) };
        } catch (e) {
          throw new CnerError('INCOMPATIBLE_SCHEMA', `schema id ${id} cannot be read as ${String(this.#reader.name)}: ${e instanceof Error ? e.message : 'resolution failed'}`, {
            context: { schemaId: id },
          });
        }
      });
      this.#resolvers.set(id, pending);
      // Keep successes and the failures that depend on the schema alone (an
      // id's schema never changes): INCOMPATIBLE_SCHEMA. An unknown id may be
      // registered a moment later (or the registry answered 404 by mistake),
      // so it is asked again next time (WriterSchemas decides how often).
      pending.catch((e: unknown) => {
        if (!(e instanceof CnerError) || e.code !== 'INCOMPATIBLE_SCHEMA') this.#resolvers.delete(id);
      });
    }
    return pending;
  }
}

/** Encodes events with the registered ClinicalEntities schema. */
export class EventEncoder {
  readonly #type: avro.Type;
  readonly #schemaId: number;

  constructor(type: avro.Type, schemaId: number) {
    this.#type = type;
    this.#schemaId = schemaId;
  }

  encode(event: ClinicalEntitiesEvent): Buffer {
    const paths: string[] = [];
    if (!this.#type.isValid(event, { errorHook: (p) => paths.push(p.join('.') || '$') })) {
      // avsc's own error would quote the value (entity text is patient data): report the paths only.
      throw new CnerError('PROCESSING_FAILED', `event does not match the ClinicalEntities schema at ${paths.slice(0, 5).join(', ')}`, {
        context: { paths: paths.slice(0, 5) },
      });
    }
    return frame(this.#schemaId, this.#type.toBuffer(event));
  }
}
