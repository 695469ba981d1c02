import assert from 'node:assert/strict';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SchemaRegistry } from '../../src/consumers/registry.js';
import { StreamError } from '../../src/errors.js';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly auth: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
}

/** A registry stand-in whose answers the tests set per path. */
function fakeRegistry() {
  const seen: Seen[] = [];
  let handler: (req: Seen) => { status: number; body?: unknown; delayMs?: number } = () => ({ status: 404, body: { error_code: 40401, message: 'not found' } });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const s: Seen = { method: req.method!, url: req.url!, auth: req.headers.authorization, contentType: req.headers['content-type'], body };
      seen.push(s);
      const answer = handler(s);
      setTimeout(() => {
        res.writeHead(answer.status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
        res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      }, answer.delayMs ?? 0);
    });
  });
  return {
    seen,
    server,
    answer: (h: typeof handler) => (handler = h),
    url: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}/apis/ccompat/v7`,
  };
}

const code = (c: string) => (e: unknown) => e instanceof StreamError && e.code === c;

describe('SchemaRegistry', () => {
  const fake = fakeRegistry();
  before(() => new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r)));
  after(() => {
    fake.server.closeAllConnections();
    return new Promise<void>((r) => fake.server.close(() => r()));
  });

  it('registers under a subject with basic auth and the registry content type', async () => {
    fake.answer(() => ({ status: 200, body: { id: 11 } }));
    const registry = new SchemaRegistry({ url: `${fake.url()}/`, auth: { username: 'u', password: 'p w' } });
    assert.equal(await registry.register('emr.records.entities-value', '{"type":"string"}'), 11);
    const req = fake.seen.at(-1)!;
    assert.equal(req.method, 'POST');
    assert.equal(req.url, '/apis/ccompat/v7/subjects/emr.records.entities-value/versions');
    assert.equal(req.auth, `Basic ${Buffer.from('u:p w').toString('base64')}`);
    assert.equal(req.contentType, 'application/vnd.schemaregistry.v1+json');
    assert.deepEqual(JSON.parse(req.body), { schema: '{"type":"string"}', schemaType: 'AVRO' });
  });

  it('looks schemas up; 404 means not registered', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    fake.answer(() => ({ status: 200, body: { id: 3, version: 1, subject: 's' } }));
    assert.equal(await registry.lookup('s', '"string"'), 3);
    fake.answer(() => ({ status: 404, body: { error_code: 40403, message: 'Schema not found' } }));
    assert.equal(await registry.lookup('s', '"string"'), null);
    assert.deepEqual(await registry.versions('s'), []);
    fake.answer(() => ({ status: 200, body: [1, 2] }));
    assert.deepEqual(await registry.versions('s'), [1, 2]);
  });

  it('memoises schema lookups by id: concurrent misses make one request', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    const before = fake.seen.length;
    fake.answer(() => ({ status: 200, body: { schema: '"string"' }, delayMs: 20 }));
    const all = await Promise.all([registry.schemaById(5), registry.schemaById(5), registry.schemaById(5)]);
    assert.deepEqual(all, ['"string"', '"string"', '"string"']);
    assert.equal(await registry.schemaById(5), '"string"');
    assert.equal(fake.seen.length - before, 1);
  });

  it('maps a 404 for an id to UNKNOWN_SCHEMA (remembered) and a non-Avro schema likewise', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null });
    fake.answer(() => ({ status: 404, body: { error_code: 40403, message: 'No content with ID 9' } }));
    await assert.rejects(registry.schemaById(9), code('UNKNOWN_SCHEMA'));
    const n = fake.seen.length;
    await assert.rejects(registry.schemaById(9), code('UNKNOWN_SCHEMA'));
    assert.equal(fake.seen.length, n, 'not asked again');
    fake.answer(() => ({ status: 200, body: { schema: 'syntax = "proto3";', schemaType: 'PROTOBUF' } }));
    await assert.rejects(registry.schemaById(10), code('UNKNOWN_SCHEMA'));
  });

  it('REGISTRY_UNAVAILABLE for 5xx, 429 and timeouts, not cached; REGISTRY_REJECTED for 401/409', async () => {
    const registry = new SchemaRegistry({ url: fake.url(), auth: null, timeoutMs: 50 });
    fake.answer(() => ({ status: 503, body: { message: 'maintenance' } }));
    await assert.rejects(registry.schemaById(20), code('REGISTRY_UNAVAILABLE'));
    fake.answer(() => ({ status: 200, body: { schema: '"int"' } }));
    assert.equal(await registry.schemaById(20), '"int"', 'a failed lookup is tried again');
    fake.answer(() => ({ status: 429 }));
    await assert.rejects(registry.register('s', '"int"'), code('REGISTRY_UNAVAILABLE'));
    fake.answer(() => ({ status: 200, body: { id: 1 }, delayMs: 200 }));
    await assert.rejects(registry.register('s', '"int"'), code('REGISTRY_UNAVAILABLE'));
    fake.answer(() => ({ status: 401, body: { message: 'Unauthorized' } }));
    await assert.rejects(registry.register('s', '"int"'), (e: unknown) => code('REGISTRY_REJECTED')(e) && /SCHEMA_REGISTRY_USERNAME/.test((e as Error).message));
    fake.answer(() => ({ status: 409, body: { message: 'Incompatible artifact' } }));
    await assert.rejects(registry.register('s', '"int"'), (e: unknown) => code('REGISTRY_REJECTED')(e) && /incompatible.*Incompatible artifact/.test((e as Error).message));
  });

  it('REGISTRY_UNAVAILABLE when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const registry = new SchemaRegistry({ url: `http://127.0.0.1:${port}`, auth: null, timeoutMs: 1_000 });
    await assert.rejects(registry.schemaById(1), (e: unknown) => code('REGISTRY_UNAVAILABLE')(e) && /ECONNREFUSED/.test((e as Error).message));
  });
});
