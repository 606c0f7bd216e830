import {
  Injectable,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
  type OnModuleInit,
} from '@nestjs/common';
import { ERROR_CODE, TERMINAL_ERROR } from '@periscope/protocol';
import { Metrics } from '@periscope/observability';
import { PinoLogger } from 'nestjs-pino';

import { AuthService, type LoginEnd } from '../auth/auth.service';
import type { Principal } from '../auth/session-store';
import { settleWithin } from '../common/deadline';
import { DomainError } from '../common/domain-error';
import { AuditLog, SqliteAuditLog } from '../audit/audit-log';
import { orphanCloseBody } from '../audit/audit-store';
import { cleanEndReason } from '@periscope/protocol';
import { RECORD_LEASE, SharedState } from '../shared-state/shared-state.service';
import { readmit } from './readmit';
import { SessionMetrics } from './session-metrics';
import type { RehomeKind } from './rehome-store';
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
  /** the replica holding the session (several replicas only) */
  replica?: string;
}

/** How long DELETE /api/sessions/:id waits for the teardown before it answers. */
export const END_REQUEST_WAIT_MS = 10_000;

/** The open and close verbs of each kind of terminal session. */
const SESSION_VERBS = [
  ['cluster_shell_open', 'cluster_shell_close'],
  ['exec_open', 'exec_close'],
] as const;

/**
 * Several replicas (audit in PostgreSQL, state in Redis): how often each looks for sessions whose
 * replica is gone, and how old an open must be before it counts (its replica records itself as
 * the owner only once the socket is upgraded; a session ended before that writes its own close
 * within its teardown deadlines, well under this).
 */
export const ORPHAN_SWEEP = { intervalMs: 10_000, minAgeMs: RECORD_LEASE.leaseMs, pageSize: 500 };

