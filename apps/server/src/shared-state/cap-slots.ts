/** One reserved session slot. */
export interface ActiveSession {
  sessionId: string;
  subject: string;
  cluster: string;
  startedAt: string;
  /** what the session is on, for the 429 body (namespace, pod, container for pod exec) */
  detail?: Record<string, string>;
}

export type CapRefusal =
  | { cap: 'user'; limit: number; activeSessions: ActiveSession[] }
  | { cap: 'cluster'; limit: number; activeSessions: number };

/**
 * Concurrent-session caps: per OIDC subject across all clusters, and per cluster across all
 * subjects. Checking and taking a slot is one synchronous step (no check-then-add race); a
 * reservation is released exactly once.
 */
export class CapReservations {
  private readonly sessions = new Map<string, ActiveSession>();

  constructor(
    private readonly perUser: number,
    private readonly perCluster: number,
    private readonly now: () => Date = () => new Date(),
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  ofUser(subject: string): ActiveSession[] {
    return [...this.sessions.values()].filter((s) => s.subject === subject);
  }

  ofCluster(cluster: string): ActiveSession[] {
    return [...this.sessions.values()].filter((s) => s.cluster === cluster);
  }

  /** Ids of every session holding a slot (live, or admitted and about to start). */
  ids(): string[] {
    return [...this.sessions.keys()];
  }

  has(sessionId: string): boolean {
    return this.sessions.has(sessionId);
  }

  /** Takes a slot or says which cap is full. Per-cluster overrides of both limits may be given. */
  reserve(
    subject: string,
    cluster: string,
    sessionId: string,
    opts: { perUser?: number; perCluster?: number; detail?: Record<string, string> } = {},
  ): { ok: true; release: () => void } | ({ ok: false } & CapRefusal) {
    const perUser = opts.perUser ?? this.perUser;
    const perCluster = opts.perCluster ?? this.perCluster;
    const mine = this.ofUser(subject);
    if (mine.length >= perUser) return { ok: false, cap: 'user', limit: perUser, activeSessions: mine };
    const onCluster = this.ofCluster(cluster).length;
    if (onCluster >= perCluster)
      return { ok: false, cap: 'cluster', limit: perCluster, activeSessions: onCluster };
    this.sessions.set(sessionId, {
      sessionId,
      subject,
      cluster,
      startedAt: this.now().toISOString(),
      ...(opts.detail ? { detail: opts.detail } : {}),
    });
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.sessions.delete(sessionId);
      },
    };
  }
}

export type CapOutcome = { ok: true; release: () => void } | ({ ok: false } & CapRefusal);

export interface ReserveOptions {
  perUser?: number;
  perCluster?: number;
  detail?: Record<string, string>;
}

/**
 * The cap-slot port: {@link CapReservations} in memory (one replica), or slots in Redis shared by
 * every replica (shared-state/redis-cap-slots.ts). Checking every applicable cap and taking the
 * slot is one atomic step in both; `release` frees the slot exactly once.
 */
export interface CapSlots {
  /** slots this replica holds */
  readonly size: number;
  /** whether this replica holds the slot of `sessionId` */
  has(sessionId: string): boolean;
  /** ids of every slot held, on every replica (the reaper spares their objects) */
  ids(): Promise<string[]>;
  reserve(subject: string, cluster: string, sessionId: string, opts?: ReserveOptions): Promise<CapOutcome>;
}

/** The in-memory adapter: the caps of this one process, as they always were. */
export class InMemoryCapSlots implements CapSlots {
  constructor(readonly reservations: CapReservations) {}

  get size(): number {
    return this.reservations.size;
  }

  has(sessionId: string): boolean {
    return this.reservations.has(sessionId);
  }

  ids(): Promise<string[]> {
    return Promise.resolve(this.reservations.ids());
  }

  reserve(subject: string, cluster: string, sessionId: string, opts?: ReserveOptions): Promise<CapOutcome> {
    return Promise.resolve(this.reservations.reserve(subject, cluster, sessionId, opts));
  }
}
