import type { IncomingMessage, Server, ServerResponse } from 'node:http';

import { closeProbeListener, listenForProbes } from '@periscope/observability/dist/probe-listener';
import type { DestinationStream } from 'pino';
import { pinoHttp, type HttpLogger } from 'pino-http';

import { agentLogOptions, type Metrics, type Readiness } from './agent-observability';

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * The agent's only listener, for probes and scrapers: `/healthz` (liveness), `/readyz` (200 or
 * 503 with every check) and `/metrics` (Prometheus), on `node:http`. It answers what the agent's
 * NestJS/Express app answered (same statuses, bodies and content types; paths match ignoring case
 * and one trailing slash; HEAD as GET without a body; anything else 404 with Nest's body), and
 * logs requests other than the probes' as that app did (pino-http, the same options).
 */
export class HealthServer {
  private server: Server | undefined;
  private readonly httpLog: HttpLogger;

  constructor(
    private readonly readiness: Readiness,
    private readonly metrics: Metrics,
    logLevel: string,
    logDestination?: DestinationStream,
  ) {
    this.httpLog = logDestination
      ? pinoHttp(agentLogOptions(logLevel), logDestination)
      : pinoHttp(agentLogOptions(logLevel));
  }

  /** Binds the listener; answers its base URL (`http://host:port`). */
  async listen(port: number, host: string): Promise<string> {
    if (this.server) throw new Error('the agent health listener is already listening');
    const { server, url } = await listenForProbes(
      (req, res) => {
        this.httpLog(req, res);
        this.handle(req, res);
      },
      port,
      host,
    );
    this.server = server;
    return url;
  }

  /** Stops accepting connections and waits for requests in progress (each bounded: 10 s). */
  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await closeProbeListener(s, 'idle');
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    let path = url.split('?')[0]?.toLowerCase() ?? '/';
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    const send = (status: number, type: string, body: string, extra: Record<string, string> = {}): void => {
      // setHeader, not writeHead's object: the request log line lists the response's headers
      res.setHeader('Content-Type', type);
      res.setHeader('Content-Length', String(Buffer.byteLength(body)));
      for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
      res.writeHead(status);
      res.end(method === 'HEAD' ? undefined : body);
    };
    const failed = (): void => {
      send(500, JSON_TYPE, JSON.stringify({ statusCode: 500, message: 'Internal server error' }));
    };
    if (method !== 'GET' && method !== 'HEAD') path = '';
    if (path === '/healthz') {
      send(200, JSON_TYPE, JSON.stringify({ status: 'ok' }));
    } else if (path === '/readyz') {
      this.readiness.evaluate().then(({ ready, checks }) => {
        send(ready ? 200 : 503, JSON_TYPE, JSON.stringify({ status: ready ? 'ok' : 'unavailable', checks }));
      }, failed);
    } else if (path === '/metrics') {
      this.metrics.registry.metrics().then((text) => {
        send(200, this.metrics.registry.contentType, text, { 'Cache-Control': 'no-store' });
      }, failed);
    } else {
      send(
        404,
        JSON_TYPE,
        JSON.stringify({ message: `Cannot ${method} ${url}`, error: 'Not Found', statusCode: 404 }),
      );
    }
  }
}
