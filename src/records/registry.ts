// The schema registry adapter. @kafkajs/confluent-schema-registry does the
// registry work over the Confluent API (Apicurio: /apis/ccompat/v7): register
// under a subject (TopicNameStrategy, `<topic>-value`, chosen by the caller),
// look a schema up, the latest id of a subject, the writer schema of an id.
// The wire format and Avro encoding stay in avro.ts (avsc with the types the
// library parsed; its own decode would rebuild the reader type per message).
//
// Its errors are mapped to our codes by their shape (dist/api/middleware/
// errorMiddleware.js, dist/errors.js), never by message text:
//   ResponseError {status, unauthorized, url}: any failed request. No answer
//     at all is a ResponseError with status 400 too (mappersmith turns a
//     socket error or timeout into a "client error" response of status 400,
//     and errorMiddleware keeps only the status). So every request goes
//     through our own http.Agent, which records its socket's error in the
//     calling lookup's AsyncLocalStorage context: status 400 with a recorded
//     socket error is "no answer".
//     No answer, 5xx, 408, 429 → REGISTRY_UNAVAILABLE (the caller retries);
//     401/403/409/422/other → REGISTRY_REJECTED (fix the configuration or
//     the schema); 404 is decided per call (not registered, or an unknown
//     schema id → UNKNOWN_SCHEMA, which dead-letters the record).
//   ConfluentSchemaRegistryError (the base class, no status): thrown only by
//     getRegistryIdBySchema for a 404, i.e. "not registered".
//   ConfluentSchemaRegistryArgumentError: the library could not parse a
//     schema (ours: REGISTRY_REJECTED; a writer schema: INCOMPATIBLE_SCHEMA).
//   ConfluentSchemaRegistryCompatibilityError: register() found the subject
//     at another compatibility level than the one asked for (see register).
//
// The library retries GETs itself (mappersmith's retry middleware); that is
// cut to one quick retry so that our backoff owns retrying. The subject-level
// compatibility endpoint (/config/{subject}: read, set) and deleting a
// subject (the demo's cleanup) are not in the library: those are direct
// fetch calls (`#direct`), classified the same way.
//
// Writer types by id are memoised as promises, so concurrent cache misses make
// one request; failures that may succeed later (an unknown id included) are
// not cached.

