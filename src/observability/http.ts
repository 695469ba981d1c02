// The side HTTP server: GET /livez, /readyz (200 or 503 with what is
// missing) and /metrics (Prometheus text format). Nothing else is served.

import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { HealthSnapshot } from './health.js';

export interface HttpServerOptions {
  readonly port: number;
  /** Default: all interfaces (the kubelet and Prometheus connect from outside the pod). */
  readonly host?: string;
  readonly health: () => HealthSnapshot;
  readonly registry: Registry;
}

export interface HttpServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
    };
    switch (url) {
      case '/livez': {
        const h = options.health();
        json(h.live ? 200 : 503, { status: h.live ? 'ok' : 'dead' });
        return;
      }
      case '/readyz': {
        const h = options.health();
        json(h.ready ? 200 : 503, { status: h.ready ? 'ready' : 'not ready', waitingFor: h.waitingFor });
        return;
      }
      case '/metrics':
        options.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
        return;
      default:
        json(404, { error: 'not found', paths: ['/livez', '/readyz', '/metrics'] });
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
