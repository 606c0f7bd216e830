import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';

import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ERROR_CODE } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { RECORD_LEASE, SharedState } from '../shared-state/shared-state.service';
import { TerminalSessions } from '../terminal/terminal-sessions.service';
import { TerminalSocketService } from '../terminal/terminal-socket.service';
import { AgentLinks } from '../tunnel/agent-links';
import { ReplicaDirectory } from './replica-directory';
import { ReplicaRelay, type ForwardTarget } from './replica-relay';
import { routeKey, type RouteKey } from './replica-routes';
import { REPLICA_HEADER, signForward, verifyForward } from './replica-signature';

/** Where a request goes: answered here, forwarded to a live owner, or refused (owner unreachable). */
type Decision =
  | { to: 'here' }
  | { to: 'owner'; replica: string; url: URL }
  | { to: 'nowhere'; replica: string; message: string };

/** A refusal body as every other API error: `{ error, message, reason }`. */
interface Refusal {
  status: number;
  body: { error: string; message: string; reason: string };
}

const STATUS_LINE: Record<number, string> = { 403: 'Forbidden', 503: 'Service Unavailable' };

function describe(key: RouteKey): string {
  return key.kind === 'agent' ? `the agent tunnel of cluster ${key.id}` : `terminal session ${key.id}`;
}

/**
 * Several replicas (PERISCOPE_REDIS_URL): a request under `/api/clusters/{cluster}/...` whose
 * agent tunnel another live replica holds, or under `/api/sessions/{id}...` whose live session
 * another replica holds, is forwarded there (HTTP through the middleware, WebSocket upgrades
 * through the terminal socket router) with Host, Origin, Cookie and body unchanged, signed with
 * PERISCOPE_REPLICA_SECRET. The owner verifies the signature (forged or older than 30 s: 403,
 * logged), believes X-Forwarded-For only then, and never forwards a verified request again (if it
 * does not own it either: 503, `reason: replica_loop`). An owner that cannot be reached within
 * 5 s: 503 `E_UNAVAILABLE`, `reason: replica_unreachable`. One replica: nothing here runs.
 */
