import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import {
  ERROR_CODE,
  SERVER_FRAME,
  TERMINAL_CLOSE,
  TERMINAL_ERROR,
  TERMINAL_FRAME_MAX_BYTES,
  type ServerFrame,
} from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';
import { WebSocketServer, type WebSocket } from 'ws';

import { AuthService } from '../auth/auth.service';
import { DomainError, HTTP_STATUS } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { checkHost } from '../web/request-guard';
import { readmit } from './readmit';
import type { TerminalSession } from './terminal-session';
import { TerminalSessions } from './terminal-sessions.service';

/**
 * A terminal endpoint: admission (throwing, or rejecting with, DomainError to refuse) and the
 * prepared session; asynchronous when the admission asks the shared state (Redis).
 */
export interface TerminalRoute {
  pattern: RegExp;
  open(req: IncomingMessage, match: RegExpExecArray, url: URL): TerminalSession | Promise<TerminalSession>;
}

/**
 * A WebSocket endpoint that is not a new session (live watch): `admit` refuses by throwing
 * DomainError (answered before the upgrade) or answers what to do with the socket.
 */
export interface SocketRoute {
  pattern: RegExp;
  admit(req: IncomingMessage, match: RegExpExecArray, url: URL): (ws: WebSocket) => void;
}

/**
 * Hands an upgrade that passed the Host, Origin and sign-in checks to another replica (see
 * apps/server/src/replicas): true when it took the socket (it calls `local` if it then decides the
 * upgrade is this replica's after all), false to go on here.
 */
export type UpgradeRelay = (req: IncomingMessage, socket: Duplex, head: Buffer, local: () => void) => boolean;

const ATTACH_PATH = /^\/api\/sessions\/([0-9a-f-]{36})\/attach$/;
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/**
 * Closes a socket that broke the rules (1008, after the error frame already queued), and drops it
 * outright when the client does not answer the close within a second (it may not be reading).
 */
function closeHostile(ws: WebSocket, reason: string): void {
  ws.close(TERMINAL_CLOSE.policyViolation, reason);
  setTimeout(() => {
    if (ws.readyState !== ws.CLOSED) ws.terminate();
  }, 1000).unref();
}

function sendFrame(ws: WebSocket, frame: ServerFrame): void {
  ws.send(JSON.stringify(frame));
}

