import type { Server } from 'node:http';

import { Injectable, type OnApplicationShutdown } from '@nestjs/common';

import { Metrics } from './metrics';
import { closeProbeListener, listenForProbes } from './probe-listener';
import { Readiness } from './readiness';

/**
 * A second HTTP listener for operators and probes only: `/readyz`, `/metrics` and `/healthz`.
 * It keeps the readiness detail and the metrics (cluster names, counts, versions) off the
 * public port that browsers and the internet reach. Started explicitly (`listen`), so an app
 * built in a test binds nothing it was not asked to.
 */
@Injectable()
export class OpsListener implements OnApplicationShutdown {
  private server: Server | undefined;

  constructor(
    private readonly readiness: Readiness,
    private readonly metrics: Metrics,
  ) {}

  /** Binds the listener; answers its base URL (`http://host:port`). */
  async listen(port: number, host: string): Promise<string> {
    if (this.server) throw new Error('the ops listener is already listening');
    const { server, url } = await listenForProbes(
      (req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        const send = (status: number, type: string, body: string): void => {
          res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' }).end(body);
        };
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          send(405, 'application/json', JSON.stringify({ error: 'method not allowed' }));
          return;
        }
        if (path === '/healthz') {
          send(200, 'application/json', JSON.stringify({ status: 'ok' }));
        } else if (path === '/readyz') {
          void this.readiness.evaluate().then(({ ready, checks }) => {
            send(
              ready ? 200 : 503,
              'application/json',
              JSON.stringify({ status: ready ? 'ok' : 'unavailable', checks }),
            );
          });
        } else if (path === '/metrics') {
          this.metrics.registry.metrics().then(
            (text) => {
              send(200, this.metrics.registry.contentType, text);
            },
            (err: unknown) => {
              send(500, 'text/plain', `metrics failed: ${(err as Error).message}`);
            },
          );
        } else {
          send(404, 'application/json', JSON.stringify({ error: 'not found: /healthz, /readyz, /metrics' }));
        }
      },
      port,
      host,
    );
    this.server = server;
    return url;
  }

  async onApplicationShutdown(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await closeProbeListener(s, 'all');
  }
}