@Injectable()
export class ReplicaRouter implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly secret: string | undefined;
  private readonly directory: ReplicaDirectory | undefined;
  private readonly relay = new ReplicaRelay();
  /** upgrades already decided (the terminal router calls back for those that stay here) */
  private readonly decided = new WeakSet<IncomingMessage>();
  /** requests that came signed by another replica (never forwarded again) */
  private readonly verified = new WeakSet<IncomingMessage>();
  private readonly agentClusters: ReadonlySet<string>;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly shared: SharedState,
    private readonly links: AgentLinks,
    private readonly sessions: TerminalSessions,
    private readonly sockets: TerminalSocketService,
    private readonly adapter: HttpAdapterHost,
    private readonly log: PinoLogger,
  ) {
    this.agentClusters = new Set(config.clusters.filter((c) => c.backend === 'agent').map((c) => c.name));
    const store = shared.redisStore;
    this.secret = config.sharedState.replicaSecret;
    if (store !== undefined && this.secret !== undefined)
      this.directory = new ReplicaDirectory(
        store.redis,
        store.prefix,
        store.replica,
        RECORD_LEASE.leaseMs,
        log.logger,
      );
  }

  /** Whether forwarding is on (Redis shared state with a replica secret). */
  get enabled(): boolean {
    return this.directory !== undefined;
  }

  /** Terminal sockets this replica relays to another now. */
  get forwardedSockets(): number {
    return this.relay.openSockets;
  }

  /**
   * Cuts every relayed terminal socket at this replica (the browsers resume through any replica;
   * the sessions stay on their owners): how many were cut.
   */
  cutForwardedSockets(): number {
    return this.relay.dropSockets();
  }

  onApplicationBootstrap(): void {
    const directory = this.directory;
    if (directory === undefined) return;
    this.sockets.relayThrough((req, socket, head, local) => this.upgrade(req, socket, head, local));
    const server = this.adapter.httpAdapter.getHttpServer() as {
      listening: boolean;
      address(): AddressInfo | string | null;
      once(event: 'listening', cb: () => void): void;
    };
    const publish = (): void => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : this.config.http.port;
      const url = this.config.sharedState.replicaUrl ?? `http://${hostname()}:${port}`;
      directory.publish(url).catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message }, 'could not publish this replica address');
      });
    };
    if (server.listening) publish();
    else server.once('listening', publish);
  }

  async onApplicationShutdown(): Promise<void> {
    this.relay.close();
    await this.directory?.stop();
  }

  /** Express middleware (before the body parser): forwards what another replica owns. */
  readonly middleware = (req: IncomingMessage, res: ServerResponse, next: () => void): void => {
    if (!this.enabled) {
      next();
      return;
    }
    const refusal = this.checkSignature(req);
    if (refusal) {
      this.answer(res, refusal);
      return;
    }
    const key = routeKey(req.url);
    if (key === undefined) {
      next();
      return;
    }
    this.decide(key).then(
      (d) => {
        if (d.to === 'here') next();
        else if (d.to === 'nowhere') this.answer(res, this.unreachable(key, d.replica, d.message));
        else if (this.verified.has(req)) this.answer(res, this.loop(req, key, d.replica));
        else if (this.relay.full.http) this.answer(res, this.busy());
        else
          this.relay.http(
            req,
            res,
            this.target(req, d, (why) => {
              this.answer(res, this.unreachable(key, d.replica, why));
            }),
          );
      },
      (err: unknown) => {
        this.answer(res, this.stateDown(key, err));
      },
    );
  };

  /** The terminal router's hook (after its Host, Origin and sign-in checks). */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, local: () => void): boolean {
    if (this.decided.has(req)) return false;
    this.decided.add(req);
    const refusal = this.checkSignature(req);
    if (refusal) {
      this.refuseSocket(socket, refusal);
      return true;
    }
    const key = routeKey(req.url);
    if (key === undefined) return false;
    this.decide(key).then(
      (d) => {
        if (socket.destroyed) return;
        if (d.to === 'here') local();
        else if (d.to === 'nowhere') this.refuseSocket(socket, this.unreachable(key, d.replica, d.message));
        else if (this.verified.has(req)) this.refuseSocket(socket, this.loop(req, key, d.replica));
        else if (this.relay.full.sockets) this.refuseSocket(socket, this.busy());
        else
          this.relay.upgrade(
            req,
            socket,
            head,
            this.target(req, d, (why) => {
              this.refuseSocket(socket, this.unreachable(key, d.replica, why));
            }),
          );
      },
      (err: unknown) => {
        this.refuseSocket(socket, this.stateDown(key, err));
      },
    );
    return true;
  }

  /**
   * A request signed by another replica: verified (remembered; its X-Forwarded-For kept) or
   * refused with 403. Unsigned: any X-Forwarded-For it carries is dropped (not believed).
   */
  private checkSignature(req: IncomingMessage): Refusal | undefined {
    if (this.verified.has(req)) return undefined;
    const header = req.headers[REPLICA_HEADER];
    if (header === undefined) {
      delete req.headers['x-forwarded-for'];
      return undefined;
    }
    const check = verifyForward(this.secret ?? '', header, req.method ?? 'GET', req.url ?? '/');
    if (check.ok) {
      this.verified.add(req);
      return undefined;
    }
    delete req.headers['x-forwarded-for'];
    this.log.warn(
      {
        reason: check.reason,
        method: req.method,
        path: (req.url ?? '').split('?')[0],
        remote: req.socket.remoteAddress,
      },
      'forwarded request refused: its replica signature is invalid or stale',
    );
    return {
      status: 403,
      body: {
        error: ERROR_CODE.forbidden,
        reason: 'replica_signature',
        message: `the ${REPLICA_HEADER} signature is ${check.reason}; only another replica with the same PERISCOPE_REPLICA_SECRET (and a clock within 30 s) may forward requests here`,
      },
    };
  }

  private async decide(key: RouteKey): Promise<Decision> {
    const me = this.shared.replicaId;
    let owner: string | undefined;
    if (key.kind === 'agent') {
      // Kubeconfig (and cloud) clusters are served by any replica; a tunnel held here is ours.
      if (!this.agentClusters.has(key.id) || this.links.link(key.id)?.connected === true)
        return { to: 'here' };
      owner = await this.shared.agents.ownerOf(key.id);
    } else {
      if (this.sessions.get(key.id) !== undefined) return { to: 'here' };
      owner = await this.shared.sessions.ownerOf(key.id);
    }
    if (owner === undefined || owner === me) return { to: 'here' };
    const url = await this.directory?.urlOf(owner);
    if (url === undefined)
      return {
        to: 'nowhere',
        replica: owner,
        message: 'it has published no address (it stopped or just died)',
      };
    try {
      return { to: 'owner', replica: owner, url: new URL(url) };
    } catch {
      return {
        to: 'nowhere',
        replica: owner,
        message: `its published address ${url.slice(0, 100)} is not a URL`,
      };
    }
  }

  private target(
    req: IncomingMessage,
    d: { replica: string; url: URL },
    unreachable: (why: string) => void,
  ): ForwardTarget {
    return {
      url: d.url,
      signature: signForward(this.secret ?? '', this.shared.replicaId, req.method ?? 'GET', req.url ?? '/'),
      client: req.socket.remoteAddress ?? '',
      unreachable: (why) => {
        this.log.warn(
          { owner: d.replica, url: d.url.origin, err: why, path: (req.url ?? '').split('?')[0] },
          'could not forward to the owner replica',
        );
        unreachable(why);
      },
    };
  }

  private unreachable(key: RouteKey, replica: string, why: string): Refusal {
    return {
      status: 503,
      body: {
        error: ERROR_CODE.unavailable,
        reason: 'replica_unreachable',
        message: `${describe(key)} is held by replica ${replica}, which cannot be reached (${why}); if it stopped, its ownership expires within ${RECORD_LEASE.leaseMs / 1000} s (an agent reconnects to a live replica): retry shortly`,
      },
    };
  }

  private loop(req: IncomingMessage, key: RouteKey, replica: string): Refusal {
    this.log.warn(
      { path: (req.url ?? '').split('?')[0], owner: replica },
      'a forwarded request arrived at a replica that does not own it; not forwarding it again',
    );
    return {
      status: 503,
      body: {
        error: ERROR_CODE.unavailable,
        reason: 'replica_loop',
        message: `${describe(key)} moved to replica ${replica} while the request was forwarded; retry`,
      },
    };
  }

  private busy(): Refusal {
    return {
      status: 503,
      body: {
        error: ERROR_CODE.unavailable,
        reason: 'replica_forwarding_full',
        message: 'this replica forwards as many requests to other replicas as it may; retry shortly',
      },
    };
  }

  private stateDown(key: RouteKey, err: unknown): Refusal {
    this.log.warn({ err: (err as Error).message, kind: key.kind }, 'could not read the owner from Redis');
    return {
      status: 503,
      body: {
        error: ERROR_CODE.unavailable,
        reason: 'shared_state',
        message: `could not read which replica holds ${describe(key)} from Redis (PERISCOPE_REDIS_URL); retry shortly`,
      },
    };
  }

  private answer(res: ServerResponse, r: Refusal): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const text = JSON.stringify(r.body);
    res.writeHead(r.status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  private refuseSocket(socket: Duplex, r: Refusal): void {
    if (socket.destroyed) return;
    const text = JSON.stringify(r.body);
    socket.end(
      `HTTP/1.1 ${r.status} ${STATUS_LINE[r.status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
}
