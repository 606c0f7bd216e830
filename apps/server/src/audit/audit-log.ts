import type {
  AuditEvent,
  AuditPage,
  AuditQuery,
  AuditStore,
  PruneResult,
  RetentionPolicy,
  StoredAuditEvent,
} from './audit-store';

/**
 * The audit store as the rest of the server sees it (a port): append events, read them back by
 * session or by a filtered, paged query, close what a stopped server left open, and keep the store
 * within its retention and size bound. Two adapters: {@link SqliteAuditLog} (the embedded default,
 * one process, a file under PERISCOPE_DATA_DIR) and `PostgresAuditStore` (PERISCOPE_DATABASE_URL,
 * shared by every server replica).
 *
 * Asynchronous because a database server is; a caller that must not go on before the event is
 * durable (a session open before its socket upgrade) awaits `write`.
 */
export abstract class AuditLog {
  /** Stores one event durably, then mirrors it to the sink (stdout); the stored form. */
  abstract write(e: AuditEvent): Promise<StoredAuditEvent>;

  /**
   * Stores the event unless the store already holds one with the same session id and verb;
   * undefined then (someone wrote it first). For records that must exist exactly once, such as a
   * session's close when more than one replica may notice the session ended.
   */
  abstract writeOnce(e: AuditEvent): Promise<StoredAuditEvent | undefined>;

  /** Every event of one session, oldest first. */
  abstract bySession(sessionId: string): Promise<StoredAuditEvent[]>;

  /** Newest first; paging by id (`before`) is stable while new events arrive. */
  abstract query(q: AuditQuery): Promise<AuditPage>;

  /**
   * Sessions opened (`openVerb`) and never closed (`closeVerb`): each gets its close, with reason
   * `server_restart`, so every open has a close. Returns the session ids closed now. For one
   * server only: with several replicas, some of these sessions are live on another (see
   * {@link unclosed}).
   */
  abstract closeOrphans(openVerb: string, closeVerb: string): Promise<string[]>;

  /**
   * Opens without a close, oldest first: at most `limit` with an id above `afterId` (page on
   * with the last id). Live sessions are among them; the caller decides which are orphans.
   */
  abstract unclosed(
    openVerb: string,
    closeVerb: string,
    limit: number,
    afterId?: number,
  ): Promise<StoredAuditEvent[]>;

  /** Retention: age first, then the size bound, shared fairly by actor (see AuditStore#prune). */
  abstract prune(policy: RetentionPolicy): Promise<PruneResult>;

  /** The bytes the size bound (PERISCOPE_AUDIT_MAX_MB) is measured against; see each adapter. */
  abstract storedBytes(): Promise<number>;

  abstract count(): Promise<number>;

  abstract close(): Promise<void>;
}

/**
 * The embedded adapter: the SQLite {@link AuditStore} (synchronous, durable before it returns).
 * Every call runs the SQLite work at once, before the returned promise settles, so a caller that
 * does not await still finds the event stored on its next line (as with the store itself).
 */
export class SqliteAuditLog extends AuditLog {
  constructor(readonly store: AuditStore) {
    super();
  }

  write(e: AuditEvent): Promise<StoredAuditEvent> {
    return attempt(() => this.store.write(e));
  }

  writeOnce(e: AuditEvent): Promise<StoredAuditEvent | undefined> {
    return attempt(() => this.store.writeOnce(e));
  }

  bySession(sessionId: string): Promise<StoredAuditEvent[]> {
    return attempt(() => this.store.bySession(sessionId));
  }

  query(q: AuditQuery): Promise<AuditPage> {
    return attempt(() => this.store.query(q));
  }

  closeOrphans(openVerb: string, closeVerb: string): Promise<string[]> {
    return attempt(() => this.store.closeOrphans(openVerb, closeVerb));
  }

  unclosed(openVerb: string, closeVerb: string, limit: number, afterId = 0): Promise<StoredAuditEvent[]> {
    return attempt(() => this.store.unclosed(openVerb, closeVerb, limit, afterId));
  }

  prune(policy: RetentionPolicy): Promise<PruneResult> {
    return this.store.prune(policy);
  }

  /** Live pages times the page size (see AuditStore#liveBytes). */
  storedBytes(): Promise<number> {
    return attempt(() => this.store.liveBytes());
  }

  count(): Promise<number> {
    return attempt(() => this.store.count());
  }

  close(): Promise<void> {
    return attempt(() => {
      this.store.close();
    });
  }
}

/** Runs `f` now; its result or its exception as a promise. */
function attempt<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}
