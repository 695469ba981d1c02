import assert from 'node:assert/strict';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import avro from 'avsc';
import { SchemaRegistry } from '../../src/records/registry.js';
import { CnerError } from '../../src/errors.js';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly auth: string | undefined;
  readonly contentType: string | undefined;
  readonly userAgent: string | undefined;
  readonly body: string;
}

interface Answer {
  readonly status: number;
  readonly body?: unknown;
  readonly delayMs?: number;
}

const NOT_FOUND: Answer = { status: 404, body: { error_code: 40401, message: 'not found' } };

/** A registry stand-in; the tests answer per request ("METHOD /path" without the base path). */
function fakeRegistry() {
  const seen: Seen[] = [];
  let handler: (route: string, req: Seen) => Answer = () => NOT_FOUND;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const s: Seen = { method: req.method!, url: req.url!, auth: req.headers.authorization, contentType: req.headers['content-type'], userAgent: req.headers['user-agent'], body };
      seen.push(s);
      const answer = handler(`${s.method} ${s.url.replace('/apis/ccompat/v7', '')}`, s);
      setTimeout(() => {
        res.writeHead(answer.status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
        res.end(answer.body === undefined ? '' : typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body));
      }, answer.delayMs ?? 0);
    });
  });
  return {
    seen,
    server,
    answer: (h: typeof handler) => (handler = h),
    routes: () => seen.map((s) => `${s.method} ${s.url.replace('/apis/ccompat/v7', '')}`),
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}/apis/ccompat/v7`,
  };
}

const code = (c: string) => (e: unknown) => e instanceof CnerError && e.code === c;
const RECORD = JSON.stringify({ type: 'record', name: 'R', namespace: 't', fields: [{ name: 'a', type: 'int' }] });

describe('SchemaRegistry (on @kafkajs/confluent-schema-registry)', () => {
  const fake = fakeRegistry();
  before(() => new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r)));
  beforeEach(() => void fake.seen.splice(0));
  after(() => {
    fake.server.closeAllConnections();
    return new Promise<void>((r) => fake.server.close(() => r()));
  });

  it('registers under the subject with basic auth, and sets BACKWARD on a subject it creates', async () => {
    fake.answer((route) => (route === 'POST /subjects/emr.records.entities-value/versions' ? { status: 200, body: { id: 11 } } : route.startsWith('PUT ') ? { status: 200, body: { compatibility: 'BACKWARD' } } : NOT_FOUND));
    const registry = new SchemaRegistry({ url: `${fake.url()}/`, auth: { username: 'u', password: 'p w' } });
    assert.equal(await registry.register('emr.records.entities-value', RECORD), 11);
    assert.deepEqual(fake.routes(), ['GET /config/emr.records.entities-value', 'POST /subjects/emr.records.entities-value/versions', 'PUT /config/emr.records.entities-value']);
    for (const req of fake.seen) assert.equal(req.auth, `Basic ${Buffer.from('u:p w').toString('base64')}`);
    const post = fake.seen[1]!;
    assert.equal(post.contentType, 'application/vnd.schemaregistry.v1+json');
    assert.deepEqual(JSON.parse(post.body), { schema: RECORD });
    assert.match(post.userAgent ?? '', /@kafkajs\/confluent-schema-registry \(cner\)/);
    assert.deepEqual(JSON.parse(fake.seen[2]!.body), { compatibility: 'BACKWARD' });
  });

  it('keeps the level of an existing subject (the library insists they match)', async () => {
    fake.answer((route) => (route === 'GET /config/s' ? { status: 200, body: { compatibilityLevel: 'FULL' } } : route === 'POST /subjects/s/versions' ? { status: 200, body: { id: 4 } } : NOT_FOUND));
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    assert.equal(await registry.register('s', RECORD), 4);
    assert.ok(!fake.routes().some((r) => r.startsWith('PUT ')), 'level not changed');
  });

  it('returns the id when registering worked but setting the new subject\'s level was refused', async () => {
    fake.answer((route) =>
      route === 'POST /subjects/s/versions' ? { status: 200, body: { id: 6 } } : route === 'POST /subjects/s' ? { status: 200, body: { id: 6, version: 1, subject: 's' } } : route.startsWith('PUT ') ? { status: 403, body: { message: 'no' } } : NOT_FOUND,
    );
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    assert.equal(await registry.register('s', RECORD), 6);
  });

  it('looks schemas and latest ids up; 404 means none', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    fake.answer(() => ({ status: 200, body: { id: 3, version: 1, subject: 's', schema: RECORD } }));
    assert.equal(await registry.lookup('s', RECORD), 3);
    assert.equal(await registry.latestSchemaId('s'), 3);
    assert.deepEqual(fake.routes(), ['POST /subjects/s', 'GET /subjects/s/versions/latest']);
    fake.answer(() => ({ status: 404, body: { error_code: 40403, message: 'Schema not found' } }));
    assert.equal(await registry.lookup('s', RECORD), null);
    assert.equal(await registry.latestSchemaId('s'), null);
  });

  it('reads and sets subject compatibility, deletes subjects (direct calls)', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: { username: 'u', password: 'p' } });
    fake.answer(() => ({ status: 200, body: { compatibilityLevel: 'backward' } }));
    assert.equal(await registry.compatibility('a b'), 'BACKWARD');
    await registry.setCompatibility('a b', 'BACKWARD');
    assert.deepEqual(fake.routes(), ['GET /config/a%20b?defaultToGlobal=true', 'PUT /config/a%20b']);
    assert.deepEqual(JSON.parse(fake.seen[1]!.body), { compatibility: 'BACKWARD' });
    assert.equal(fake.seen[1]!.auth, `Basic ${Buffer.from('u:p').toString('base64')}`);
    fake.answer(() => NOT_FOUND);
    assert.equal(await registry.compatibility('s'), null);
    await registry.deleteSubject('s');
  });

  it('memoises writer types by id: concurrent misses make one request', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    fake.answer(() => ({ status: 200, body: { schema: RECORD }, delayMs: 20 }));
    const all = await Promise.all([registry.writerType(5), registry.writerType(5), registry.writerType(5)]);
    assert.ok(avro.Type.isType(all[0]));
    assert.equal(all[0].name, 't.R');
    assert.ok(all.every((t) => t === all[0]));
    assert.equal(await registry.writerType(5), all[0]);
    assert.deepEqual(fake.routes(), ['GET /schemas/ids/5']);
  });

  it('UNKNOWN_SCHEMA for an unknown id (asked again next time: a 404 may pass) or a schema that is not Avro; INCOMPATIBLE_SCHEMA for one that does not parse (remembered)', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    fake.answer(() => ({ status: 404, body: { error_code: 40403, message: 'No content with ID 9' } }));
    await assert.rejects(registry.writerType(9), code('UNKNOWN_SCHEMA'));
    fake.answer(() => ({ status: 200, body: { schema: RECORD } }));
    const type = await registry.writerType(9);
    assert.equal(type.name, 't.R', 'the id registered after the first 404 is found');
    fake.answer(() => ({ status: 200, body: { schema: '{"type":"object"}', schemaType: 'JSON' } }));
    await assert.rejects(registry.writerType(10), code('UNKNOWN_SCHEMA'));
    fake.answer(() => ({ status: 200, body: { schema: '{"type":"recxord"}' } }));
    await assert.rejects(registry.writerType(11), code('INCOMPATIBLE_SCHEMA'));
    const n = fake.seen.length;
    await assert.rejects(registry.writerType(11), code('INCOMPATIBLE_SCHEMA'));
    assert.equal(fake.seen.length, n, 'an unparsable schema is not asked for again (ids are immutable)');
  });

  it('a 409 on setting a new subject\'s level (another processor set it first) is success', async () => {
    fake.answer((route) =>
      route === 'POST /subjects/s/versions'
        ? { status: 200, body: { id: 6 } }
        : route === 'POST /subjects/s'
          ? { status: 200, body: { id: 6, version: 1, subject: 's' } }
          : route === 'PUT /config/s'
            ? { status: 409, body: { error_code: 409, message: "A rule named 'COMPATIBILITY' already exists." } }
            : route === 'GET /config/s'
              ? { status: 200, body: { compatibilityLevel: 'BACKWARD' } }
              : NOT_FOUND,
    );
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    await registry.setCompatibility('s', 'BACKWARD');
    assert.deepEqual(fake.routes(), ['PUT /config/s', 'GET /config/s']);
  });

  it('REGISTRY_UNAVAILABLE for 5xx, 429 and timeouts, not cached; REGISTRY_REJECTED for 400/401/409/422', async () => {
    // A generous timeout for the answers (a loaded CI machine must not turn a 503 into a timeout), a short one for the timeout case.
    const registry = new SchemaRegistry({ url: fake.url(), auth: null, timeoutMs: 5_000 });
    const impatient = new SchemaRegistry({ url: fake.url(), auth: null, timeoutMs: 50 });
    fake.answer(() => ({ status: 503, body: { message: 'maintenance' } }));
    await assert.rejects(registry.writerType(20), code('REGISTRY_UNAVAILABLE'));
    assert.equal(fake.seen.length, 2, 'the library retries a GET once, no more');
    fake.answer(() => ({ status: 200, body: { schema: RECORD } }));
    assert.equal((await registry.writerType(20)).name, 't.R', 'a failed lookup is tried again');

    const post = (a: Answer) => fake.answer((route) => (route === 'POST /subjects/s/versions' ? a : NOT_FOUND));
    post({ status: 429 });
    await assert.rejects(registry.register('s', RECORD), code('REGISTRY_UNAVAILABLE'));
    post({ status: 200, body: { id: 1 }, delayMs: 1_000 });
    await assert.rejects(impatient.register('s', RECORD), (e: unknown) => code('REGISTRY_UNAVAILABLE')(e) && /ETIMEDOUT/.test((e as Error).message));
    post({ status: 401, body: { message: 'Unauthorized' } });
    await assert.rejects(registry.register('s', RECORD), (e: unknown) => code('REGISTRY_REJECTED')(e) && /SCHEMA_REGISTRY_USERNAME/.test((e as Error).message));
    post({ status: 409, body: { message: 'Incompatible artifact' } });
    await assert.rejects(registry.register('s', RECORD), (e: unknown) => code('REGISTRY_REJECTED')(e) && /incompatible.*Incompatible artifact/.test((e as Error).message));
    post({ status: 422, body: { error_code: 42201, message: 'Invalid schema' } });
    await assert.rejects(registry.register('s', RECORD), (e: unknown) => code('REGISTRY_REJECTED')(e) && (e as CnerError).context['status'] === 422);
    // A real 400 answer is the registry's word, not "no answer" (mappersmith's status for that is 400 too).
    post({ status: 400, body: 'Not able to deserialize data provided.' });
    await assert.rejects(registry.register('s', RECORD), (e: unknown) => code('REGISTRY_REJECTED')(e) && (e as CnerError).context['status'] === 400);
    await assert.rejects(registry.register('s', '"string"'), code('REGISTRY_REJECTED'), 'not a record schema: refused by the library');
  });

  it('REGISTRY_UNAVAILABLE when nothing listens (the library reports it as status 400)', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const registry = new SchemaRegistry({ url: `http://127.0.0.1:${port}`, auth: null, timeoutMs: 1_000 });
    const refused = (e: unknown) => code('REGISTRY_UNAVAILABLE')(e) && /ECONNREFUSED/.test((e as Error).message);
    await assert.rejects(registry.writerType(1), refused);
    await assert.rejects(registry.register('s', RECORD), refused);
    await assert.rejects(registry.lookup('s', RECORD), refused);
    await assert.rejects(registry.latestSchemaId('s'), refused);
    await assert.rejects(registry.compatibility('s'), refused);
  });
});
