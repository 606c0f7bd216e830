import type { IncomingMessage } from 'node:http';

import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE, SESSION_KIND } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { AuditLog } from '../audit/audit-log';
import { AuthService } from '../auth/auth.service';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ExecSettings, ServerConfig } from '../config/server-config';
import type { RehomeRecord } from '../terminal/rehome-store';
import { TerminalSession } from '../terminal/terminal-session';
import { TerminalSessions } from '../terminal/terminal-sessions.service';
import { TerminalSocketService } from '../terminal/terminal-socket.service';
import { decodeCommandParam } from './exec-request';
import { execSocketPath, PodExecAdmission, type ExecAdmitted } from './pod-exec-admission.service';
import { execAuditFields, PodExecDriver } from './pod-exec-driver';

const decode = (s: string | undefined): string => {
  try {
    return decodeURIComponent(s ?? '');
  } catch {
    return '\0';
  }
};

/**
 * `GET /api/clusters/{c}/pods/{ns}/{pod}/exec` (WebSocket; `container`, `command` (base64url JSON
 * array), `tty`): a ticket from POST …/exec/sessions or the admission checks, the durable
 * `exec_open` audit, then the session.
 */
@Injectable()
export class PodExecSocketRoute implements OnModuleInit {
  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly sockets: TerminalSocketService,
    private readonly auth: AuthService,
    private readonly admission: PodExecAdmission,
    private readonly registry: ClusterRegistry,
    private readonly audit: AuditLog,
    private readonly log: PinoLogger,
    private readonly sessions: TerminalSessions,
  ) {}

  onModuleInit(): void {
    // Several replicas: a pod exec on an agent's tunnel moves with it when its replica dies.
    this.sessions.rehomeKinds.set(SESSION_KIND.podExec, {
      pool: 'pod_exec',
      caps: () => this.admission.caps,
      build: (r, release) => this.rebuild(r, release),
    });
    this.sockets.register({
      pattern: /^\/api\/clusters\/([^/]+)\/pods\/([^/]+)\/([^/]+)\/exec$/,
      open: (req, m, url) =>
        this.open(req, { cluster: decode(m[1]), namespace: decode(m[2]), pod: decode(m[3]) }, url),
    });
  }

  private async open(
    req: IncomingMessage,
    t: { cluster: string; namespace: string; pod: string },
    url: URL,
  ): Promise<TerminalSession> {
    const ticket = url.searchParams.get('ticket');
    let a: ExecAdmitted;
    if (ticket !== null) {
      const principal = this.auth.require(req);
      const redeemed = await this.admission.tickets.redeem(
        ticket,
        principal.subject,
        execSocketPath(t.cluster, t.namespace, t.pod),
      );
      if (!redeemed)
        throw new DomainError(
          ERROR_CODE.auth,
          'the exec ticket is unknown, used or expired; ask for a new one (POST …/exec/sessions)',
        );
      a = redeemed;
    } else {
      const container = url.searchParams.get('container') ?? undefined;
      a = await this.admission.admit(
        req,
        { ...t, container: container === '' ? undefined : container },
        decodeCommandParam(url.searchParams.get('command')),
        url.searchParams.get('tty') !== 'false',
      );
    }
    const openFields = execAuditFields(a, a.container);
    try {
      await this.audit.write({
        verb: 'exec_open',
        actor: a.subject,
        cluster: a.cluster,
        sessionId: a.sessionId,
        body: openFields,
      });
    } catch (err) {
      a.release();
      this.log.error({ err: (err as Error).message }, 'audit store unavailable; refusing the session');
      throw new DomainError(ERROR_CODE.internal, 'the audit store is unavailable');
    }
    return new TerminalSession(
      {
        sessionId: a.sessionId,
        kind: SESSION_KIND.podExec,
        subject: a.subject,
        tier: a.principal.tier ?? null,
        cluster: a.cluster,
        namespace: a.namespace,
        pod: a.pod,
        ...(a.container !== undefined ? { container: a.container } : {}),
        startedAt: new Date(),
        // What another replica needs to take the session over: its open record (the command
        // redacted as there) and the cluster's settings are read there again.
        rehome: { open: openFields },
      },
      new PodExecDriver(a, this.registry.gateway(a.cluster), this.config.auth.authorization, this.audit),
      {
        idleSeconds: a.settings.idleSeconds,
        idleWarnSeconds: a.settings.idleWarnSeconds,
        heartbeatSeconds: a.settings.heartbeatSeconds,
        maxSessionSeconds: this.config.clusterShell.maxSessionSeconds,
        maxWarnSeconds: this.config.clusterShell.maxSessionWarnSeconds,
        graceSeconds: this.config.resume.graceSeconds,
        bufferBytes: this.config.resume.bufferBytes,
      },
      this.log.logger,
    );
  }

  /**
   * A pod exec taken over from a lost replica (re-homing): the same session from its record, its
   * close written here with the fields of its open record.
   */
  private rebuild(r: RehomeRecord, release: () => void): TerminalSession {
    const open = (r.detail?.['open'] ?? {}) as Record<string, unknown>;
    const text = (k: string): string | undefined => (typeof open[k] === 'string' ? open[k] : undefined);
    const namespace = text('namespace') ?? '';
    const pod = text('pod') ?? '';
    const container = text('container');
    const tier = r.tier ?? undefined;
    const settings: ExecSettings = { ...this.config.exec, ...this.registry.entry(r.cluster).exec };
    const a: ExecAdmitted = {
      sessionId: r.sessionId,
      // Used to start an exec and to explain a refused one: neither happens to a moved session.
      principal: {
        subject: r.subject,
        email: '',
        groups: [],
        tier: tier as ExecAdmitted['principal']['tier'],
      },
      subject: r.subject,
      cluster: r.cluster,
      namespace,
      pod,
      container,
      command: Array.isArray(open['command']) ? (open['command'] as string[]) : [],
      tty: open['tty'] === true,
      settings,
      release,
    };
    return new TerminalSession(
      {
        sessionId: r.sessionId,
        kind: SESSION_KIND.podExec,
        subject: r.subject,
        tier: r.tier,
        cluster: r.cluster,
        namespace,
        pod,
        ...(container !== undefined ? { container } : {}),
        startedAt: new Date(r.startedAt),
        ...(r.loginId !== undefined ? { loginId: r.loginId } : {}),
        ...(r.detail !== undefined ? { rehome: r.detail } : {}),
      },
      new PodExecDriver(
        a,
        this.registry.gateway(r.cluster),
        this.config.auth.authorization,
        this.audit,
        open,
      ),
      {
        idleSeconds: settings.idleSeconds,
        idleWarnSeconds: settings.idleWarnSeconds,
        heartbeatSeconds: settings.heartbeatSeconds,
        maxSessionSeconds: this.config.clusterShell.maxSessionSeconds,
        maxWarnSeconds: this.config.clusterShell.maxSessionWarnSeconds,
        graceSeconds: this.config.resume.graceSeconds,
        bufferBytes: this.config.resume.bufferBytes,
      },
      this.log.logger,
    );
  }
}
