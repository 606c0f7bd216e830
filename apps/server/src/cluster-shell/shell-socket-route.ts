import type { IncomingMessage } from 'node:http';

import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE, SESSION_KIND } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { AuditLog } from '../audit/audit-log';
import { AuthService } from '../auth/auth.service';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { TerminalSession, type SessionLimits } from '../terminal/terminal-session';
import { TerminalSocketService } from '../terminal/terminal-socket.service';
import { ShellAdmission, shellSocketPath, type Admitted } from './shell-admission.service';
import { effectiveShellSettings } from '../config/effective-shell-settings';
import { ShellDriver } from './shell-driver';

/**
 * `GET /api/clusters/{c}/shell` (WebSocket): a ticket from POST …/shell/sessions or the full
 * admission checks, then the durable `cluster_shell_open` audit, then the session.
 */
@Injectable()
export class ShellSocketRoute implements OnModuleInit {
  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly sockets: TerminalSocketService,
    private readonly auth: AuthService,
    private readonly admission: ShellAdmission,
    private readonly registry: ClusterRegistry,
    private readonly audit: AuditLog,
    private readonly log: PinoLogger,
  ) {}

  onModuleInit(): void {
    this.sockets.register({
      pattern: /^\/api\/clusters\/([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)\/shell$/,
      open: (req, m, url) => this.open(req, m[1] ?? '', url),
    });
  }

  private async open(req: IncomingMessage, cluster: string, url: URL): Promise<TerminalSession> {
    const ticket = url.searchParams.get('ticket');
    let a: Admitted;
    if (ticket !== null) {
      const principal = this.auth.require(req);
      const t = await this.admission.tickets.redeem(ticket, principal.subject, shellSocketPath(cluster));
      if (!t)
        throw new DomainError(
          ERROR_CODE.auth,
          'the shell ticket is unknown, used or expired; ask for a new one (POST …/shell/sessions)',
        );
      a = t;
    } else {
      a = await this.admission.admit(req, cluster, url.searchParams.get('mode') ?? undefined);
    }
    try {
      await this.audit.write({
        verb: 'cluster_shell_open',
        actor: a.subject,
        cluster: a.cluster,
        sessionId: a.sessionId,
        body: { cluster: a.cluster, mode: a.mode, tier: a.tier, session_id: a.sessionId, actor: a.subject },
      });
    } catch (err) {
      a.release();
      this.log.error({ err: (err as Error).message }, 'audit store unavailable; refusing the session');
      throw new DomainError(ERROR_CODE.internal, 'the audit store is unavailable');
    }
    const c = this.config;
    // This cluster's settings (image, pod template, idle cut): server-wide under its overrides.
    const shell = effectiveShellSettings(c.clusterShell, this.registry.entry(a.cluster));
    return new TerminalSession(
      {
        sessionId: a.sessionId,
        kind: SESSION_KIND.clusterShell,
        subject: a.subject,
        tier: a.tier,
        cluster: a.cluster,
        mode: a.mode,
        startedAt: new Date(),
      },
      new ShellDriver(a, this.registry.gateway(a.cluster), shell, this.audit, this.log.logger),
      shellSessionLimits(c, shell.idleSeconds),
      this.log.logger,
    );
  }
}

/** A cluster-shell session's limits: its cluster's idle cut, the rest from the server's settings. */
export function shellSessionLimits(c: ServerConfig, idleSeconds: number): SessionLimits {
  return {
    idleSeconds,
    idleWarnSeconds: c.exec.idleWarnSeconds,
    heartbeatSeconds: c.exec.heartbeatSeconds,
    maxSessionSeconds: c.clusterShell.maxSessionSeconds,
    maxWarnSeconds: c.clusterShell.maxSessionWarnSeconds,
    graceSeconds: c.resume.graceSeconds,
    bufferBytes: c.resume.bufferBytes,
  };
}
