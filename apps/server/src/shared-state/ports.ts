/**
 * The narrow ports of the state several server replicas share. Each has an in-memory adapter
 * (one replica: today's behaviour) and a Redis adapter (several replicas), chosen by
 * PERISCOPE_REDIS_URL. Cap slots: shared-state/cap-slots.ts (CapSlots).
 */

/**
 * Who holds what (which replica holds a terminal session, which holds a cluster's agent tunnel):
 * a lease per id, renewed while held, released only by its owner. A replica that dies stops
 * renewing and its records expire. Records only for now (routing reads them later).
 */
export interface Ownership {
  /** what the records are of, for logs: `session`, `agent` */
  readonly kind: string;
  /**
   * Records this replica as the owner of `id`. `takeOver`: even when another replica holds it (an
   * agent that reconnected here); otherwise only when nobody does. Resolves whether it is ours.
   */
  claim(id: string, opts?: { takeOver?: boolean }): Promise<boolean>;
  /** Drops the record when this replica still owns it (never another replica's). */
  release(id: string): Promise<void>;
  /** The replica owning `id`, or undefined. */
  ownerOf(id: string): Promise<string | undefined>;
  /** Ids this replica owns (its own view). */
  held(): string[];
  /**
   * Told when a renewal finds a record no longer this replica's (expired, or taken over by
   * another replica: a session re-homed there). Listeners never throw.
   */
  onLost?(cb: (id: string) => void): void;
}

/** A lock one replica holds at a time (the shell reaper's): a lease renewed while held. */
export interface SharedLock {
  readonly name: string;
  /** Whether this replica holds the lock now (the in-memory lock always is). */
  isHeld(): boolean;
}

/** One replica: this process owns everything it records. */
export class InMemoryOwnership implements Ownership {
  private readonly records = new Set<string>();

  constructor(
    readonly kind: string,
    private readonly replica: string,
  ) {}

  claim(id: string, opts: { takeOver?: boolean } = {}): Promise<boolean> {
    // Bounded by what it records: live sessions (cap slots) and agent clusters.
    if (this.records.has(id) && opts.takeOver !== true) return Promise.resolve(false);
    this.records.add(id);
    return Promise.resolve(true);
  }

  release(id: string): Promise<void> {
    this.records.delete(id);
    return Promise.resolve();
  }

  ownerOf(id: string): Promise<string | undefined> {
    return Promise.resolve(this.records.has(id) ? this.replica : undefined);
  }

  held(): string[] {
    return [...this.records];
  }
}

/** One replica: the lock is always this process's. */
export class InMemoryLock implements SharedLock {
  constructor(readonly name: string) {}

  isHeld(): boolean {
    return true;
  }
}
