// Kafka TLS and SASL, and registry basic auth, against the real services:
// `cner serve`, configured only through its environment variables, tags a
// record through each secured listener of the local stack (scripts/stack.sh:
// SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; SASL_SSL with
// the stack's test CA). A wrong password and a wrong CA fail clearly, and no
// password ever reaches the logs (the processes log at debug level).
//
// Apicurio Registry 3 has no basic auth of its own (its "basic" credentials
// are exchanged for a token at an OIDC server), so the registry sits behind a
// small proxy in this test that demands basic auth and forwards to Apicurio.
//
// The records are produced and read on the plaintext listener; only the
// processor uses the secured ones.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { loadSchema, unframe } from '../../src/records/avro.js';
import { ROOT, type ServeProcess, type Services, freePort, getServices, httpGet, jsonRecord, runEnv, spawnServe, testRun, tools, waitFor } from './helpers.js';

/** The secured listeners and the test-only user of the local stack (`scripts/stack.sh env-secure`). */
interface SecureListeners {
  readonly saslBrokers: string;
  readonly sslBrokers: string;
  readonly caFile: string;
  readonly username: string;
  readonly password: string;
}

const UNTRUSTED_CA = path.join(ROOT, 'test', 'integration', 'fixtures', 'untrusted-ca.pem');

/** The stack's secured listeners, or why the tests are skipped (a broker that is not the local stack's has none we know of). */
async function secureListeners(brokers: string): Promise<SecureListeners | string> {
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)('bash', [path.join(ROOT, 'scripts', 'stack.sh'), 'env-secure'], { timeout: 15_000 }));
  } catch (e) {
    const why = ((e as { stderr?: string }).stderr ?? String(e)).trim().split('\n').pop();
    return `security tests skipped: no secured listeners from scripts/stack.sh env-secure (${why})`;
  }
  const vars = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^export (CNER_STACK_[A-Z_]+)=(.*)$/.exec(line);
    if (m) vars.set(m[1]!, m[2]!);
  }
  const get = (name: string): string => {
    const v = vars.get(name);
    assert.ok(v, `scripts/stack.sh env-secure prints ${name}`);
    return v;
  };
  if (get('CNER_STACK_PLAINTEXT_BROKERS') !== brokers) {
    return `security tests skipped: KAFKA_BROKERS=${brokers} is not the local stack's broker (${get('CNER_STACK_PLAINTEXT_BROKERS')})`;
  }
  return {
    saslBrokers: get('CNER_STACK_SASL_BROKERS'),
    sslBrokers: get('CNER_STACK_SSL_BROKERS'),
    caFile: get('CNER_STACK_SSL_CA_FILE'),
    username: get('CNER_STACK_SASL_USERNAME'),
    password: get('CNER_STACK_SASL_PASSWORD'),
  };
}

const services = await getServices();
const secure = typeof services === 'string' ? services : await secureListeners(services.brokers);
const skip = typeof secure === 'string' ? secure : false;

