import { Injectable, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';
import { Metrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import type { Principal } from '../auth/session-store';
import { DomainError } from '../common/domain-error';
import { AuditStore } from '../audit/audit-store';
import { SessionMetrics } from './session-metrics';
import type { TerminalSession } from './terminal-session';

export interface SessionView {
  sessionId: string;
  kind: string;
  cluster: string;
  subject: string;
  tier: string | null;
  namespace?: string;
  pod?: string;
  container?: string;
  mode?: string;
  startedAt: string;
  state: string;
  bytesOut: number;
}

/** Every live terminal session of this server replica (both kinds), by id. */
@Injectable()
export class TerminalSessions implements OnModuleInit, BeforeApplicationShutdown {
  private readonly sessions = new Map<string, TerminalSession>();
  readonly metrics: SessionMetrics;

  constructor(
    private readonly audit: AuditStore,
    private readonly log: PinoLogger,
    metrics: Metrics,
  ) {
    this.metrics = new SessionMetrics(metrics.registry, () => this.sessions.values());
  }

  /** Sessions a previous run left open (crash, kill) get their close now: every open has a close. */
  onModuleInit(): void {
    for (const [open, close] of [
      ['cluster_shell_open', 'cluster_shell_close'],
      ['exec_open', 'exec_close'],
    ] as const) {
      const ids = this.audit.closeOrphans(open, close);
      if (ids.length > 0)
        this.log.warn(
          { sessions: ids, verb: close },
          'closed sessions a previous server run left open (server_restart)',
        );
    }
  }

  get size(): number {
    return this.sessions.size;
  }

  add(s: TerminalSession): void {
    // Cap slots bound the number of sessions; ids are random UUIDs.
    if (this.sessions.has(s.id)) throw new Error(`duplicate session id ${s.id}`);
    this.sessions.set(s.id, s);
    s.onEnded((reason) => {
      this.sessions.delete(s.id);
      this.metrics.closed.inc({ kind: s.info.kind, reason });
      this.metrics.duration.observe({ kind: s.info.kind }, (Date.now() - s.info.startedAt.getTime()) / 1000);
    });
  }

  get(id: string): TerminalSession | undefined {
    return this.sessions.get(id);
  }

  ids(): string[] {
    return [...this.sessions.keys()];
  }

  /** Admins see every session; everyone else their own. */
  list(p: Principal, all: boolean): SessionView[] {
    return [...this.sessions.values()]
      .filter((s) => all || s.info.subject === p.subject)
      .map((s) => ({
        sessionId: s.id,
        kind: s.info.kind,
        cluster: s.info.cluster,
        subject: s.info.subject,
        tier: s.info.tier,
        ...(s.info.namespace !== undefined ? { namespace: s.info.namespace } : {}),
        ...(s.info.pod !== undefined ? { pod: s.info.pod } : {}),
        ...(s.info.container !== undefined ? { container: s.info.container } : {}),
        ...(s.info.mode !== undefined ? { mode: s.info.mode } : {}),
        startedAt: s.info.startedAt.toISOString(),
        state: s.state,
        bytesOut: s.bytesOut,
      }));
  }

  /** Ends a session for its owner or an admin; audited. */
  async endBy(id: string, p: Principal, isAdmin: boolean): Promise<void> {
    const s = this.sessions.get(id);
    if (!s || (!isAdmin && s.info.subject !== p.subject))
      throw new DomainError(ERROR_CODE.notFound, `no live session ${id} of yours`);
    const byOwner = s.info.subject === p.subject;
    this.audit.write({
      verb: 'session_end_request',
      actor: p.subject,
      cluster: s.info.cluster,
      sessionId: id,
      body: { session_id: id, kind: s.info.kind, owner: s.info.subject, by: p.subject },
    });
    this.log.info({ sessionId: id, by: p.subject }, 'session ended on request');
    await s.end(byOwner ? 'ended_by_user' : 'ended_by_admin', null);
  }

  /** Before the listener closes: every session says why it ends, tears down and is audited. */
  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.end('server_shutdown', null)));
  }
}
