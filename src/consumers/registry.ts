// The schema registry adapter: the Confluent REST API subset we use
// (register, look up, fetch by id), over fetch, with basic auth, a timeout per
// request and errors mapped to codes: no answer, 5xx, 408 and 429 are
// REGISTRY_UNAVAILABLE (retried by the caller), a 404 for a schema id is
// UNKNOWN_SCHEMA (the record is dead-lettered), 401/403/409/422 are
// REGISTRY_REJECTED (fix the configuration or the schema). Tested against
// Apicurio Registry's ccompat API (/apis/ccompat/v7) and written to the
// Confluent API reference.
//
// Lookups by id memoise the promise, so concurrent cache misses make one
// request; failures that may succeed later are not cached.

import { StreamError } from '../errors.js';

export interface RegistryOptions {
  readonly url: string;
  readonly auth: { readonly username: string; readonly password: string } | null;
  /** Per request (default 5 s). */
  readonly timeoutMs?: number;
  /** Tests inject a fake. */
  readonly fetch?: typeof fetch;
}

const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
const MAX_UNKNOWN_IDS = 10_000;

export class SchemaRegistry {
  readonly #base: string;
  readonly #authHeader: string | null;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #byId = new Map<number, Promise<string>>();
  #unknownIds = 0;

  constructor(options: RegistryOptions) {
    this.#base = options.url.replace(/\/+$/, '');
    this.#authHeader = options.auth === null ? null : `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`;
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#fetch = options.fetch ?? fetch;
  }

  /** Registers `schema` under `subject` (idempotent: an identical schema keeps its id). */
  async register(subject: string, schema: string): Promise<number> {
    const body = await this.#request('POST', `/subjects/${encodeURIComponent(subject)}/versions`, { schema, schemaType: 'AVRO' });
    return idOf(body, subject);
  }

  /** The id of `schema` if it is registered under `subject`, else null. */
  async lookup(subject: string, schema: string): Promise<number | null> {
    try {
      const body = await this.#request('POST', `/subjects/${encodeURIComponent(subject)}`, { schema, schemaType: 'AVRO' });
      return idOf(body, subject);
    } catch (e) {
      if (e instanceof StreamError && e.context['status'] === 404) return null;
      throw e;
    }
  }

  /** Version numbers under `subject` (empty when the subject does not exist). */
  async versions(subject: string): Promise<number[]> {
    try {
      const body = await this.#request('GET', `/subjects/${encodeURIComponent(subject)}/versions`);
      return Array.isArray(body) ? body.filter((v): v is number => typeof v === 'number') : [];
    } catch (e) {
      if (e instanceof StreamError && e.context['status'] === 404) return [];
      throw e;
    }
  }

  /** The compatibility level that applies to `subject` (its own, else the global one). */
  async compatibility(subject: string): Promise<string | null> {
    try {
      const body = await this.#request('GET', `/config/${encodeURIComponent(subject)}?defaultToGlobal=true`);
      const level = (body as { compatibilityLevel?: unknown; compatibility?: unknown } | null) ?? {};
      const value = level.compatibilityLevel ?? level.compatibility;
      return typeof value === 'string' ? value : null;
    } catch (e) {
      if (e instanceof StreamError && e.context['status'] === 404) return null;
      throw e;
    }
  }

  async setCompatibility(subject: string, level: string): Promise<void> {
    await this.#request('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility: level });
  }

  /** Deletes a subject and its versions (soft, then permanent); a missing subject is fine. */
  async deleteSubject(subject: string): Promise<void> {
    for (const suffix of ['', '?permanent=true']) {
      try {
        await this.#request('DELETE', `/subjects/${encodeURIComponent(subject)}${suffix}`);
      } catch (e) {
        if (!(e instanceof StreamError && e.context['status'] === 404)) throw e;
      }
    }
  }

