import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';

import Database from 'better-sqlite3';

export type AuditOutcome = 'ok' | 'error';

export interface AuditEvent {
  verb: string;
  actor: string;
  cluster: string;
  sessionId: string;
  body: Record<string, unknown>;
  /** Derived from verb and body when absent (see {@link deriveOutcome}). */
  outcome?: AuditOutcome;
}

export interface StoredAuditEvent extends AuditEvent {
  id: number;
  time: string;
  outcome: AuditOutcome;
}

/** Receives one complete JSON line (without the newline) per written event. */
export type AuditSink = (line: string) => void;

/** The default sink: one line on stdout, next to (and distinguishable from) the pino logs. */
export const stdoutSink: AuditSink = (line) => {
  process.stdout.write(`${line}\n`);
};

export interface AuditStoreOptions {
  /** Where every event is mirrored as a JSON line; stdout unless replaced (tests). */
  sink?: AuditSink;
  /** Clock in epoch milliseconds; event times and the retention cut-off use it. */
  now?: () => number;
}

export interface AuditQuery {
  verb?: string;
  actor?: string;
  cluster?: string;
  sessionId?: string;
  outcome?: AuditOutcome;
  /** Inclusive lower bound, an ISO time as `Date#toISOString` writes it. */
  since?: string;
  /** Exclusive upper bound, same format. */
  until?: string;
  /** Only events with a smaller id (the previous page's `nextBefore`). */
  before?: number;
  limit: number;
}

export interface AuditPage {
  events: StoredAuditEvent[];
  /** Pass as `before` for the next (older) page; null when this page is the last. */
  nextBefore: number | null;
}

export interface RetentionPolicy {
  retentionDays: number;
  maxBytes: number;
}

export interface PruneResult {
  deletedByAge: number;
  deletedBySize: number;
  /** Live bytes ((page_count - freelist_count) * page_size) after the prune. */
  bytes: number;
}

interface Row extends AuditRow {
  id: number;
  time: string;
}

/** Close reasons that are a normal end of a session. */
/** Ends that are the product working as intended: the person left, or a policy limit was reached. */
const CLEAN_CLOSE_REASONS: readonly string[] = [
  'exit',
  'client_close',
  'ended_by_user',
  'idle',
  'max_duration',
];
export const PRUNE_BATCH = 2_000;
const SCHEMA_VERSION = 3;
/** Per-row overhead counted on top of the column bytes (rowid, outcome, index entries). */
export const ROW_OVERHEAD_BYTES = 64;
const ROW_SIZE_SQL = `octet_length(body) + octet_length(verb) + octet_length(actor) + octet_length(cluster)
  + octet_length(session_id) + octet_length(time) + ${ROW_OVERHEAD_BYTES}`;
/** Switching an old database to incremental auto-vacuum needs one VACUUM; only done when this small. */
const VACUUM_ON_MIGRATION_MAX_BYTES = 64 * 1024 * 1024;

/**
 * `error` for a `*_close` whose close_reason is not a clean one (exit, client_close, ended_by_user,
 * idle, max_duration) or whose exit_code is a
 * non-zero number; `ok` for everything else.
 */
export function deriveOutcome(verb: string, body: Record<string, unknown>): AuditOutcome {
  if (!verb.endsWith('_close')) return 'ok';
  const reason = body.close_reason;
  if (typeof reason !== 'string' || !CLEAN_CLOSE_REASONS.includes(reason)) return 'error';
  const code = body.exit_code;
  if (typeof code === 'number' && code !== 0) return 'error';
  return 'ok';
}

/**
 * The bytes one event counts for in the size bound, in either adapter: its column bytes (body as
 * JSON, verb, actor, cluster, session id, time) plus {@link ROW_OVERHEAD_BYTES}.
 */
export function auditRowSize(e: AuditEvent, body: string, time: string): number {
  return (
    [body, e.verb, e.actor, e.cluster, e.sessionId, time].reduce((n, v) => n + Buffer.byteLength(v), 0) +
    ROW_OVERHEAD_BYTES
  );
}