describe('Kafka TLS/SASL and registry basic auth', { skip, timeout: 420_000 }, () => {
  const s = services as Services;
  const sec = secure as SecureListeners;
  const kafka = typeof secure === 'string' ? null : tools(s.brokers);
  const topics: string[] = [];
  const registryUser = 'cner-registry-test';
  const registryPassword = `registry-test-only-${Math.random().toString(36).slice(2, 12)}`;
  let registry: AuthProxy | null = null;

  before(async () => {
    registry = await AuthProxy.start(new URL(s.registryUrl), registryUser, registryPassword);
  });
  after(async () => {
    await registry?.close();
    if (topics.length > 0) await kafka?.deleteTopics(topics).catch(() => {});
  });

  /** Environment of a `cner serve` with its own topics, group and HTTP port. */
  async function serveEnv(label: string, env: Record<string, string>): Promise<{ env: Record<string, string>; input: string; output: string; port: number }> {
    const names = testRun(`it.sec.${label}`);
    const { input, output } = names;
    topics.push(input, output, names.dlt);
    const port = await freePort();
    return { input, output, port, env: runEnv(s, names, { KAFKA_TOPIC_PARTITIONS: '1', CNER_HTTP_PORT: String(port), CNER_LOG_LEVEL: 'debug', ...env }) };
  }

  /** Fails at once, with the process's last output, when it exits before `promise` settles. */
  async function whileRunning<T>(serve: ServeProcess, promise: Promise<T>): Promise<T> {
    const exited = serve.exited.then(({ code, signal }) => {
      throw new Error(`cner serve exited (code ${code}, signal ${signal}):\n${serve.output().slice(-3000)}`);
    });
    exited.catch(() => {});
    return Promise.race([promise, exited]);
  }

  /** Waits (bounded) for a process that must give up by itself, polling /readyz meanwhile. */
  async function untilExit(serve: ServeProcess, port: number, timeoutMs: number): Promise<{ exited: { code: number | null }; everReady: boolean }> {
    let everReady = false;
    let done = false;
    const deadline = Date.now() + timeoutMs;
    const poll = (async () => {
      while (!done && Date.now() < deadline) {
        everReady ||= await httpGet(port, '/readyz').then((r) => r.status === 200, () => false);
        await new Promise((r) => setTimeout(r, 300));
      }
      if (!done) throw new Error(`cner serve did not exit within ${timeoutMs} ms:\n${serve.output().slice(-3000)}`);
    })();
    try {
      const exited = await Promise.race([serve.exited, poll.then(() => serve.exited)]);
      return { exited, everReady };
    } finally {
      done = true;
    }
  }

  function assertNoSecrets(output: string, secrets: readonly string[]): void {
    for (const secret of secrets) {
      assert.ok(!output.includes(secret), `the logs contain a secret (${secret.slice(0, 4)}…)`);
    }
  }

  /** Starts `cner serve` with `env`, tags one record end to end, stops it; returns its output. */
  async function tagsOneRecord(label: string, env: Record<string, string>): Promise<string> {
    const { env: full, input, output, port } = await serveEnv(label, env);
    const serve = spawnServe(full);
    try {
      await whileRunning(serve, waitFor(`${label}: /readyz 200`, 90_000, async () => (await httpGet(port, '/readyz')).status === 200, 500));
      const key = `${label}-1`;
      await kafka!.produce(input, [{ key: Buffer.from(key), value: jsonRecord(key, '患者有高血压病史，口服氨氯地平。'), headers: {} }]);
      const events = await whileRunning(serve, kafka!.collect(output, { timeoutMs: 60_000, until: (m) => m.length >= 1 }));
      assert.equal(events.length, 1, `${label}: one ClinicalEntities event`);
      const event = loadSchema('ClinicalEntities').type.fromBuffer(unframe(events[0]!.value!)!.payload) as { recordId: string };
      assert.equal(event.recordId, key);
      assert.equal(events[0]!.key?.toString(), key);
      serve.child.kill('SIGTERM');
      const { code } = await serve.exited;
      assert.equal(code, 0, `${label}: exits 0 on SIGTERM`);
      assertNoSecrets(serve.output(), [sec.password, registryPassword]);
      return serve.output();
    } finally {
      serve.child.kill('SIGKILL');
    }
  }

  const sasl = (mechanism: string, password = sec.password): Record<string, string> => ({
    KAFKA_SASL_MECHANISM: mechanism,
    KAFKA_SASL_USERNAME: sec.username,
    KAFKA_SASL_PASSWORD: password,
  });

  it('SASL PLAIN over SASL_PLAINTEXT', async () => {
    await tagsOneRecord('plain', { KAFKA_BROKERS: sec.saslBrokers, ...sasl('plain') });
  });

  it('SASL SCRAM-SHA-256 over SASL_PLAINTEXT', async () => {
    await tagsOneRecord('scram256', { KAFKA_BROKERS: sec.saslBrokers, ...sasl('scram-sha-256') });
  });

  it('SASL SCRAM-SHA-512 over SASL_PLAINTEXT', async () => {
    await tagsOneRecord('scram512', { KAFKA_BROKERS: sec.saslBrokers, ...sasl('scram-sha-512') });
  });

  it('SCRAM-SHA-512 over TLS, verified with the CA file, and a registry that demands basic auth', async () => {
    const start = registry!.counts();
    await tagsOneRecord('tls', {
      KAFKA_BROKERS: sec.sslBrokers,
      KAFKA_SSL: 'true',
      KAFKA_SSL_CA_FILE: sec.caFile,
      ...sasl('scram-sha-512'),
      SCHEMA_REGISTRY_URL: registry!.url,
      SCHEMA_REGISTRY_USERNAME: registryUser,
      SCHEMA_REGISTRY_PASSWORD: registryPassword,
    });
    const now = registry!.counts();
    assert.ok(now.authorized > start.authorized, 'the registry calls went through the basic-auth proxy');
    assert.equal(now.refused, start.refused, 'every registry call carried the right Authorization header');
  });

  it('a wrong SASL password: never ready, KAFKA_NOT_AUTHORIZED logged, no password in the logs', async () => {
    const wrong = `wrong-test-only-${Math.random().toString(36).slice(2, 12)}`;
    const { env, port } = await serveEnv('badpw', { KAFKA_BROKERS: sec.saslBrokers, ...sasl('scram-sha-512', wrong) });
    const serve = spawnServe(env);
    try {
      const { exited, everReady } = await untilExit(serve, port, 60_000);
      assert.equal(everReady, false, 'never ready');
      assert.notEqual(exited.code, 0, 'exits with a failure status');
      const output = serve.output();
      assert.match(output, /"code":"KAFKA_NOT_AUTHORIZED"/);
      assert.match(output, /authentication failed/i);
      assertNoSecrets(output, [wrong, sec.password]);
    } finally {
      serve.child.kill('SIGKILL');
    }
  });

  it('TLS with a CA that did not sign the broker certificate fails certificate verification', async () => {
    const { env, port } = await serveEnv('badca', {
      KAFKA_BROKERS: sec.sslBrokers,
      KAFKA_SSL: 'true',
      KAFKA_SSL_CA_FILE: UNTRUSTED_CA,
      ...sasl('scram-sha-512'),
    });
    const serve = spawnServe(env);
    try {
      // Reported (not at debug level) as Kafka being unavailable because of the certificate; retried, not fatal.
      const certificateError = /self[- ]signed certificate|unable to (verify|get local issuer)/;
      const line = await whileRunning(
        serve,
        waitFor('"Kafka unavailable" with the certificate error in the logs', 60_000, () => serve.output().split('\n').find((l) => l.includes('Kafka unavailable') && certificateError.test(l)), 300),
      );
      assert.doesNotMatch(line, /"level":"(debug|trace)"/);
      assert.equal((await httpGet(port, '/readyz')).status, 503, 'not ready');
      serve.child.kill('SIGTERM');
      assert.equal((await serve.exited).code, 0);
      assertNoSecrets(serve.output(), [sec.password]);
    } finally {
      serve.child.kill('SIGKILL');
    }
  });

  it('a wrong registry password: REGISTRY_REJECTED logged, never ready, no password in the logs', async () => {
    const wrong = `wrong-registry-test-only-${Math.random().toString(36).slice(2, 12)}`;
    const start = registry!.counts();
    const { env, port } = await serveEnv('badreg', {
      KAFKA_BROKERS: s.brokers,
      SCHEMA_REGISTRY_URL: registry!.url,
      SCHEMA_REGISTRY_USERNAME: registryUser,
      SCHEMA_REGISTRY_PASSWORD: wrong,
    });
    const serve = spawnServe(env);
    try {
      const { exited, everReady } = await untilExit(serve, port, 60_000);
      assert.equal(everReady, false, 'never ready');
      assert.notEqual(exited.code, 0, 'exits with a failure status');
      assert.ok(registry!.counts().refused > start.refused, 'the proxy refused the wrong credentials');
      const output = serve.output();
      assert.match(output, /"code":"REGISTRY_REJECTED"/);
      assertNoSecrets(output, [wrong, registryPassword, Buffer.from(`${registryUser}:${wrong}`).toString('base64')]);
    } finally {
      serve.child.kill('SIGKILL');
    }
  });
});

/**
 * An HTTP proxy in front of the registry that answers 401 unless the request
 * carries `Authorization: Basic <user:password>`, and forwards the rest.
 */
class AuthProxy {
  readonly url: string;
  readonly #server: Server;
  readonly #counts = { authorized: 0, refused: 0 };

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(upstream: URL, username: string, password: string): Promise<AuthProxy> {
    const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    let proxy: AuthProxy | null = null;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.headers.authorization !== expected) {
        proxy!.#counts.refused++;
        req.resume();
        res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"', 'content-type': 'application/json' });
        res.end(JSON.stringify({ error_code: 401, message: 'Unauthorized' }));
        return;
      }
      proxy!.#counts.authorized++;
      const headers = { ...req.headers, host: upstream.host };
      delete headers.authorization;
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      forward.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      req.pipe(forward);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    proxy = new AuthProxy(server, `http://127.0.0.1:${port}${upstream.pathname.replace(/\/+$/, '')}`);
    return proxy;
  }

  counts(): { authorized: number; refused: number } {
    return { ...this.#counts };
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }
}