import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { COMPATIBILITY, SchemaRegistry as ConfluentSchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { CnerError } from '../errors.js';

export interface RegistryOptions {
  readonly url: string;
  readonly auth: { readonly username: string; readonly password: string } | null;
  /** Per request: connecting, and each wait for bytes of the answer (default 5 s). */
  readonly timeoutMs?: number;
}

/** The library's User-Agent comment and the prefix of its error messages. */
const CLIENT_ID = 'cner';
/** One quick retry of a GET (a reset connection); mappersmith's default is 3 with up to 5 s between. */
const LIBRARY_RETRY = { retries: 1, initialRetryTimeInSecs: 0.1, maxRetryTimeInSecs: 0.5 } as const;
const CONTENT_TYPE = 'application/vnd.schemaregistry.v1+json';
const MAX_REMEMBERED_FAILURES = 10_000;

/** One call into the library: the socket error of its last connection, if any. */
interface Attempt {
  socketError?: Error;
}
const attempts = new AsyncLocalStorage<Attempt>();

export class SchemaRegistry {
  readonly #base: string;
  readonly #authHeader: string | null;
  readonly #timeoutMs: number;
  readonly #library: ConfluentSchemaRegistry;
  readonly #byId = new Map<number, Promise<avro.Type>>();
  #rememberedFailures = 0;

  constructor(options: RegistryOptions) {
    this.#base = options.url.replace(/\/+$/, '');
    this.#authHeader = options.auth === null ? null : `Basic ${Buffer.from(`${options.auth.username}:${options.auth.password}`).toString('base64')}`;
    this.#timeoutMs = options.timeoutMs ?? 5_000;
    this.#library = new ConfluentSchemaRegistry({
      host: this.#base,
      clientId: CLIENT_ID,
      // (The library merges this into a module-wide default object: every instance gets the same values.)
      retry: { ...LIBRARY_RETRY },
      agent: observedAgent(this.#base, this.#timeoutMs),
      ...(options.auth === null ? {} : { auth: { username: options.auth.username, password: options.auth.password } }),
    });
  }

  /**
   * Registers `schema` (Avro) under `subject` and returns its id; an identical
   * schema keeps its id. A subject this creates gets BACKWARD compatibility
   * (the library sets it after the first registration).
   */
  async register(subject: string, schema: string): Promise<number> {
    const where = `POST /subjects/${subject}/versions`;
    const confluent = { type: SchemaType.AVRO, schema } as const;
    let level: string = COMPATIBILITY.BACKWARD;
    for (let attempt = 1; ; attempt++) {
      try {
        return idOf(await this.#call(where, () => this.#library.register(confluent, { subject, compatibility: level as COMPATIBILITY })), subject);
      } catch (e) {
        if (!(e instanceof CnerError)) throw e;
        if (e.context['error'] === 'ConfluentSchemaRegistryCompatibilityError' && attempt < 4) {
          // The subject exists at another level (NONE included) and the
          // library registers only when the level it is given matches: give
          // it the subject's own. (registerSchemas then turns NONE into
          // BACKWARD.) Processors starting together change the level between
          // our read and the library's (one of them sets it on the new
          // subject): then it is read again.
          level = (await this.#subjectLevel(subject)) ?? COMPATIBILITY.BACKWARD;
          continue;
        }
        if (e.context['method'] === 'PUT' && (e.context['status'] === 401 || e.context['status'] === 403 || e.context['status'] === 409)) {
          // Registered, but setting the new subject's level failed: refused
          // (registerSchemas tries again and only warns), or 409 because
          // another processor starting at the same time set it first
          // (Apicurio: "A rule named 'COMPATIBILITY' already exists"), which
          // is what we wanted.
          const id = await this.lookup(subject, schema);
          if (id !== null) return id;
        }
        throw e;
      }
    }
  }

  /** The id of `schema` if it is registered under `subject`, else null. */
  async lookup(subject: string, schema: string): Promise<number | null> {
    try {
      return idOf(await this.#call(`POST /subjects/${subject}`, () => this.#library.getRegistryIdBySchema(subject, { type: SchemaType.AVRO, schema })), subject);
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /** The id of the latest version under `subject`, or null when the subject has none. */
  async latestSchemaId(subject: string): Promise<number | null> {
    try {
      return idOf(await this.#call(`GET /subjects/${subject}/versions/latest`, () => this.#library.getLatestSchemaId(subject)), subject);
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /** The compatibility level that applies to `subject` (its own, else the global one). Direct: not in the library. */
  async compatibility(subject: string): Promise<string | null> {
    return levelOf(await this.#direct('GET', `/config/${encodeURIComponent(subject)}?defaultToGlobal=true`, undefined, 'null-if-missing'));
  }

  /**
   * Sets the subject's own compatibility level. Direct: the library sets it
   * only on a subject's first registration. A 409 means another processor
   * created the subject's rule between our read and our write (Apicurio):
   * then the level it set stands if it is the one asked for, else ours is
   * written over it.
   */
  async setCompatibility(subject: string, level: string): Promise<void> {
    const path = `/config/${encodeURIComponent(subject)}`;
    try {
      await this.#direct('PUT', path, { compatibility: level });
    } catch (e) {
      if (!(e instanceof CnerError) || e.context['status'] !== 409) throw e;
      if ((await this.#subjectLevel(subject)) === level.toUpperCase()) return;
      await this.#direct('PUT', path, { compatibility: level });
    }
  }

  /** Deletes a subject and its versions (soft, then permanent); a missing subject is fine. Direct: not in the library. */
  async deleteSubject(subject: string): Promise<void> {
    for (const suffix of ['', '?permanent=true']) await this.#direct('DELETE', `/subjects/${encodeURIComponent(subject)}${suffix}`, undefined, 'null-if-missing');
  }

  /**
   * The writer type of a schema id, as the library parsed it. Rejects with
   * UNKNOWN_SCHEMA for an id the registry does not know or a schema that is
   * not Avro, INCOMPATIBLE_SCHEMA for one that does not parse.
   *
   * Only what an id's (immutable) schema decides is remembered: the type, and
   * INCOMPATIBLE_SCHEMA. A 404 is not: the id may be registered a moment
   * later, or the registry may have answered 404 by mistake (restarting,
   * behind a proxy), and remembering it would dead-letter every later record
   * with that id. Concurrent lookups of one id still share one request.
   */
  writerType(id: number): Promise<avro.Type> {
    let pending = this.#byId.get(id);
    if (pending === undefined) {
      pending = this.#fetchType(id);
      this.#byId.set(id, pending);
      pending.catch((e: unknown) => {
        const permanent = e instanceof CnerError && e.code === 'INCOMPATIBLE_SCHEMA' && this.#rememberedFailures++ < MAX_REMEMBERED_FAILURES;
        if (!permanent) this.#byId.delete(id);
      });
    }
    return pending;
  }

  async #fetchType(id: number): Promise<avro.Type> {
    let schema: unknown;
    try {
      schema = await this.#call(`GET /schemas/ids/${id}`, () => this.#library.getSchema(id));
    } catch (e) {
      if (isNotFound(e)) throw new CnerError('UNKNOWN_SCHEMA', `schema id ${id} is not in the registry`, { context: { schemaId: id } });
      if (e instanceof CnerError && e.context['error'] === 'ConfluentSchemaRegistryArgumentError') {
        throw new CnerError('INCOMPATIBLE_SCHEMA', `schema id ${id} is not a valid schema (${e.message})`, { context: { schemaId: id } });
      }
      throw e;
    }
    if (!avro.Type.isType(schema)) throw new CnerError('UNKNOWN_SCHEMA', `schema id ${id} is not an Avro schema`, { context: { schemaId: id } });
    return schema as avro.Type;
  }

  /** The subject's own level (what the library compares with), or null. */
  async #subjectLevel(subject: string): Promise<string | null> {
    return levelOf(await this.#direct('GET', `/config/${encodeURIComponent(subject)}`, undefined, 'null-if-missing'));
  }

  /** Runs one library call, noting its socket errors, and maps what it throws to a CnerError. */
  async #call<T>(where: string, fn: () => Promise<T>): Promise<T> {
    const attempt: Attempt = {};
    try {
      return await attempts.run(attempt, fn);
    } catch (e) {
      throw this.#fromLibrary(e, where, attempt);
    }
  }

  #fromLibrary(e: unknown, where: string, attempt: Attempt): unknown {
    if (e instanceof CnerError || !(e instanceof Error)) return e;
    const context = { registry: this.#base, error: e.name };
    switch (e.name) {
      case 'ResponseError': {
        const { status, url } = e as Error & { status?: unknown; url?: unknown };
        if (typeof status !== 'number') break;
        // mappersmith's status for "no HTTP answer"; the socket error says why.
        if (status === 400 && attempt.socketError !== undefined) return unavailable(where, attempt.socketError, this.#base);
        // `url` is "<method> <url>": the library's request that failed (register makes three).
        const method = typeof url === 'string' ? url.split(' ', 1)[0]!.toUpperCase() : undefined;
        return fromStatus(status, where, libraryDetail(e.message), { ...context, ...(method === undefined ? {} : { method }) });
      }
      case 'ConfluentSchemaRegistryError':
        // Only getRegistryIdBySchema throws the base class, for a 404 (its status dropped).
        return new CnerError('REGISTRY_REJECTED', `schema registry has no match for ${where} (404)`, { cause: e, context: { ...context, status: 404 } });
      case 'ConfluentSchemaRegistryArgumentError':
        return new CnerError('REGISTRY_REJECTED', `schema rejected before ${where}: ${e.message.slice(0, 300)}`, { cause: e, context });
      case 'ConfluentSchemaRegistryCompatibilityError':
        return new CnerError('REGISTRY_REJECTED', `${where}: the subject's compatibility level changed while registering; set it in the registry`, { cause: e, context });
    }
    return e; // a bug (TypeError ...): INTERNAL, not retried
  }

  /** The few calls the library does not offer, over fetch. `null-if-missing`: a 404 gives null. */
  async #direct(method: 'GET' | 'PUT' | 'DELETE', path: string, json?: unknown, missing?: 'null-if-missing'): Promise<unknown> {
    const headers: Record<string, string> = { accept: `${CONTENT_TYPE}, application/json` };
    if (json !== undefined) headers['content-type'] = CONTENT_TYPE;
    if (this.#authHeader !== null) headers['authorization'] = this.#authHeader;
    const where = `${method} ${path}`;
    let res: Response;
    try {
      res = await fetch(`${this.#base}${path}`, {
        method,
        headers,
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      // fetch rejects only without an answer: TypeError with the socket error as `cause`, or TimeoutError.
      const cause = (e as { cause?: unknown }).cause;
      throw unavailable(where, cause instanceof Error ? cause : e, this.#base);
    }
    const text = await res.text().catch(() => '');
    if (res.status === 404 && missing === 'null-if-missing') return null;
    if (!res.ok) throw fromStatus(res.status, where, registryDetail(text), { registry: this.#base });
    try {
      return text === '' ? null : (JSON.parse(text) as unknown);
    } catch {
      throw new CnerError('REGISTRY_UNAVAILABLE', `schema registry answered ${where} with invalid JSON`, { context: { status: res.status } });
    }
  }
}

/**
 * An agent that connects afresh for every request (no keep-alive: a socket
 * belongs to one call) and records the socket's error, including our timeout,
 * in the calling library call's context.
 */
function observedAgent(base: string, timeoutMs: number): http.Agent {
  const agent = new URL(base).protocol === 'https:' ? new https.Agent({ keepAlive: false }) : new http.Agent({ keepAlive: false });
  const connect: typeof agent.createConnection = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const socket = connect(options, callback);
    const attempt = attempts.getStore();
    if (socket instanceof net.Socket) {
      if (attempt !== undefined) delete attempt.socketError; // a retry starts clean
      socket.setTimeout(timeoutMs, () => socket.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { name: 'TimeoutError', code: 'ETIMEDOUT' })));
      socket.once('error', (e) => {
        if (attempt !== undefined) attempt.socketError = e;
      });
    }
    return socket;
  };
  return agent;
}

function unavailable(where: string, error: unknown, registry: string): CnerError {
  const code = (error as { code?: unknown } | null)?.code;
  const reason = typeof code === 'string' ? code : error instanceof Error ? error.name : 'error';
  return new CnerError('REGISTRY_UNAVAILABLE', `schema registry did not answer ${where} (${reason})`, { cause: error, context: { registry } });
}

function fromStatus(status: number, where: string, detail: string, context: Record<string, unknown>): CnerError {
  const ctx = { ...context, status };
  if (status >= 500 || status === 408 || status === 429) {
    return new CnerError('REGISTRY_UNAVAILABLE', `schema registry answered ${where} with ${status}${detail}`, { context: ctx });
  }
  if (status === 401 || status === 403) {
    return new CnerError('REGISTRY_REJECTED', `schema registry refused ${where} (${status}): check SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD`, { context: ctx });
  }
  if (status === 409) {
    return new CnerError('REGISTRY_REJECTED', `schema registry refused ${where} as incompatible with the registered versions (409)${detail}; evolve the schema compatibly (new fields need defaults)`, {
      context: ctx,
    });
  }
  return new CnerError('REGISTRY_REJECTED', `schema registry refused ${where} (${status})${detail}`, { context: ctx });
}

const isNotFound = (e: unknown): boolean => e instanceof CnerError && e.context['status'] === 404;

function idOf(body: unknown, subject: string): number {
  const id = typeof body === 'number' ? body : (body as { id?: unknown } | null)?.id;
  if (typeof id !== 'number' || !Number.isInteger(id)) throw new CnerError('REGISTRY_UNAVAILABLE', `schema registry answered for ${subject} without an id`);
  return id;
}

function levelOf(body: unknown): string | null {
  const level = (body as { compatibilityLevel?: unknown; compatibility?: unknown } | null) ?? {};
  const value = level.compatibilityLevel ?? level.compatibility;
  return typeof value === 'string' ? value.toUpperCase() : null;
}

/** The registry's message from a ResponseError ("<clientId> - <message>"). */
function libraryDetail(message: string): string {
  const prefix = `${CLIENT_ID} - `;
  return message.startsWith(prefix) ? `: ${message.slice(prefix.length, prefix.length + 300)}` : '';
}

function registryDetail(text: string): string {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    return typeof message === 'string' ? `: ${message.slice(0, 300)}` : '';
  } catch {
    return '';
  }
}
