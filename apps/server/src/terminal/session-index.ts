import { Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';

import type { Principal } from '../auth/session-store';
import { OutageLog, parseRecord } from '../shared-state/redis-record';
import { PendingOps } from '../shared-state/redis-script';
import { RECORD_LEASE, SharedState } from '../shared-state/shared-state.service';
import { TerminalSessions, type SessionView } from './terminal-sessions.service';

/** How often a replica looks whether its sessions changed (opened, ended, state) and republishes. */
export const INDEX_CHECK_EVERY_MS = 1_000;
/** A snapshot is written again at least this often (its lease renewed, byte counts refreshed). */
export const INDEX_REFRESH_EVERY_MS = Math.floor(RECORD_LEASE.leaseMs / 3);
/** Replicas read at most (a fleet runs a handful). */
export const MAX_INDEX_REPLICAS = 64;
/** Sessions per snapshot at most (the caps keep a replica far below). */
export const MAX_INDEX_SESSIONS = 5_000;
/** A snapshot longer than this is not read. */
const MAX_SNAPSHOT_CHARS = 8 * 1024 * 1024;

interface Snapshot {
  replica: string;
  sessions: SessionView[];
}

const STRING_FIELDS = ['sessionId', 'kind', 'cluster', 'subject', 'startedAt', 'state', 'lastActivityAt'];

/** A snapshot read back from Redis, checked: its well-formed sessions (bounded), or undefined. */
export function parseSnapshot(text: string | null | undefined): Snapshot | undefined {
  const r = parseRecord(text, MAX_SNAPSHOT_CHARS);
  if (r === undefined) return undefined;
  if (typeof r['replica'] !== 'string' || !Array.isArray(r['sessions'])) return undefined;
  const sessions = (r['sessions'] as unknown[])
    .slice(0, MAX_INDEX_SESSIONS)
    .filter(
      (s): s is SessionView =>
        typeof s === 'object' &&
        s !== null &&
        STRING_FIELDS.every((f) => typeof (s as Record<string, unknown>)[f] === 'string'),
    );
  return { replica: r['replica'], sessions };
}

/**
 * The sessions one person sees (pure): this replica's live ones first, then the other
 * replicas' snapshots, each session once and named with the replica holding it (`localReplica`
 * for this one's; several replicas only), yours only unless `all` (admins); idle seconds counted
 * from the last activity at `now`; ordered by start, then id, so every replica answers in the
 * same order.
 */
export function mergeSessions(
  local: SessionView[],
  snapshots: Snapshot[],
  p: Pick<Principal, 'subject'>,
  all: boolean,
  now: number,
  localReplica?: string,
): SessionView[] {
  const byId = new Map<string, SessionView>();
  for (const s of local)
    byId.set(s.sessionId, localReplica === undefined ? s : { ...s, replica: localReplica });
  for (const snap of snapshots)
    for (const s of snap.sessions) {
      if (byId.has(s.sessionId) || (!all && s.subject !== p.subject)) continue;
      const last = Date.parse(s.lastActivityAt);
      byId.set(s.sessionId, {
        ...s,
        replica: snap.replica,
        idleSeconds: Number.isFinite(last) ? Math.max(0, Math.floor((now - last) / 1000)) : s.idleSeconds,
      });
    }
  return [...byId.values()].sort((a, b) =>
    a.startedAt === b.startedAt
      ? a.sessionId.localeCompare(b.sessionId)
      : a.startedAt.localeCompare(b.startedAt),
  );
}

/**
 * Several replicas (PERISCOPE_REDIS_URL): every replica answers `GET /api/sessions` the same.
 * Each replica publishes one snapshot of its live sessions, `<prefix>sessview:<replica>` (what
 * the list shows: kind, cluster, subject, tier, target, start, state, byte counts; no sign-in
 * id, no token), under a 30 s lease: rewritten within a second of a session opening, ending or
 * changing state, and every 10 s otherwise; deleted at shutdown; it expires when the replica
 * dies. `<prefix>sessview:replicas` (a sorted set, scored by lease end) names the live
 * snapshots. A list reads this replica's sessions live and the others' snapshots (one Redis
 * round trip for the names, one MGET). One snapshot per replica rather than a record per
 * session, or a call to every replica: one write per change whatever the number of sessions,
 * no per-session renewals, nothing to clean up after a replica dies, and a list that does not
 * wait on the slowest replica. In memory (one replica): the list is this replica's, as before.
 */
@Injectable()
export class SessionIndex implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer: NodeJS.Timeout | undefined;
  private lastShape = '';
  private lastWrite = 0;
  private readonly pending = new PendingOps();
  private writing = false;
  private readonly writes: OutageLog;
  private readonly reads: OutageLog;

  constructor(
    private readonly sessions: TerminalSessions,
    private readonly shared: SharedState,
    log: PinoLogger,
  ) {
    this.writes = new OutageLog(log, {
      down: "could not write this replica's sessions to Redis; other replicas do not list them until it is back (retrying every second)",
      back: 'session index written to Redis again',
    });
    this.reads = new OutageLog(log, {
      down: "could not read the other replicas' sessions from Redis; listing this replica's own until it is back",
      back: 'session index readable in Redis again',
    });
  }

  private key(prefix: string, replica: string): string {
    return `${prefix}sessview:${replica}`;
  }

  private names(prefix: string): string {
    return `${prefix}sessview:replicas`;
  }

  onApplicationBootstrap(): void {
    if (this.shared.redisStore === undefined) return;
    this.timer = setInterval(() => {
      this.tick();
    }, INDEX_CHECK_EVERY_MS);
    this.timer.unref();
    this.tick();
  }

  /**
   * A clean shutdown, while Redis still answers: the snapshot is withdrawn (this replica's
   * sessions are ending), within 2 s; otherwise it expires with its lease.
   */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.pending.drain(2_000);
    const store = this.shared.redisStore;
    if (store === undefined || store.redis.status !== 'ready') return;
    void this.pending
      .track(
        store.redis
          .multi()
          .del(this.key(store.prefix, store.replica))
          .zrem(this.names(store.prefix), store.replica)
          .exec(),
      )
      .catch(() => undefined); // it expires with its lease
    await this.pending.drain(2_000);
  }

  /** Republishes this replica's snapshot when its sessions changed, or it is due for renewal. */
  private tick(): void {
    const store = this.shared.redisStore;
    if (store === undefined || this.timer === undefined || this.writing) return;
    const all = this.sessions.list({ subject: '' } as Principal, true).slice(0, MAX_INDEX_SESSIONS);
    const shape = all.map((s) => `${s.sessionId}:${s.state}`).join(',');
    const now = Date.now();
    if (shape === this.lastShape && now - this.lastWrite < INDEX_REFRESH_EVERY_MS) return;
    const snapshot: Snapshot = { replica: store.replica, sessions: all };
    this.writing = true;
    void this.pending
      .track(
        store.redis
          .multi()
          .set(this.key(store.prefix, store.replica), JSON.stringify(snapshot), 'PX', RECORD_LEASE.leaseMs)
          .zadd(this.names(store.prefix), now + RECORD_LEASE.leaseMs, store.replica)
          .zremrangebyscore(this.names(store.prefix), '-inf', now)
          .exec(),
      )
      .then(
        () => {
          this.lastShape = shape;
          this.lastWrite = now;
          this.writes.ok();
        },
        (err: unknown) => {
          this.writes.failed(err);
        },
      )
      .finally(() => {
        this.writing = false;
      });
  }

  /**
   * The live sessions `p` sees (`all`: every session, for admins) on every replica. Redis
   * unreachable: this replica's own, logged.
   */
  async list(p: Principal, all: boolean): Promise<SessionView[]> {
    const local = this.sessions.list(p, all);
    const store = this.shared.redisStore;
    if (store === undefined) return local;
    let snapshots: Snapshot[];
    try {
      const now = Date.now();
      const replicas = (
        await store.redis.zrangebyscore(this.names(store.prefix), now, '+inf', 'LIMIT', 0, MAX_INDEX_REPLICAS)
      ).filter((r) => r !== store.replica);
      const texts =
        replicas.length > 0 ? await store.redis.mget(...replicas.map((r) => this.key(store.prefix, r))) : [];
      snapshots = texts.flatMap((t) => parseSnapshot(t) ?? []);
      this.reads.ok();
    } catch (err) {
      this.reads.failed(err);
      return local;
    }
    return mergeSessions(local, snapshots, p, all, Date.now(), store.replica);
  }
}
