// /healthz (the process answers), /readyz (the loop can do its job; 503 with the reasons), /metrics.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readiness, type Health, type ReadinessLimits } from '../core/health.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from './metrics.js';

/** The paths the Deployment's probes and the Prometheus annotations name (test/deploy.test.ts checks). */
export const PATHS = { health: '/healthz', ready: '/readyz', metrics: '/metrics' } as const;

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

export async function startHttp(
  port: number,
  health: Health,
  metrics: Metrics,
  limits: ReadinessLimits,
  now: () => number,
  logger: Logger,
): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === PATHS.health) {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === PATHS.ready) {
      const r = readiness(health, now(), limits);
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(r)}\n`);
    } else if (path === PATHS.metrics) {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: unknown) => {
          logger.error({ err: err instanceof Error ? err.message : String(err) }, 'Collecting metrics failed');
          res.writeHead(500).end();
        },
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  // A keep-alive scraper must not hold shutdown open.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