/** The stdout line of one event: envelope first, then the body; envelope keys win over body keys. */
export function auditLine(e: StoredAuditEvent): string {
  const envelope = {
    audit: true,
    id: e.id,
    time: e.time,
    verb: e.verb,
    actor: e.actor,
    cluster: e.cluster,
    session_id: e.sessionId,
    outcome: e.outcome,
  };
  // Re-assigning the envelope keeps their position (first) and their values (a body cannot fake them).
  return JSON.stringify(Object.assign({ ...envelope, ...e.body }, envelope));
}

/** The body of a close written for a session a stopped server (or a lost replica) left open. */
export function orphanCloseBody(
  open: Record<string, unknown>,
  durationMs: number,
  closeReason: string,
): Record<string, unknown> {
  return {
    ...open,
    duration_ms: durationMs,
    exit_code: null,
    bytes_in: null,
    bytes_out: null,
    close_reason: closeReason,
    commands: [],
  };
}

/**
 * What either adapter stores of a new event written at `now` (epoch ms): its time, its outcome
 * (derived when absent), its body as JSON and its bytes in the size bound.
 */
export function auditColumns(
  e: AuditEvent,
  now: number,
): { time: string; outcome: AuditOutcome; body: string; size: number } {
  const time = new Date(now).toISOString();
  const outcome = e.outcome ?? deriveOutcome(e.verb, e.body);
  const body = JSON.stringify(e.body);
  return { time, outcome, body, size: auditRowSize(e, body, time) };
}

/** Writes a stored event's line to the sink; answers the event. */
export function mirrorToSink(sink: AuditSink, stored: StoredAuditEvent): StoredAuditEvent {
  try {
    sink(auditLine(stored));
  } catch {
    // The event is stored; a broken stdout must not turn a durable write into a failure.
  }
  return stored;
}

/** A stored row of either adapter (SQLite: numbers and ISO text; PostgreSQL: bigint text, a Date). */
export interface AuditRow {
  id: number | string;
  time: string | Date;
  verb: string;
  actor: string;
  cluster: string;
  session_id: string;
  outcome: string;
  body: string;
}

export function auditEventOf(r: AuditRow): StoredAuditEvent {
  return {
    id: Number(r.id),
    time: typeof r.time === 'string' ? r.time : r.time.toISOString(),
    verb: r.verb,
    actor: r.actor,
    cluster: r.cluster,
    sessionId: r.session_id,
    outcome: r.outcome === 'error' ? 'error' : 'ok',
    body: JSON.parse(r.body) as Record<string, unknown>,
  };
}

/**
 * A query's conditions, in the order both adapters bind them: column, comparison and value
 * (`time` against ISO times; `id < before` pages on).
 */
export function auditConditions(
  q: AuditQuery,
): { column: string; op: '=' | '>=' | '<'; value: string | number }[] {
  const all: [string, '=' | '>=' | '<', string | number | undefined][] = [
    ['verb', '=', q.verb],
    ['actor', '=', q.actor],
    ['cluster', '=', q.cluster],
    ['session_id', '=', q.sessionId],
    ['outcome', '=', q.outcome],
    ['time', '>=', q.since],
    ['time', '<', q.until],
    ['id', '<', q.before],
  ];
  return all.flatMap(([column, op, value]) => (value === undefined ? [] : [{ column, op, value }]));
}

/** One page from the `limit + 1` newest rows a query read: the first `limit`, and where to go on. */
export function auditPageOf<R>(rows: R[], limit: number, toEvent: (r: R) => StoredAuditEvent): AuditPage {
  const more = rows.length > limit;
  const events = rows.slice(0, limit).map(toEvent);
  return { events, nextBefore: more ? (events[events.length - 1]?.id ?? null) : null };
}

/**
 * Audit events in SQLite (WAL, synchronous = FULL): every write is durable before it returns, so
 * an `open` is on disk before the socket upgrade it announces. Every event is also written as one
 * JSON line to the sink (stdout) once it is stored.
 */
