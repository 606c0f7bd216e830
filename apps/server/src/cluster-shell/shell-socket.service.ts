import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ERROR_CODE } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';
import { WebSocketServer } from 'ws';

import { AuditStore } from '../audit/audit-store';
import { AuthService } from '../auth/auth.service';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { DomainError, HTTP_STATUS } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { ShellAdmission, type Admitted } from './shell-admission.service';
import { ShellSession } from './shell-session';

const SHELL_PATH = /^\/api\/clusters\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/shell$/;

function refuse(socket: Duplex, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : status === 403 ? 'Forbidden' : status === 404 ? 'Not Found' : status === 429 ? 'Too Many Requests' : 'Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/**
 * The cluster-shell WebSocket endpoint `GET /api/clusters/{c}/shell`: Origin check, then either a
 * ticket from POST …/shell/sessions or the full admission checks (refusals answered with the
 * documented HTTP status and JSON body), the durable `cluster_shell_open` audit, then the upgrade.
 */
@Injectable()
export class ShellSocketService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
    perMessageDeflate: false,
  });
  readonly sessions = new Set<ShellSession>();

  constructor(
    private readonly adapter: HttpAdapterHost,
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly auth: AuthService,
    private readonly admission: ShellAdmission,
    private readonly registry: ClusterRegistry,
    private readonly audit: AuditStore,
    private readonly log: PinoLogger,
  ) {}

  onApplicationBootstrap(): void {
    const server = this.adapter.httpAdapter.getHttpServer() as {
      on(event: 'upgrade', cb: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void;
    };
    server.on('upgrade', (req, socket, head) => {
      this.onUpgrade(req, socket, head);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.sessions].map((s) => s.end('server_shutdown', null)));
    this.wss.close();
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const m = SHELL_PATH.exec(url.pathname);
    if (!m) {
      refuse(socket, 404, { error: ERROR_CODE.notFound, message: 'no WebSocket endpoint here' });
      return;
    }
    const cluster = m[1] ?? '';
    const origin = req.headers.origin;
    if (origin !== undefined && !this.config.http.allowedOrigins.includes(origin)) {
      this.log.warn({ origin, cluster }, 'cluster shell upgrade refused: cross-site origin');
      refuse(socket, 403, {
        error: ERROR_CODE.forbidden,
        message: `origin ${origin} is not allowed (PERISCOPE_ALLOWED_ORIGINS)`,
      });
      return;
    }
    let admitted: Admitted;
    try {
      const ticket = url.searchParams.get('ticket');
      if (ticket !== null) {
        const principal = this.auth.require(req);
        const t = this.admission.tickets.redeem(ticket, principal.subject, cluster);
        if (!t)
          throw new DomainError(
            ERROR_CODE.auth,
            'the shell ticket is unknown, used or expired; ask for a new one (POST …/shell/sessions)',
          );
        admitted = {
          sessionId: t.sessionId,
          subject: t.subject,
          tier: t.tier,
          cluster: t.cluster,
          mode: t.mode,
          release: t.release,
        };
      } else {
        admitted = this.admission.admit(req, cluster, url.searchParams.get('mode') ?? undefined);
      }
    } catch (err) {
      if (err instanceof DomainError) {
        refuse(socket, HTTP_STATUS[err.code], { error: err.code, message: err.message, ...err.details });
        return;
      }
      this.log.error({ err: (err as Error).message }, 'cluster shell admission failed');
      refuse(socket, 500, { error: ERROR_CODE.internal, message: 'internal error; see the server log' });
      return;
    }
    try {
      this.audit.write({
        verb: 'cluster_shell_open',
        actor: admitted.subject,
        cluster: admitted.cluster,
        sessionId: admitted.sessionId,
        body: {
          cluster: admitted.cluster,
          mode: admitted.mode,
          tier: admitted.tier,
          session_id: admitted.sessionId,
          actor: admitted.subject,
        },
      });
    } catch (err) {
      admitted.release();
      this.log.error({ err: (err as Error).message }, 'audit store unavailable; refusing the session');
      refuse(socket, 500, { error: ERROR_CODE.internal, message: 'the audit store is unavailable' });
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new ShellSession(
        ws,
        admitted,
        this.registry.gateway(admitted.cluster),
        this.config.clusterShell,
        this.config.exec,
        this.audit,
        this.log.logger,
      );
      this.sessions.add(session);
      void session.run();
      ws.once('close', () => {
        this.sessions.delete(session);
      });
    });
  }
}
