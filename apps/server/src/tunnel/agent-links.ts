import { X509Certificate } from 'node:crypto';

import { checkDto, RenewRequest, type MuxEvent, type MuxLimits } from '@periscope/protocol';
import type { Logger } from 'pino';
import type { Socket } from 'socket.io';

import type { LiveAgentConnections } from '../agents/agent-certificates.service';
import { AgentLink, type OrphanHandler } from './agent-link';
import type { TunnelIdentityCheck } from './tunnel-admission';
import { admittedAgent } from './tunnel-listener';

export interface AgentLinksOptions {
  graceMs: number;
  limits?: Partial<MuxLimits>;
  maxPendingRequests: number;
  log: Logger;
  /** the server's longest cluster-shell session, announced to agents at resume (their sweep) */
  maxSessionSeconds?: number;
  /** the resume buffer per session, announced to agents: what they keep per stream for a take-over */
  retainBytes?: number;
  /** the one current certificate per cluster; without it any valid certificate of the CA serves */
  identity?: TunnelIdentityCheck;
  /**
   * Signs a renewal CSR from a connected agent (the mTLS identity names the cluster) whose
   * connection was authenticated with certificate `from` (fingerprint); the new certificate
   * becomes current. Rejects when `from` is no longer current.
   */
  signRenewal?: (cluster: string, csrPem: string, from: string | undefined) => Promise<string>;
  onMuxEvent?: (cluster: string, e: MuxEvent) => void;
  onRequestDone?: (op: string, seconds: number, outcome: 'ok' | 'error') => void;
  /** a second connection arrived for a cluster whose connection was still up */
  onContended?: (cluster: string) => void;
  /** a connection was dropped at its handshake (an invalid hello, no answer, a bad resume) */
  onHandshakeFailed?: (cluster: string) => void;
}

/** The answer to an agent's `RENEW_EVENT`. */
export type RenewAnswer = { ok: true; certificate: string } | { ok: false; error: string };

const RENEWAL_REFUSED: RenewAnswer = { ok: false, error: 'renewal refused' };

/**
 * One AgentLink per agent cluster, and what happens to them: a new connection for a cluster
 * replaces the old one once it passed its handshake (logged and counted when the old one was
 * still up), open streams resume only on a current certificate, a renewal moves the connection
 * to its new certificate, a superseded or revoked certificate loses its connection.
 */
export class AgentLinks implements LiveAgentConnections {
  private readonly links = new Map<string, AgentLink>();
  /** the certificate each connection authenticated with (moves to the new one on renewal) */
  private readonly certificates = new WeakMap<Socket, { cluster: string; fingerprint?: string }>();
  private readonly readyListeners: ((cluster: string) => void)[] = [];
  /** told when a connection drops (the shared state's agent ownership; listeners never throw) */
  readonly goneListeners: ((cluster: string) => void)[] = [];

  /** several replicas: takes over streams of a lost replica (session re-homing) */
  orphanHandler: OrphanHandler | undefined;

  constructor(private readonly options: AgentLinksOptions) {}

  link(cluster: string): AgentLink | undefined {
    return this.links.get(cluster);
  }

  all(): IterableIterator<AgentLink> {
    return this.links.values();
  }

  /** Called each time an agent completes its tunnel handshake (first connect, reconnect, restart). */
  onAgentReady(listener: (cluster: string) => void): void {
    this.readyListeners.push(listener);
  }

  /** A new connection on the agent namespace: it proves itself, then takes over its cluster's link. */
  accept(socket: Socket): void {
    const log = this.options.log;
    const admitted = admittedAgent(socket.request);
    if (admitted === undefined) {
      socket.disconnect(true);
      return;
    }
    const { cluster } = admitted;
    const connection = { cluster, fingerprint: admitted.fingerprint };
    this.certificates.set(socket, connection);
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
    socket.once('disconnect', () => {
      for (const l of this.goneListeners) l(cluster);
    });
    const identity = this.options.identity;
    link
      .adopt(socket, {
        fingerprint: connection.fingerprint,
        // Checked again after the handshake: streams resume only on a certificate still current.
        stillCurrent: () => identity === undefined || identity.isCurrent(cluster, connection.fingerprint),
      })
      .then(
        () => {
          for (const l of this.readyListeners) {
            try {
              l(cluster);
            } catch (err) {
              log.error({ cluster, err: (err as Error).message }, 'agent-ready listener failed');
            }
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
  }

  /** A connected agent asks for its next certificate (a CSR); the connection moves to it. */
  async renew(socket: Socket, body: unknown): Promise<RenewAnswer> {
    const connection = this.certificates.get(socket);
    const request = checkDto(RenewRequest, body, 'lenient');
    const identity = this.options.identity;
    if (
      !connection ||
      !this.options.signRenewal ||
      !request.ok ||
      (identity !== undefined && !identity.isCurrent(connection.cluster, connection.fingerprint))
    )
      return RENEWAL_REFUSED;
    const { cluster } = connection;
    try {
      const signed = await this.options.signRenewal(cluster, request.value.csr, connection.fingerprint);
      connection.fingerprint = new X509Certificate(signed).fingerprint256.replace(/:/g, '').toLowerCase();
      const link = this.links.get(cluster);
      if (link?.socket === socket) link.fingerprint = connection.fingerprint;
      this.options.log.info({ cluster }, 'agent certificate renewed');
      return { ok: true, certificate: signed };
    } catch (err) {
      this.options.log.warn({ cluster, err: (err as Error).message }, 'agent certificate renewal refused');
      return RENEWAL_REFUSED;
    }
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

  /** Every link ends (server shutdown): streams are reset with the reason, connections dropped. */
  closeAll(reason: string): void {
    for (const l of this.links.values()) l.close(reason);
    this.links.clear();
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
          orphans: () => this.orphanHandler,
          ...(this.options.retainBytes !== undefined ? { retainBytes: this.options.retainBytes } : {}),
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
}
