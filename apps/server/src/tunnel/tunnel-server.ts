import { createServer, type Server as HttpsServer } from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';

import { RENEW_EVENT, type MuxEvent, type MuxLimits } from '@periscope/protocol';
import type { Logger } from 'pino';
import { Server } from 'socket.io';
import msgpackParser from 'socket.io-msgpack-parser';

import type { CertVerdict, PresentedCert } from '../agents/agent-identities';
import { AgentLink } from './agent-link';
import { TokenBucket } from './token-bucket';

/** Which certificate may serve a cluster (AgentIdentities): checked at every connect. */
export interface TunnelIdentityCheck {
  verdict(cluster: string, cert: PresentedCert): Promise<CertVerdict>;
  isCurrent(cluster: string, fingerprint: string | undefined): boolean;
}

/** What every refused agent connection is told, whatever the reason (the server logs the reason). */
export const AGENT_REFUSED_BODY = JSON.stringify({ error: 'E_AUTH', message: 'agent connection refused' });

interface AdmittedRequest extends IncomingMessage {
  periscopeCluster?: string;
  periscopeCert?: string;
}

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
  /** a second connection arrived for a cluster whose connection was still up */
  onContended?: (cluster: string) => void;
  /** a connection was dropped at its handshake (an invalid hello, no answer, a bad resume) */
  onHandshakeFailed?: (cluster: string) => void;
  /** the server's longest cluster-shell session, announced to agents at resume (their sweep) */
  maxSessionSeconds?: number;
  /**
   * Signs a renewal CSR from a connected agent (the mTLS identity names the cluster) whose
   * connection was authenticated with certificate `from` (fingerprint); the new certificate
   * becomes current. Rejects when `from` is no longer current.
   */
  signRenewal?: (cluster: string, csrPem: string, from: string | undefined) => Promise<string>;
  /** the one current certificate per cluster; without it any valid certificate of the CA serves */
  identity?: TunnelIdentityCheck;
}