function refuse(socket: Duplex, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/**
 * The one WebSocket upgrade handler of the server: Host check, Origin required and allowed,
 * signed in (401 before any cluster-specific answer), then the terminal
 * endpoints the features register (cluster shell, pod exec) and the resume endpoint
 * `/api/sessions/{id}/attach?received=N`. Refusals before the upgrade carry the documented
 * HTTP status and JSON body. Frame size is bounded (64 KiB) and stdin is rate limited per socket.
 */
@Injectable()
export class TerminalSocketService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly routes: TerminalRoute[] = [];
  private readonly socketRoutes: SocketRoute[] = [];
  private relay: UpgradeRelay | undefined;
  /** re-homing: whether a session is being taken over here right now (a resume is asked to retry) */
  private moving: ((sessionId: string) => boolean) | undefined;
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: TERMINAL_FRAME_MAX_BYTES,
    perMessageDeflate: false,
  });

  constructor(
    private readonly adapter: HttpAdapterHost,
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly auth: AuthService,
    private readonly sessions: TerminalSessions,
    private readonly log: PinoLogger,
  ) {}

  register(route: TerminalRoute): void {
    this.routes.push(route);
  }

  registerSocket(route: SocketRoute): void {
    this.socketRoutes.push(route);
  }

  /** Re-homing: resumes of a session being taken over here are answered "try again" meanwhile. */
  holdResumesWhile(moving: (sessionId: string) => boolean): void {
    this.moving = moving;
  }

  /** Several replicas: upgrades whose session or cluster tunnel another replica holds go there. */
  relayThrough(relay: UpgradeRelay): void {
    this.relay = relay;
  }

  onApplicationBootstrap(): void {
    const server = this.adapter.httpAdapter.getHttpServer() as {
      on(event: 'upgrade', cb: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void;
    };
    server.on('upgrade', (req, socket, head) => {
      // A sign-in kept in Redis is read first (it may be another replica's); in memory: at once.
      const loading = this.auth.preload(req);
      if (loading === undefined) this.onUpgrade(req, socket, head);
      else {
        socket.on('error', () => undefined);
        const go = (): void => {
          this.onUpgrade(req, socket, head);
        };
        loading.then(go, go);
      }
    });
  }

  onApplicationShutdown(): void {
    this.wss.close();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      refuse(socket, 400, { error: ERROR_CODE.badRequest, message: 'malformed request path' });
      return;
    }
    const host = checkHost(req.headers.host, this.config.http);
    if (host) {
      this.log.warn(
        { host: req.headers.host?.slice(0, 100), path: url.pathname },
        'WebSocket upgrade refused: host',
      );
      refuse(socket, HTTP_STATUS[host.code], { error: host.code, message: host.message });
      return;
    }
    // Browsers always send Origin on a WebSocket upgrade; a request without one is not a page of
    // ours, and a page elsewhere must not ride the operator's cookie into a shell.
    const origin = req.headers.origin;
    if (origin === undefined || !this.config.http.allowedOrigins.includes(origin)) {
      this.log.warn(
        { origin: origin?.slice(0, 100) ?? null, path: url.pathname },
        'WebSocket upgrade refused: origin missing or not allowed',
      );
      refuse(socket, 403, {
        error: ERROR_CODE.forbidden,
        message:
          origin === undefined
            ? `the upgrade has no Origin header; terminals open only from ${this.config.http.publicUrl} (PERISCOPE_PUBLIC_URL / PERISCOPE_ALLOWED_ORIGINS)`
            : `Origin ${origin.slice(0, 100)} is not allowed; terminals open only from ${this.config.http.allowedOrigins.join(', ')} (PERISCOPE_PUBLIC_URL / PERISCOPE_ALLOWED_ORIGINS)`,
      });
      return;
    }
    try {
      // Signed in before anything about a cluster is answered (no probing cluster names).
      this.auth.require(req);
      const again = (): void => {
        this.onUpgrade(req, socket, head);
      };
      if (this.relay?.(req, socket, head, again) === true) return;
      const attach = ATTACH_PATH.exec(url.pathname);
      if (attach) {
        this.attach(req, socket, head, attach[1] ?? '', url);
        return;
      }
      for (const route of this.socketRoutes) {
        const m = route.pattern.exec(url.pathname);
        if (!m) continue;
        const use = route.admit(req, m, url);
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          this.limitStdin(ws);
          use(ws);
        });
        return;
      }
      for (const route of this.routes) {
        const m = route.pattern.exec(url.pathname);
        if (!m) continue;
        const session = route.open(req, m, url);
        if (session instanceof Promise) {
          session.then(
            (s) => {
              // The browser may have gone while the admission was answered: the session ends.
              if (socket.destroyed) void s.end('client_disconnect', null);
              else this.upgrade(req, socket, head, s);
            },
            (err: unknown) => {
              this.refuseFailed(socket, url, err);
            },
          );
          return;
        }
        this.upgrade(req, socket, head, session);
        return;
      }
      refuse(socket, 404, { error: ERROR_CODE.notFound, message: 'no WebSocket endpoint here' });
    } catch (err) {
      this.refuseFailed(socket, url, err);
    }
  }

  /** A refused admission: its documented status and body, or 500 for anything else (logged). */
  private refuseFailed(socket: Duplex, url: URL, err: unknown): void {
    if (err instanceof DomainError) {
      refuse(socket, HTTP_STATUS[err.code], { error: err.code, message: err.message, ...err.details });
      return;
    }
    this.log.error({ err: (err as Error).message, path: url.pathname }, 'terminal admission failed');
    refuse(socket, 500, { error: ERROR_CODE.internal, message: 'internal error; see the server log' });
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, session: TerminalSession): void {
    let upgraded = false;
    // A socket that dies before the upgrade completes must still end (and audit) the session.
    socket.once('close', () => {
      if (!upgraded) void session.end('client_disconnect', null);
    });
    const loginId = this.auth.loginId(req);
    if (loginId !== undefined) session.info.loginId = loginId;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      this.sessions.add(session);
      this.limitStdin(ws);
      session.start(ws);
    });
  }

  private attach(req: IncomingMessage, socket: Duplex, head: Buffer, id: string, url: URL): void {
    const principal = this.auth.require(req);
    const receivedText = url.searchParams.get('received') ?? '';
    const received = /^\d{1,15}$/.test(receivedText) ? Number(receivedText) : NaN;
    if (Number.isNaN(received))
      throw new DomainError(
        ERROR_CODE.badRequest,
        'received must be the number of output bytes the terminal already has',
      );
    const loginId = this.auth.loginId(req);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const s = this.sessions.get(id);
      // Being taken over here (its replica died, its agent's tunnel came here): not yet ready.
      // (Whose it is is checked once it is here: a session id is a random UUID.)
      const early =
        s === undefined
          ? this.moving?.(id) === true
          : s.info.subject === principal.subject && s.awaitingOutput(received);
      if (early) {
        this.retryLater(ws);
        return;
      }
      const mine = s !== undefined && s.info.subject === principal.subject;
      // Resume re-admits: the same person, signed in, with a tier that still admits the session
      // (a tier lowered since it opened ends it, as a refresh would have).
      const refused = mine ? readmit(s.info, principal.tier) : undefined;
      if (s && mine && refused) {
        this.sessions.metrics.resumes.inc({ kind: s.info.kind, outcome: 'refused' });
        this.log.info(
          { sessionId: s.id, was: s.info.tier, now: principal.tier ?? null },
          'resume refused: the tier changed; ending the session',
        );
        void s.end('tier_changed', null, refused);
        sendFrame(ws, { type: SERVER_FRAME.error, ...refused });
        ws.close(TERMINAL_CLOSE.sessionGone, 'tier changed');
        return;
      }
      const resumed = s !== undefined && mine && s.resume(ws, received);
      this.sessions.metrics.resumes.inc({
        kind: s?.info.kind ?? 'unknown',
        outcome: resumed ? 'resumed' : 'gone',
      });
      if (!resumed) {
        this.gone(
          ws,
          s === undefined || !mine
            ? 'no such live session of yours'
            : 'the output since that byte is no longer kept',
        );
        return;
      }
      // The session now belongs to the sign-in it is shown in: signing out of that one ends it.
      if (loginId !== undefined) s.info.loginId = loginId;
      this.limitStdin(ws);
    });
  }

  /** A resume that comes a moment too early: the client tries again (any close but 4410 resumes). */
  private retryLater(ws: WebSocket): void {
    sendFrame(ws, {
      type: SERVER_FRAME.error,
      code: TERMINAL_ERROR.sessionMoving,
      message:
        'the session is moving to this server replica (its previous one was lost); reconnecting in a moment resumes it',
      retryable: true,
    });
    ws.close(TERMINAL_CLOSE.tryAgainLater, 'session moving; retry');
  }

  private gone(ws: WebSocket, why: string): void {
    sendFrame(ws, {
      type: SERVER_FRAME.error,
      code: TERMINAL_ERROR.sessionGone,
      message: `this session cannot be resumed (${why}); open a new one`,
      retryable: false,
    });
    ws.close(TERMINAL_CLOSE.sessionGone, 'session gone');
  }

  /**
   * Stdin rate limit per socket: a token bucket of PERISCOPE_TERMINAL_STDIN_BYTES_PER_SECOND
   * (1 MiB/s) with a burst of four seconds' worth (pastes pass, a flood is cut with an error
   * frame). Memory does not depend on it: the session pauses the socket while the exec is full.
   */
  private limitStdin(ws: WebSocket): void {
    const rate = this.config.terminal.stdinBytesPerSecond;
    const burst = 4 * rate;
    let tokens = burst;
    let last = Date.now();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (ws.readyState !== ws.OPEN) return; // closing: the rest is dropped anyway
      const now = Date.now();
      tokens = Math.min(burst, tokens + ((now - last) / 1000) * rate);
      last = now;
      tokens -= isBinary ? data.length : 256;
      if (tokens < 0) {
        sendFrame(ws, {
          type: SERVER_FRAME.error,
          code: TERMINAL_ERROR.rateLimit,
          message: `input arrives faster than ${rate} bytes/s (PERISCOPE_TERMINAL_STDIN_BYTES_PER_SECOND); the connection was closed (reconnect to resume)`,
          retryable: true,
        });
        closeHostile(ws, 'input rate limit');
      }
    });
  }
}
