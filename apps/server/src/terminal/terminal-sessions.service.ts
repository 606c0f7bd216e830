import { Injectable, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ERROR_CODE, TERMINAL_ERROR } from '@periscope/protocol';
import { Metrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { AuthService, type LoginEnd } from '../auth/auth.service';
import type { Principal } from '../auth/session-store';
import { settleWithin } from '../common/deadline';
import { DomainError } from '../common/domain-error';
import { AuditStore } from '../audit/audit-store';
import { cleanEndReason } from '@periscope/protocol';
import { readmit } from './readmit';
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
  /** stdin bytes from the browser, and output bytes to it, so far */
  bytesIn: number;
  bytesOut: number;
  /** the last stdin or output byte (or keep-alive), and the seconds since (the idle cut's measure) */
  lastActivityAt: string;
  idleSeconds: number;
}

/** How long DELETE /api/sessions/:id waits for the teardown before it answers. */
export const END_REQUEST_WAIT_MS = 10_000;

/** Every live terminal session of this server replica (both kinds), by id. */
@Injectable()
export class TerminalSessions implements OnModuleInit, BeforeApplicationShutdown {
  private readonly sessions = new Map<string, TerminalSession>();
  readonly metrics: SessionMetrics;

  constructor(
    private readonly audit: AuditStore,
    private readonly log: PinoLogger,
    metrics: Metrics,
    auth: AuthService,
  ) {
    this.metrics = new SessionMetrics(metrics.registry, () => this.sessions.values());
    // Terminals live no longer than their sign-in, and no higher than its tier.
    auth.onLoginEnded((loginId, why) => {
      this.endLogin(loginId, why);
    });
    auth.onPrincipalChanged((loginId, _before, after) => {
      this.readmitLogin(loginId, after);
    });
  }

  /** Ends every session of a sign-in that signed out (or whose refresh the provider refused). */
  endLogin(loginId: string, why: LoginEnd): number {
    const mine = [...this.sessions.values()].filter((s) => s.info.loginId === loginId);
    for (const s of mine) {
      this.log.info({ sessionId: s.id, subject: s.info.subject, why }, 'sign-in ended; ending its terminal');
      void s.end('signed_out', null, {
        code: TERMINAL_ERROR.signedOut,
        message:
          why === 'signed_out'
            ? 'you signed out, which ends the terminals of that sign-in; sign in again and open a new session'
            : 'your sign-in ended (the identity provider refused to renew it), which ends its terminals; sign in again and open a new session',
        retryable: false,
      });
    }
    return mine.length;
  }

  /** A refresh changed a sign-in's principal: its sessions go on only if their tier still admits them. */
  readmitLogin(loginId: string, now: Principal): number {
    let ended = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.info.loginId !== loginId) continue;
      const refused = readmit(s.info, now.tier);
      if (!refused) continue;
      ended++;
      this.log.info(
        { sessionId: s.id, subject: s.info.subject, was: s.info.tier, now: now.tier ?? null },
        'tier changed at refresh; ending the terminal',
      );
      void s.end('tier_changed', null, refused);
    }
    return ended;
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

  private readonly addListeners: ((s: TerminalSession) => void)[] = [];

  /** Called for every session as it is added, before it starts (recording, live watch). */
  onAdded(cb: (s: TerminalSession) => void): void {
    this.addListeners.push(cb);
  }

  get size(): number {
    return this.sessions.size;
  }

  add(s: TerminalSession): void {
    // Cap slots bound the number of sessions; ids are random UUIDs.
    if (this.sessions.has(s.id)) throw new Error(`duplicate session id ${s.id}`);
    this.sessions.set(s.id, s);
    for (const cb of this.addListeners) cb(s);
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
    const now = Date.now();
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
        bytesIn: s.stdinBytes,
        bytesOut: s.bytesOut,
        lastActivityAt: new Date(s.lastActivityAt).toISOString(),
        idleSeconds: Math.max(0, Math.floor((now - s.lastActivityAt) / 1000)),
      }));
  }

  /**
   * Ends a session for its owner or an admin; audited. `reason` is the person's free text (one
   * line, bounded: see end-reason.ts); it lands in `session_end_request`, in the close record
   * (`ended_by`, `end_reason`; `close_reason` stays the code) and in the `closed` frame.
   */
  async endBy(id: string, p: Principal, isAdmin: boolean, reason?: string): Promise<void> {
    const s = this.sessions.get(id);
    // Someone else's session is as unknown as a missing one to a non-admin (no existence leak).
    if (!s || (!isAdmin && s.info.subject !== p.subject))
      throw new DomainError(ERROR_CODE.notFound, `no live session ${id} of yours`);
    const byOwner = s.info.subject === p.subject;
    const endReason = cleanEndReason(reason);
    this.audit.write({
      verb: 'session_end_request',
      actor: p.subject,
      cluster: s.info.cluster,
      sessionId: id,
      body: {
        session_id: id,
        kind: s.info.kind,
        owner: s.info.subject,
        by: p.subject,
        ...(endReason !== undefined ? { end_reason: endReason } : {}),
      },
    });
    // The reason is in the audit record; the log line says only that there is one.
    this.log.info(
      { sessionId: id, by: p.subject, withReason: endReason !== undefined },
      'session ended on request',
    );
    // The session is ended at once (closed frame, no more input); its teardown has its own
    // deadlines, and the request does not wait for more than END_REQUEST_WAIT_MS of it.
    await settleWithin(
      s.end(byOwner ? 'ended_by_user' : 'ended_by_admin', null, undefined, {
        by: p.subject,
        ...(endReason !== undefined ? { reason: endReason } : {}),
      }),
      END_REQUEST_WAIT_MS,
    );
  }

  /** Before the listener closes: every session says why it ends, tears down and is audited. */
  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.end('server_shutdown', null)));
  }
}