  /** The schema text of a global id. Rejects with UNKNOWN_SCHEMA for an id the registry does not know. */
  schemaById(id: number): Promise<string> {
    let pending = this.#byId.get(id);
    if (pending === undefined) {
      pending = this.#fetchSchema(id);
      this.#byId.set(id, pending);
      pending.catch((e: unknown) => {
        const permanent = e instanceof StreamError && e.code === 'UNKNOWN_SCHEMA' && this.#unknownIds++ < MAX_UNKNOWN_IDS;
        if (!permanent) this.#byId.delete(id);
      });
    }
    return pending;
  }

  async #fetchSchema(id: number): Promise<string> {
    let body: unknown;
    try {
      body = await this.#request('GET', `/schemas/ids/${id}`);
    } catch (e) {
      if (e instanceof StreamError && e.context['status'] === 404) {
        throw new StreamError('UNKNOWN_SCHEMA', `schema id ${id} is not in the registry`, { context: { schemaId: id } });
      }
      throw e;
    }
    const schema = (body as { schema?: unknown } | null)?.schema;
    const type = (body as { schemaType?: unknown } | null)?.schemaType;
    if (typeof schema !== 'string') throw new StreamError('REGISTRY_UNAVAILABLE', `registry answered schema id ${id} without a schema`, { context: { schemaId: id } });
    if (type !== undefined && type !== 'AVRO') {
      throw new StreamError('UNKNOWN_SCHEMA', `schema id ${id} is a ${String(type)} schema, not Avro`, { context: { schemaId: id } });
    }
    return schema;
  }

  async #request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, json?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { accept: `${CONTENT_TYPE}, application/json` };
    if (json !== undefined) headers['content-type'] = CONTENT_TYPE;
    if (this.#authHeader !== null) headers['authorization'] = this.#authHeader;
    const where = `${method} ${path}`;
    let res: Response;
    try {
      res = await this.#fetch(`${this.#base}${path}`, {
        method,
        headers,
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      const reason = e instanceof Error ? (causeCode(e) ?? e.name) : 'error';
      throw new StreamError('REGISTRY_UNAVAILABLE', `schema registry did not answer ${where} (${reason})`, { cause: e, context: { registry: this.#base } });
    }
    const text = await res.text().catch(() => '');
    if (res.ok) {
      try {
        return text === '' ? null : (JSON.parse(text) as unknown);
      } catch {
        throw new StreamError('REGISTRY_UNAVAILABLE', `schema registry answered ${where} with invalid JSON`, { context: { status: res.status } });
      }
    }
    const detail = registryMessage(text);
    const context = { status: res.status, registry: this.#base };
    if (res.status >= 500 || res.status === 408 || res.status === 429) {
      throw new StreamError('REGISTRY_UNAVAILABLE', `schema registry answered ${where} with ${res.status}${detail}`, { context });
    }
    if (res.status === 401 || res.status === 403) {
      throw new StreamError('REGISTRY_REJECTED', `schema registry refused ${where} (${res.status}): check SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD`, { context });
    }
    if (res.status === 409) {
      throw new StreamError('REGISTRY_REJECTED', `schema registry refused ${where} as incompatible with the registered versions (409)${detail}; evolve the schema compatibly (new fields need defaults)`, { context });
    }
    throw new StreamError('REGISTRY_REJECTED', `schema registry refused ${where} (${res.status})${detail}`, { context });
  }
}

function idOf(body: unknown, subject: string): number {
  const id = (body as { id?: unknown } | null)?.id;
  if (typeof id !== 'number' || !Number.isInteger(id)) throw new StreamError('REGISTRY_UNAVAILABLE', `schema registry answered for ${subject} without an id`);
  return id;
}

function registryMessage(text: string): string {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    return typeof message === 'string' ? `: ${message.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}

/** ECONNREFUSED etc. from undici's `cause` (network errors carry no payload). */
function causeCode(e: Error): string | undefined {
  const cause = (e as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  return typeof cause?.message === 'string' ? cause.message : undefined;
}
