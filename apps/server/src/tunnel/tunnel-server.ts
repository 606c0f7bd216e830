import { createServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

import { RENEW_EVENT, type MuxEvent, type MuxLimits } from '@periscope/protocol';
import type { Logger } from 'pino';
import { Server } from 'socket.io';
import msgpackParser from 'socket.io-msgpack-parser';

import { AgentLink } from './agent-link';
import { TokenBucket } from './token-bucket';

export interface TunnelServerOptions {
  host: string;
  port: number;
  /** CA that signs agent client certificates */
  caPem: string;
  /** this listener's serving certificate and key (issued by the same CA) */
  certPem: string;
  keyPem: string;
  /** is `cluster` registered with `backend: agent`? */
  isAgentCluster: (cluster: string) => boolean;
  admissionsPerSecond: number;
  admissionBurst: number;
  graceMs: number;
  limits?: Partial<MuxLimits>;
  maxPendingRequests: number;
  pingIntervalMs: number;
  log: Logger;
  onMuxEvent?: (cluster: string, e: MuxEvent) => void;
  onRequestDone?: (op: string, seconds: number, outcome: 'ok' | 'error') => void;
  /** an agent finished its handshake (first connect, reconnect, or a restarted agent) */
  onAgentReady?: (cluster: string) => void;
  onRefused?: (reason: AdmissionRefusal) => void;
  /** signs a renewal CSR from a connected agent (the mTLS identity names the cluster) */
  signRenewal?: (cluster: string, csrPem: string) => Promise<string>;
}

export type AdmissionRefusal =
  'no_certificate' | 'bad_chain' | 'not_client_auth' | 'unknown_cluster' | 'rate_limited';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/**
 * The agent tunnel listener: TLS requiring a client certificate issued by the agent CA,
 * Socket.IO namespace `/agent`, websocket transport only, msgpack parser. One AgentLink per
 * cluster; a new connection for a cluster replaces the old one.
 */
export class TunnelServer {
  readonly links = new Map<string, AgentLink>();
  private http: HttpsServer | undefined;
  private io: Server | undefined;
  private readonly bucket: TokenBucket;
  readonly refusals = new Map<AdmissionRefusal, number>();

  constructor(private readonly options: TunnelServerOptions) {
    this.bucket = new TokenBucket(options.admissionsPerSecond, options.admissionBurst);
  }

  get address(): { host: string; port: number } {
    const a = this.http?.address();
    if (!a || typeof a === 'string') throw new Error('tunnel server is not listening');
    return { host: a.address, port: a.port };
  }

  /** Checks a connecting agent before the WebSocket upgrade; returns its cluster or why not. */
  admit(req: IncomingMessage): { cluster: string } | { refused: AdmissionRefusal; detail: string } {
    const tls = req.socket as TLSSocket;
    const cert = tls.getPeerCertificate(false);
    if (Object.keys(cert).length === 0)
      return { refused: 'no_certificate', detail: 'client presented no certificate' };
    if (!tls.authorized) return { refused: 'bad_chain', detail: String(tls.authorizationError) };
    if (!(cert.ext_key_usage ?? []).includes(CLIENT_AUTH))
      return { refused: 'not_client_auth', detail: 'certificate lacks clientAuth' };
    const cn = cert.subject.CN;
    const cluster = Array.isArray(cn) ? undefined : cn;
    if (cluster === undefined || !this.options.isAgentCluster(cluster)) {
      return {
        refused: 'unknown_cluster',
        detail: `no agent cluster named ${JSON.stringify(cn)} is registered`,
      };
    }
    if (!this.bucket.take())
      return { refused: 'rate_limited', detail: 'too many agent connections per second' };
    return { cluster };
  }

  async start(): Promise<void> {
    const log = this.options.log;
    this.http = createServer({
      cert: this.options.certPem,
      key: this.options.keyPem,
      ca: this.options.caPem,
      requestCert: true,
      // Refusals are decided (and logged with a reason) in admit(), not by a silent TLS abort.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    });
    this.http.on('request', (req, res) => {
      if (!(req.url ?? '').startsWith('/socket.io/')) {
        res.writeHead(404).end();
      }
    });
    const io = new Server(this.http, {
      transports: ['websocket'],
      parser: msgpackParser,
      serveClient: false,
      perMessageDeflate: false,
      maxHttpBufferSize: 2 * 1024 * 1024,
      pingInterval: this.options.pingIntervalMs,
      pingTimeout: 20_000,
      allowRequest: (req, callback) => {
        const verdict = this.admit(req);
        if ('refused' in verdict) {
          this.refusals.set(verdict.refused, (this.refusals.get(verdict.refused) ?? 0) + 1);
          this.options.onRefused?.(verdict.refused);
          log.warn(
            { reason: verdict.refused, detail: verdict.detail, remote: req.socket.remoteAddress },
            'agent connection refused',
          );
          callback(verdict.refused, false);
          return;
        }
        (req as IncomingMessage & { periscopeCluster?: string }).periscopeCluster = verdict.cluster;
        callback(null, true);
      },
    });
    this.io = io;
    io.of('/').use((_socket, next) => {
      next(new Error('use the /agent namespace'));
    });
    io.of('/agent').on('connection', (socket) => {
      const cluster = (socket.request as IncomingMessage & { periscopeCluster?: string }).periscopeCluster;
      if (cluster === undefined) {
        socket.disconnect(true);
        return;
      }
      let link = this.links.get(cluster);
      if (!link) {
        link = new AgentLink(
          cluster,
          {
            graceMs: this.options.graceMs,
            limits: this.options.limits ?? {},
            maxPendingRequests: this.options.maxPendingRequests,
            ringSize: 1000,
            defaultTimeoutMs: 30_000,
          },
          log.child({ cluster }),
          (e) => this.options.onMuxEvent?.(cluster, e),
        );
        link.onRequestDone = this.options.onRequestDone;
        this.links.set(cluster, link);
      }
      log.info({ cluster, remote: socket.handshake.address }, 'agent connected');
      socket.on(RENEW_EVENT, (body: unknown, ack: unknown) => {
        if (typeof ack !== 'function') return;
        const reply = ack as (r: unknown) => void;
        const csr = typeof body === 'object' && body !== null ? (body as { csr?: unknown }).csr : undefined;
        if (!this.options.signRenewal || typeof csr !== 'string' || csr.length > 16_384) {
          reply({ ok: false, error: 'renewal refused' });
          return;
        }
        this.options.signRenewal(cluster, csr).then(
          (certificate) => {
            log.info({ cluster }, 'agent certificate renewed');
            reply({ ok: true, certificate });
          },
          (err: unknown) => {
            log.warn({ cluster, err: (err as Error).message }, 'agent certificate renewal refused');
            reply({ ok: false, error: 'renewal refused' });
          },
        );
      });
      link.adopt(socket).then(
        () => this.options.onAgentReady?.(cluster),
        (err: unknown) => {
          log.warn(
            { cluster, err: (err as Error).message },
            'agent handshake failed; dropping the connection',
          );
          socket.disconnect(true);
        },
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.http?.once('error', reject);
      this.http?.listen(this.options.port, this.options.host, () => {
        resolve();
      });
    });
  }

  link(cluster: string): AgentLink | undefined {
    return this.links.get(cluster);
  }

  async stop(): Promise<void> {
    for (const l of this.links.values()) l.close('server shutting down');
    this.links.clear();
    await new Promise<void>((resolve) => {
      if (!this.io) {
        resolve();
        return;
      }
      void this.io.close(() => {
        resolve();
      });
    });
  }
}
