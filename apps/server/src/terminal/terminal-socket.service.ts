import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ERROR_CODE } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';
import { WebSocketServer, type WebSocket } from 'ws';

import { AuthService } from '../auth/auth.service';
import { DomainError, HTTP_STATUS } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { CLOSE_CODE, type TerminalSession } from './terminal-session';
import { TerminalSessions } from './terminal-sessions.service';

/** A terminal endpoint: admission (throwing DomainError to refuse) and the prepared session. */
export interface TerminalRoute {
  pattern: RegExp;
  open(req: IncomingMessage, match: RegExpExecArray, url: URL): TerminalSession;
}

const ATTACH_PATH = /^\/api\/sessions\/([0-9a-f-]{36})\/attach$/;
const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
};

function refuse(socket: Duplex, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/**
 * The one WebSocket upgrade handler of the server: same-origin check first, then the terminal
 * endpoints the features register (cluster shell, pod exec) and the resume endpoint
 * `/api/sessions/{id}/attach?received=N`. Refusals before the upgrade carry the documented
 * HTTP status and JSON body. Frame size is bounded (64 KiB) and stdin is rate limited per socket.
 */
@Injectable()
export class TerminalSocketService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly routes: TerminalRoute[] = [];
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
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

  onApplicationBootstrap(): void {
    const server = this.adapter.httpAdapter.getHttpServer() as {
      on(event: 'upgrade', cb: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void;
    };
    server.on('upgrade', (req, socket, head) => {
      this.onUpgrade(req, socket, head);
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
    const origin = req.headers.origin;
    if (origin !== undefined && !this.config.http.allowedOrigins.includes(origin)) {
      this.log.warn({ origin, path: url.pathname }, 'WebSocket upgrade refused: cross-site origin');
      refuse(socket, 403, {
        error: ERROR_CODE.forbidden,
        message: `origin ${origin} is not allowed (PERISCOPE_ALLOWED_ORIGINS)`,
      });
      return;
    }
    try {
      const attach = ATTACH_PATH.exec(url.pathname);
      if (attach) {
        this.attach(req, socket, head, attach[1] ?? '', url);
        return;
      }
      for (const route of this.routes) {
        const m = route.pattern.exec(url.pathname);
        if (!m) continue;
        const session = route.open(req, m, url);
        this.upgrade(req, socket, head, session);
        return;
      }
      refuse(socket, 404, { error: ERROR_CODE.notFound, message: 'no WebSocket endpoint here' });
    } catch (err) {
      if (err instanceof DomainError) {
        refuse(socket, HTTP_STATUS[err.code], { error: err.code, message: err.message, ...err.details });
        return;
      }
      this.log.error({ err: (err as Error).message, path: url.pathname }, 'terminal admission failed');
      refuse(socket, 500, { error: ERROR_CODE.internal, message: 'internal error; see the server log' });
    }
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, session: TerminalSession): void {
    let upgraded = false;
    // A socket that dies before the upgrade completes must still end (and audit) the session.
    socket.once('close', () => {
      if (!upgraded) void session.end('client_disconnect', null);
    });
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
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const s = this.sessions.get(id);
      const resumed = s !== undefined && s.info.subject === principal.subject && s.resume(ws, received);
      this.sessions.metrics.resumes.inc({
        kind: s?.info.kind ?? 'unknown',
        outcome: resumed ? 'resumed' : 'gone',
      });
      if (!resumed) {
        this.gone(
          ws,
          s === undefined || s.info.subject !== principal.subject
            ? 'no such live session of yours'
            : 'the output since that byte is no longer kept',
        );
        return;
      }
      this.limitStdin(ws);
    });
  }

  private gone(ws: WebSocket, why: string): void {
    ws.send(
      JSON.stringify({
        type: 'error',
        code: 'E_SESSION_GONE',
        message: `this session cannot be resumed (${why}); open a new one`,
        retryable: false,
      }),
    );
    ws.close(CLOSE_CODE.gone, 'session gone');
  }

  /**
   * Stdin rate limit per socket: a token bucket of 1 MiB/s with a 4 MiB burst (pastes pass,
   * a flood is cut with an error frame instead of filling the cluster's buffers).
   */
  private limitStdin(ws: WebSocket): void {
    const rate = 1024 * 1024;
    const burst = 4 * 1024 * 1024;
    let tokens = burst;
    let last = Date.now();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const now = Date.now();
      tokens = Math.min(burst, tokens + ((now - last) / 1000) * rate);
      last = now;
      tokens -= isBinary ? data.length : 256;
      if (tokens < 0) {
        ws.send(
          JSON.stringify({
            type: 'error',
            code: 'E_RATE_LIMIT',
            message: 'input arrives faster than 1 MiB/s; the connection was closed (reconnect to resume)',
            retryable: true,
          }),
        );
        ws.terminate();
      }
    });
  }
}
