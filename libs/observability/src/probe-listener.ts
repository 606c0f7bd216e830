import { createServer, type RequestListener, type Server } from 'node:http';

/**
 * The plain `node:http` listener under the ops endpoints of the server (OpsListener) and the agent
 * (its HealthServer): bounded for probes and scrapers, bound before it answers. No NestJS here:
 * the agent loads this module on its own (`@periscope/observability/dist/probe-listener`).
 */

/** Binds `handler` at `host:port`; answers the server and its base URL (`http://host:port`). */
export async function listenForProbes(
  handler: RequestListener,
  port: number,
  host: string,
): Promise<{ server: Server; url: string }> {
  const server = createServer(handler);
  // Probes and scrapers keep no long connections; bound what a stuck one can hold.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const bound = typeof a === 'object' && a !== null ? a.port : port;
  return { server, url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}` };
}

/**
 * Stops accepting connections and waits until the server has closed: `all` drops every
 * connection at once; `idle` only the idle ones, letting requests in progress finish (each bounded
 * by the request timeout, 10 s).
 */
export async function closeProbeListener(server: Server, connections: 'all' | 'idle'): Promise<void> {
  if (connections === 'all') server.closeAllConnections();
  else server.closeIdleConnections();
  await new Promise<void>((resolve) => {
    server.close(() => {
      resolve();
    });
  });
}