/** Every live terminal session of this server replica (both kinds), by id. */
@Injectable()
export class TerminalSessions implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly sessions = new Map<string, TerminalSession>();
  readonly metrics: SessionMetrics;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** sessions whose owner claim is in flight */
  private readonly claiming = new Set<string>();
  private sweeping: Promise<void> | undefined;
  /**
   * Re-homing (several replicas): asked before a session is closed as `replica_lost`; false when
   * the session was (or is being) taken over by the replica its agent's tunnel moved to.
   */
  lostGuard: ((sessionId: string) => Promise<boolean>) | undefined;
  /** Re-homing: the kinds of session that can move to another replica, by kind (two at most). */
  readonly rehomeKinds = new Map<string, RehomeKind>();

  constructor(
    private readonly audit: AuditLog,
    private readonly log: PinoLogger,
    metrics: Metrics,
    auth: AuthService,
    @Optional() private readonly shared?: SharedState,
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

  /**
   * Whether other replicas write the same audit store while running sessions of their own (audit
   * in PostgreSQL, state in Redis): then an open without a close may be another replica's live
   * session, and only those without a live owner are closed (see {@link sweepLostReplicas}).
   */
  private get manyReplicas(): boolean {
    return this.shared?.shared === true && !(this.audit instanceof SqliteAuditLog);
  }

  /**
   * One server: sessions a previous run left open (crash, kill) get their close now
   * (`server_restart`), so every open has a close.
   */
  async onModuleInit(): Promise<void> {
    if (this.manyReplicas) return; // after Redis is connected: onApplicationBootstrap
    for (const [open, close] of SESSION_VERBS) {
      const ids = await this.audit.closeOrphans(open, close);
      if (ids.length > 0)
        this.log.warn(
          { sessions: ids, verb: close },
          'closed sessions a previous server run left open (server_restart)',
        );
    }
  }

  /** Several replicas: the sweep for sessions of lost replicas, at start and every interval. */
  onApplicationBootstrap(): void {
    if (!this.manyReplicas) return;
    void this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), ORPHAN_SWEEP.intervalMs);
    this.sweepTimer.unref();
  }

  /** One sweep at a time; never rejects. Resolves when this sweep is done. */
  sweep(): Promise<void> {
    this.sweeping ??= this.sweepLostReplicas()
      .catch((err: unknown) => {
        this.log.warn(
          { err: (err as Error).message },
          'could not look for sessions of lost replicas; retrying at the next sweep',
        );
      })
      .finally(() => {
        this.sweeping = undefined;
      });
    return this.sweeping;
  }

  /**
   * Sessions whose replica is gone (killed, cut off: its ownership lease expired) get their close
   * with `close_reason: replica_lost`, written once whichever replica notices first. A session is
   * lost when its open is older than ORPHAN_SWEEP.minAgeMs, it has no close, and no replica owns
   * it (or the owner is this replica's id but it holds no such session: a restart under a fixed
   * PERISCOPE_REPLICA_ID). Another replica's live session is never closed.
   */
  private async sweepLostReplicas(): Promise<void> {
    const owners = this.shared?.sessions;
    const me = this.shared?.replicaId;
    if (!owners || me === undefined) return;
    // This replica's own sessions first: one whose record is missing (a claim that failed, a
    // lease lost while Redis was away) is claimed again, or another replica would close it.
    const recorded = new Set(owners.held());
    for (const id of this.sessions.keys()) {
      if (recorded.has(id) || this.claiming.has(id)) continue;
      const mine = await owners.claim(id).catch(() => false);
      this.log.warn({ sessionId: id, claimed: mine }, 'a live session had no owner record; claimed it again');
      if (!this.sessions.has(id)) await owners.release(id).catch(() => undefined); // it ended meanwhile
    }
    const held = new Set(owners.held());
    for (const [open, close] of SESSION_VERBS) {
      const closed: string[] = [];
      let after = 0;
      for (;;) {
        const page = await this.audit.unclosed(open, close, ORPHAN_SWEEP.pageSize, after);
        for (const o of page) {
          const age = Date.now() - Date.parse(o.time);
          if (age < ORPHAN_SWEEP.minAgeMs || this.sessions.has(o.sessionId) || held.has(o.sessionId))
            continue;
          const owner = await owners.ownerOf(o.sessionId);
          if (owner !== undefined && owner !== me) continue;
          if (this.lostGuard && !(await this.lostGuard(o.sessionId))) continue;
          const w = await this.audit.writeOnce({
            verb: close,
            actor: o.actor,
            cluster: o.cluster,
            sessionId: o.sessionId,
            body: orphanCloseBody(o.body, age, 'replica_lost'),
          });
          if (w !== undefined) closed.push(o.sessionId);
        }
        if (page.length < ORPHAN_SWEEP.pageSize) break;
        after = page[page.length - 1]?.id ?? after;
      }
      if (closed.length > 0)
        this.log.warn(
          { sessions: closed, verb: close },
          'closed sessions whose server replica is gone (replica_lost)',
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

  /**
   * `adopted`: a session taken over from a lost replica (re-homing), whose ownership record is
   * already this replica's; the add listeners (a new recording) are not told.
   */
  add(s: TerminalSession, opts: { adopted?: boolean } = {}): void {
    // Cap slots bound the number of sessions; ids are random UUIDs.
    if (this.sessions.has(s.id)) throw new Error(`duplicate session id ${s.id}`);
    this.sessions.set(s.id, s);
    if (opts.adopted !== true) {
      this.recordOwner(s.id, true);
      for (const cb of this.addListeners) cb(s);
    }
    s.onEnded((reason) => {
      this.sessions.delete(s.id);
      this.recordOwner(s.id, false);
      this.metrics.closed.inc({ kind: s.info.kind, reason });
      this.metrics.duration.observe({ kind: s.info.kind }, (Date.now() - s.info.startedAt.getTime()) / 1000);
    });
  }

  /**
   * Which replica holds the session, in the shared state (with several replicas, what keeps the
   * others from closing it as lost; routing reads it later). A claim that fails is made again by
   * the next sweep.
   */
  private recordOwner(id: string, live: boolean): void {
    const owners = this.shared?.sessions;
    if (!owners) return;
    if (live) this.claiming.add(id); // bounded by the live sessions
    (live ? owners.claim(id) : owners.release(id))
      .finally(() => this.claiming.delete(id))
      // a session that ended while it was being claimed: its release may have gone first
      .then(() => (live && !this.sessions.has(id) ? owners.release(id) : undefined))
      .catch((err: unknown) => {
        this.log.warn(
          { sessionId: id, err: (err as Error).message },
          'could not record the session owner in the shared state',
        );
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
    await this.audit.write({
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
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    if (this.sweeping) await settleWithin(this.sweeping, END_REQUEST_WAIT_MS);
    await Promise.all([...this.sessions.values()].map((s) => s.end('server_shutdown', null)));
  }
}