export type AdmissionRefusal =
  | 'no_certificate'
  | 'bad_chain'
  | 'not_client_auth'
  | 'unknown_cluster'
  | 'revoked'
  | 'not_current'
  | 'rate_limited'
  | 'error';

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/**
 * The agent tunnel listener: TLS requiring a client certificate issued by the agent CA and
 * current for its cluster, Socket.IO namespace `/agent`, websocket transport only, msgpack
 * parser. Every refused upgrade gets the same 401 (the reason goes to the log and a metric).
 * One AgentLink per cluster; a new connection for a cluster replaces the old one (logged and
 * counted when the old one was still up), and open streams resume only on a current certificate.
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
  admit(
    req: IncomingMessage,
  ): { cluster: string; cert: PresentedCert } | { refused: AdmissionRefusal; detail: string } {
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
    return {
      cluster,
      cert: {
        fingerprint: cert.fingerprint256.replace(/:/g, '').toLowerCase(),
        serial: cert.serialNumber.replace(/:/g, '').toLowerCase(),
        notAfter: new Date(cert.valid_to).toISOString(),
      },
    };
  }

  /** admit() plus the identity check: is this the cluster's current certificate? */
  private async admitFully(
    req: IncomingMessage,
  ): Promise<{ cluster: string; cert: PresentedCert } | { refused: AdmissionRefusal; detail: string }> {
    const verdict = this.admit(req);
    const identity = this.options.identity;
    if ('refused' in verdict || !identity) return verdict;
    try {
      const v = await identity.verdict(verdict.cluster, verdict.cert);
      if (v === 'current') return verdict;
      return {
        refused: v,
        detail:
          v === 'revoked'
            ? `the agent of ${verdict.cluster} was revoked; it must register again with a new token`
            : `certificate ${verdict.cert.serial} is not the current one of ${verdict.cluster} (superseded by a registration or renewal)`,
      };
    } catch (err) {
      return { refused: 'error', detail: `checking the certificate failed: ${(err as Error).message}` };
    }
  }

  private refuse(req: IncomingMessage, socket: Duplex, refused: AdmissionRefusal, detail: string): void {
    this.refusals.set(refused, (this.refusals.get(refused) ?? 0) + 1);
    this.options.onRefused?.(refused);
    this.options.log.warn(
      { reason: refused, detail, remote: req.socket.remoteAddress },
      'agent connection refused',
    );
    const [status, text, body] =
      refused === 'rate_limited'
        ? [
            429,
            'Too Many Requests',
            JSON.stringify({ error: 'E_RATE_LIMIT', message: 'too many agent connections; retry later' }),
          ]
        : refused === 'error'
          ? [503, 'Service Unavailable', JSON.stringify({ error: 'E_UNAVAILABLE', message: 'retry later' })]
          : [401, 'Unauthorized', AGENT_REFUSED_BODY];
    socket.on('error', () => undefined);
    if (socket.writable)
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    socket.destroy();
  }

  /** Drops the connection of `cluster` when its certificate is no longer current (streams wait). */
  supersede(cluster: string): boolean {
    const link = this.links.get(cluster);
    const identity = this.options.identity;
    if (!link?.socket || !identity || identity.isCurrent(cluster, link.fingerprint)) return false;
    this.options.log.warn({ cluster }, 'agent certificate superseded; dropping its connection');
    link.socket.disconnect(true);
    return true;
  }

  /** Ends the link of `cluster` for good (revoked): its streams are reset, its connection dropped. */
  revoke(cluster: string, reason: string): boolean {
    const link = this.links.get(cluster);
    if (!link) return false;
    const wasConnected = link.socket !== undefined;
    link.close(reason);
    this.links.delete(cluster);
    // A fresh, unconnected link keeps "last seen" for the cluster list (a registration later
    // connects on it).
    this.linkFor(cluster).lastSeen = link.lastSeen;
    return wasConnected;
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
      // Admission ran in the upgrade handler below; nothing reaches the engine without it.
      allowRequest: (req, callback) => {
        callback(null, (req as AdmittedRequest).periscopeCluster !== undefined);
      },
    });
    this.io = io;
    // Admission before the engine sees the upgrade, so a refusal is one uniform 401 (the engine
    // would answer 400 with the reason) and the identity check may wait for the record store.
    const engineUpgrade = this.http.listeners('upgrade') as ((...a: unknown[]) => void)[];
    this.http.removeAllListeners('upgrade');
    this.http.on('upgrade', (req: AdmittedRequest, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined);
      void this.admitFully(req).then((verdict) => {
        if ('refused' in verdict) {
          this.refuse(req, socket, verdict.refused, verdict.detail);
          return;
        }
        req.periscopeCluster = verdict.cluster;
        req.periscopeCert = verdict.cert.fingerprint;
        for (const l of engineUpgrade) l.call(this.http, req, socket, head);
      });
    });
    io.of('/').use((_socket, next) => {
      next(new Error('use the /agent namespace'));
    });
    io.of('/agent').on('connection', (socket) => {
      const req = socket.request as AdmittedRequest;
      const cluster = req.periscopeCluster;
      if (cluster === undefined) {
        socket.disconnect(true);
        return;
      }
      /** the certificate this connection authenticated with (moves to the new one on renewal) */
      let certificate = req.periscopeCert;
      const link = this.linkFor(cluster);
      if (link.socket?.connected === true) {
        // Two agents with the same current certificate (a copied state Secret, or a stolen key),
        // or an agent back before its old connection timed out: the newest wins, on record.
        this.options.onContended?.(cluster);
        log.warn(
          {
            cluster,
            remote: socket.handshake.address,
            previousRemote: link.socket.handshake.address,
          },
          'a second connection for this cluster while one is up; it replaces it if its handshake succeeds (two agents with one identity?)',
        );
      }
      log.info({ cluster, remote: socket.handshake.address }, 'agent connected');
      socket.on(RENEW_EVENT, (body: unknown, ack: unknown) => {
        if (typeof ack !== 'function') return;
        const reply = ack as (r: unknown) => void;
        const csr = typeof body === 'object' && body !== null ? (body as { csr?: unknown }).csr : undefined;
        const identity = this.options.identity;
        if (
          !this.options.signRenewal ||
          typeof csr !== 'string' ||
          csr.length > 16_384 ||
          (identity !== undefined && !identity.isCurrent(cluster, certificate))
        ) {
          reply({ ok: false, error: 'renewal refused' });
          return;
        }
        this.options.signRenewal(cluster, csr, certificate).then(
          (signed) => {
            certificate = new X509Certificate(signed).fingerprint256.replace(/:/g, '').toLowerCase();
            if (link.socket === socket) link.fingerprint = certificate;
            log.info({ cluster }, 'agent certificate renewed');
            reply({ ok: true, certificate: signed });
          },
          (err: unknown) => {
            log.warn({ cluster, err: (err as Error).message }, 'agent certificate renewal refused');
            reply({ ok: false, error: 'renewal refused' });
          },
        );
      });
      const identity = this.options.identity;
      link
        .adopt(socket, {
          fingerprint: certificate,
          // Checked again after the handshake: streams resume only on a certificate still current.
          stillCurrent: () => identity === undefined || identity.isCurrent(cluster, certificate),
        })
        .then(
          () => {
            try {
              this.options.onAgentReady?.(cluster);
            } catch (err) {
              log.error({ cluster, err: (err as Error).message }, 'agent-ready listener failed');
            }
          },
          (err: unknown) => {
            this.options.onHandshakeFailed?.(cluster);
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

  private linkFor(cluster: string): AgentLink {
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
          ...(this.options.maxSessionSeconds !== undefined
            ? { maxSessionSeconds: this.options.maxSessionSeconds }
            : {}),
        },
        this.options.log.child({ cluster }),
        (e) => this.options.onMuxEvent?.(cluster, e),
      );
      link.onRequestDone = this.options.onRequestDone;
      this.links.set(cluster, link);
    }
    return link;
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