export class AuditStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly sink: AuditSink;
  private readonly now: () => number;
  private pruning: Promise<PruneResult> | undefined;

  constructor(path: string, options: AuditStoreOptions = {}) {
    this.sink = options.sink ?? stdoutSink;
    this.now = options.now ?? Date.now;
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    // Must precede the first table of a new database; an existing one keeps its mode (see migrate).
    this.db.pragma('auto_vacuum = INCREMENTAL');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.migrate();
    this.insert = this.db.prepare(
      'INSERT INTO audit_events (time, verb, actor, cluster, session_id, outcome, body, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
  }

  private migrate(): void {
    const db = this.db;
    db.exec(`CREATE TABLE IF NOT EXISTS audit_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      time TEXT NOT NULL,
      verb TEXT NOT NULL,
      actor TEXT NOT NULL,
      cluster TEXT NOT NULL,
      session_id TEXT NOT NULL,
      body TEXT NOT NULL
    )`);
    const columns = db.prepare('PRAGMA table_info(audit_events)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'outcome')) {
      // Version 1 had no outcome: add it and derive it for the closes already stored.
      db.transaction(() => {
        db.exec(`ALTER TABLE audit_events ADD COLUMN outcome TEXT NOT NULL DEFAULT 'ok'`);
        db.exec(`UPDATE audit_events SET outcome = 'error'
          WHERE substr(verb, -6) = '_close'
            AND (coalesce(json_extract(body, '$.close_reason'), '') NOT IN (${CLEAN_CLOSE_REASONS.map((r) => `'${r}'`).join(', ')})
              OR (json_type(body, '$.exit_code') IN ('integer', 'real') AND json_extract(body, '$.exit_code') != 0))`);
      })();
    }
    if (!columns.some((c) => c.name === 'size')) {
      // Version 2 had no row size: size-based retention shares the store fairly by actor, and
      // summing the bodies on every prune would read the whole database.
      db.transaction(() => {
        db.exec(`ALTER TABLE audit_events ADD COLUMN size INTEGER NOT NULL DEFAULT 0`);
        db.exec(`UPDATE audit_events SET size = ${ROW_SIZE_SQL}`);
        db.exec('DROP INDEX IF EXISTS audit_events_actor');
      })();
    }
    db.exec(`CREATE INDEX IF NOT EXISTS audit_events_session ON audit_events(session_id);
      CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time);
      CREATE INDEX IF NOT EXISTS audit_events_actor ON audit_events(actor, id, size);
      CREATE INDEX IF NOT EXISTS audit_events_cluster ON audit_events(cluster, id);
      CREATE INDEX IF NOT EXISTS audit_events_verb ON audit_events(verb, id);`);
    if (
      (db.pragma('auto_vacuum', { simple: true }) as number) !== 2 &&
      this.fileBytes() <= VACUUM_ON_MIGRATION_MAX_BYTES
    ) {
      // A database created before auto_vacuum = INCREMENTAL: switching needs one rewrite, cheap when small.
      // A larger one stays as it is: pruned pages are reused by new events, the file just never shrinks.
      db.exec('VACUUM');
    }
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }

  write(e: AuditEvent): StoredAuditEvent {
    return this.mirror(this.insertRow(e));
  }

  /**
   * Stores the event unless one with the same session id and verb is stored already (then
   * undefined): check and insert in one immediate transaction.
   */
  writeOnce(e: AuditEvent): StoredAuditEvent | undefined {
    const stored = this.db
      .transaction(() =>
        this.db
          .prepare('SELECT 1 FROM audit_events WHERE session_id = ? AND verb = ? LIMIT 1')
          .get(e.sessionId, e.verb) === undefined
          ? this.insertRow(e)
          : undefined,
      )
      .immediate();
    return stored && this.mirror(stored);
  }

  private insertRow(e: AuditEvent): StoredAuditEvent {
    const { time, outcome, body, size } = auditColumns(e, this.now());
    const r = this.insert.run(time, e.verb, e.actor, e.cluster, e.sessionId, outcome, body, size);
    return { ...e, id: Number(r.lastInsertRowid), time, outcome };
  }

  private mirror(stored: StoredAuditEvent): StoredAuditEvent {
    return mirrorToSink(this.sink, stored);
  }

  bySession(sessionId: string): StoredAuditEvent[] {
    const rows = this.db
      .prepare('SELECT * FROM audit_events WHERE session_id = ? ORDER BY id')
      .all(sessionId) as Row[];
    return rows.map(auditEventOf);
  }

  /** Newest first; paging by id is stable while new events arrive. */
  query(q: AuditQuery): AuditPage {
    const conditions = auditConditions(q);
    const where = conditions.map((c) => `${c.column} ${c.op} ?`);
    const params = conditions.map((c) => c.value);
    const sql = `SELECT * FROM audit_events ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, q.limit + 1) as Row[];
    return auditPageOf(rows, q.limit, auditEventOf);
  }

  /**
   * Opens (`openVerb`) without a close (`closeVerb`), oldest first, at most `limit` of those with an
   * id above `afterId` (page on with the last id). Live sessions are among them.
   */
  unclosed(openVerb: string, closeVerb: string, limit: number, afterId = 0): StoredAuditEvent[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM audit_events o
         WHERE o.verb = ? AND o.id > ? AND NOT EXISTS (SELECT 1 FROM audit_events c WHERE c.verb = ? AND c.session_id = o.session_id)
         ORDER BY o.id LIMIT ?`,
      )
      .all(openVerb, afterId, closeVerb, limit) as Row[];
    return rows.map(auditEventOf);
  }

  /**
   * Sessions opened and never closed (the server stopped during them): each gets its close,
   * with reason `server_restart`, so every open has a close. Returns the session ids.
   */
  closeOrphans(openVerb: string, closeVerb: string): string[] {
    const rows = this.db
      .prepare(
        `SELECT o.actor, o.cluster, o.session_id, o.time, o.body FROM audit_events o
         WHERE o.verb = ? AND NOT EXISTS (SELECT 1 FROM audit_events c WHERE c.verb = ? AND c.session_id = o.session_id)`,
      )
      .all(openVerb, closeVerb) as {
      actor: string;
      cluster: string;
      session_id: string;
      time: string;
      body: string;
    }[];
    for (const r of rows) {
      const open = JSON.parse(r.body) as Record<string, unknown>;
      this.write({
        verb: closeVerb,
        actor: r.actor,
        cluster: r.cluster,
        sessionId: r.session_id,
        body: orphanCloseBody(open, this.now() - Date.parse(r.time), 'server_restart'),
      });
    }
    return rows.map((r) => r.session_id);
  }

  /** Live bytes: pages in use (freed pages on the free list do not count) times the page size. */
  liveBytes(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * (this.db.pragma('page_size', { simple: true }) as number);
  }

  /** page_count * page_size: the size of the database (the main file once the WAL is checkpointed). */
  fileBytes(): number {
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    return pages * (this.db.pragma('page_size', { simple: true }) as number);
  }

  count(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM audit_events').get() as { n: number }).n;
  }

  /**
   * Retention: deletes every event older than `retentionDays` (opens of sessions still running
   * included); then, while the live size exceeds `maxBytes`, deletes until it is under 90 % of it,
   * fairly: the actor whose events take the most bytes loses their oldest events first, down to
   * the next-largest actor's share, and so on. So one person's many large closes only ever push out
   * their own history, never a lighter user's. Deletes in batches and yields to the event loop
   * between them; gives the freed pages back to the file system (incremental vacuum) and truncates
   * the WAL afterwards. Concurrent calls share one run.
   */
  prune(policy: RetentionPolicy): Promise<PruneResult> {
    this.pruning ??= this.pruneNow(policy).finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  /** Bytes of stored events per actor (column bytes plus a fixed per-row overhead). */
  bytesByActor(): Map<string, number> {
    const rows = this.db
      .prepare('SELECT actor, sum(size) AS bytes FROM audit_events GROUP BY actor')
      .all() as { actor: string; bytes: number }[];
    return new Map(rows.map((r) => [r.actor, r.bytes]));
  }

  private async pruneNow(policy: RetentionPolicy): Promise<PruneResult> {
    const cutoff = new Date(this.now() - policy.retentionDays * 86_400_000).toISOString();
    const byAge = this.db.prepare(
      'DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < ? ORDER BY id LIMIT ?)',
    );
    let deletedByAge = 0;
    let deletedBySize = 0;
    for (;;) {
      if (this.closed()) return { deletedByAge, deletedBySize, bytes: 0 };
      const n = byAge.run(cutoff, PRUNE_BATCH).changes;
      deletedByAge += n;
      if (n < PRUNE_BATCH) break;
      await yieldToLoop();
    }
    if (this.liveBytes() > policy.maxBytes) {
      const target = policy.maxBytes * 0.9;
      const usage = this.bytesByActor();
      for (;;) {
        if (this.closed()) return { deletedByAge, deletedBySize, bytes: 0 };
        const live = this.liveBytes();
        const total = [...usage.values()].reduce((a, b) => a + b, 0);
        if (live <= target || total <= 0) break;
        // Row bytes to drop, scaled from the page bytes that are over. No margin: a margin would
        // cut light actors when one actor holds nearly everything; the next round takes the rest.
        const need = Math.max(1, Math.ceil(((live - target) / live) * total));
        let n = 0;
        for (const [actor, quota] of fairShareCut(usage, need)) {
          const r = await this.deleteOldestOf(actor, quota);
          if (r === undefined) return { deletedByAge, deletedBySize, bytes: 0 };
          n += r.rows;
          const left = (usage.get(actor) ?? 0) - r.bytes;
          if (left > 0 && r.rows > 0) usage.set(actor, left);
          else usage.delete(actor); // nothing left (or nothing deletable): out of the share
        }
        deletedBySize += n;
        if (n === 0) break;
        await yieldToLoop();
      }
    }
    if (this.closed()) return { deletedByAge, deletedBySize, bytes: 0 };
    if (deletedByAge + deletedBySize > 0) {
      if ((this.db.pragma('auto_vacuum', { simple: true }) as number) === 2)
        this.db.pragma('incremental_vacuum');
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    }
    return { deletedByAge, deletedBySize, bytes: this.liveBytes() };
  }

  /**
   * Deletes the oldest events of one actor until at least `bytes` of them are gone (at least one
   * event), in batches. Undefined when the store was closed meanwhile.
   */
  private async deleteOldestOf(
    actor: string,
    bytes: number,
  ): Promise<{ rows: number; bytes: number } | undefined> {
    const oldest = this.db.prepare('SELECT id, size FROM audit_events WHERE actor = ? ORDER BY id LIMIT ?');
    const upTo = this.db.prepare('DELETE FROM audit_events WHERE actor = ? AND id <= ?');
    let rows = 0;
    let freed = 0;
    while (freed < bytes) {
      if (this.closed()) return undefined;
      const batch = oldest.all(actor, PRUNE_BATCH) as { id: number; size: number }[];
      if (batch.length === 0) break;
      let last = 0;
      for (const r of batch) {
        last = r.id;
        freed += r.size;
        rows++;
        if (freed >= bytes) break;
      }
      upTo.run(actor, last);
      if (freed < bytes) await yieldToLoop();
    }
    return { rows, bytes: freed };
  }

  /** A method, not a property read, so checks after an await are not narrowed away. */
  private closed(): boolean {
    return !this.db.open;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * How many bytes each actor gives up so that `need` bytes are freed, heaviest first: the largest
 * shares are cut down to one common level, as high as it can stay (water-filling). An actor whose
 * share is below that level loses nothing.
 */
export function fairShareCut(usage: ReadonlyMap<string, number>, need: number): Map<string, number> {
  const sorted = [...usage].filter(([, b]) => b > 0).sort((x, y) => y[1] - x[1]);
  const cut = new Map<string, number>();
  let sum = 0;
  for (let k = 1; k <= sorted.length; k++) {
    sum += sorted[k - 1]?.[1] ?? 0;
    const next = sorted[k]?.[1] ?? 0;
    const level = (sum - need) / k;
    if (level >= next || k === sorted.length) {
      const floor = Math.max(0, level);
      for (const [actor, b] of sorted.slice(0, k)) if (b > floor) cut.set(actor, b - floor);
      return cut;
    }
  }
  return cut;
}
