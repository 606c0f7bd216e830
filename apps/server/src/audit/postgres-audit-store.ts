import { setImmediate as yieldToLoop } from 'node:timers/promises';

import type { Pool, PoolClient, QueryResultRow } from 'pg';

import { AuditLog } from './audit-log';
import {
  auditColumns,
  auditConditions,
  auditEventOf,
  auditPageOf,
  fairShareCut,
  mirrorToSink,
  orphanCloseBody,
  PRUNE_BATCH,
  stdoutSink,
  type AuditEvent,
  type AuditRow,
  type AuditPage,
  type AuditQuery,
  type AuditSink,
  type PruneResult,
  type RetentionPolicy,
  type StoredAuditEvent,
} from './audit-store';
import { ONE_CLOSE_PREDICATE } from './postgres-migrations';
import { openMigratedPool } from './postgres-pool';

export { redactDatabaseUrl } from './postgres-pool';

export interface PostgresAuditStoreOptions {
  /** Where every event is mirrored as a JSON line; stdout unless replaced (tests). */
  sink?: AuditSink;
  /** Clock in epoch milliseconds; event times and the retention cut-off use it. */
  now?: () => number;
  /** Errors of idle pooled connections (the database restarted, a network cut); never thrown. */
  onError?: (err: Error) => void;
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  /** Deadline of one connection attempt (default 10 s). */
  connectTimeoutMs?: number;
  /** Deadline of one statement, server side (default 60 s). */
  statementTimeoutMs?: number;
}

interface Row extends QueryResultRow, AuditRow {
  id: string;
  time: Date;
}

const COLUMNS = 'id, time, verb, actor, cluster, session_id, outcome, body';
/** Held by the replica that prunes; the others skip that round (a session-scoped advisory lock). */
const PRUNE_LOCK = `hashtext('periscope:audit:prune')`;

/** PostgreSQL refuses U+0000 in text; a NUL in an envelope column is stored as U+FFFD. */
const text = (v: string): string => (v.includes('\0') ? v.replaceAll('\0', '\uFFFD') : v);

/**
 * Audit events in PostgreSQL (PERISCOPE_DATABASE_URL), shared by every server replica: the same
 * API, query semantics, retention and fair size bound as the SQLite store. A write returns once its
 * transaction has committed (durable with the server's synchronous_commit, on by default), then the
 * event is mirrored to the sink (stdout).
 *
 * Size bound: measured as the sum of the events' row-bytes estimates (auditRowSize: column bytes
 * plus 64 per row), the same figure the SQLite store shares by actor, not pg_total_relation_size:
 * the relation's files only shrink after a VACUUM FULL, so a bound on them would delete until the
 * table is empty. Space freed by a prune is reused by new rows once autovacuum has run.
 */
export class PostgresAuditStore extends AuditLog {
  private readonly sink: AuditSink;
  private readonly now: () => number;
  private pruning: Promise<PruneResult> | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly pool: Pool,
    /** Migration versions this store applied when it opened (empty: the schema was current). */
    readonly appliedMigrations: readonly number[],
    options: PostgresAuditStoreOptions,
  ) {
    super();
    this.sink = options.sink ?? stdoutSink;
    this.now = options.now ?? Date.now;
  }

  /** Connects, migrates the schema (once across replicas) and returns the store. */
  static async open(url: string, options: PostgresAuditStoreOptions = {}): Promise<PostgresAuditStore> {
    const { pool, applied } = await openMigratedPool(url, {
      ...options,
      maxConnections: options.maxConnections ?? 10,
      applicationName: 'periscope-audit',
      what: 'audit',
    });
    return new PostgresAuditStore(pool, applied, options);
  }

  private async insert(e: AuditEvent, once: boolean): Promise<StoredAuditEvent | undefined> {
    const { time, outcome, body, size } = auditColumns(e, this.now());
    const r = await this.pool.query<{ id: string }>(
      `INSERT INTO audit_events (time, verb, actor, cluster, session_id, outcome, body, size)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ${once ? `ON CONFLICT (session_id, verb) WHERE ${ONE_CLOSE_PREDICATE} DO NOTHING` : ''}
       RETURNING id`,
      [time, text(e.verb), text(e.actor), text(e.cluster), text(e.sessionId), outcome, body, size],
    );
    const row = r.rows[0];
    if (row === undefined) return undefined;
    return mirrorToSink(this.sink, { ...e, id: Number(row.id), time, outcome });
  }

  /**
   * A second close of one session (same session id and `*_close` verb) is refused by the unique
   * index `audit_events_one_close`; write closes that more than one replica may write with
   * {@link writeOnce}.
   */
  async write(e: AuditEvent): Promise<StoredAuditEvent> {
    const stored = await this.insert(e, false);
    if (stored === undefined) throw new Error('the audit insert returned no row');
    return stored;
  }

  /**
   * Atomic across replicas for `*_close` verbs with a session id (INSERT … ON CONFLICT DO NOTHING
   * on the unique index); for other verbs, a check then an insert, in one transaction under a
   * transaction-scoped advisory lock on the (session id, verb) pair.
   */
  async writeOnce(e: AuditEvent): Promise<StoredAuditEvent | undefined> {
    if (e.verb.endsWith('_close') && e.sessionId !== '') return this.insert(e, true);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${e.sessionId}\n${e.verb}`]);
      const exists = await client.query('SELECT 1 FROM audit_events WHERE session_id = $1 AND verb = $2', [
        text(e.sessionId),
        text(e.verb),
      ]);
      if (exists.rowCount !== 0) {
        await client.query('COMMIT');
        return undefined;
      }
      const { time, outcome, body, size } = auditColumns(e, this.now());
      const r = await client.query<{ id: string }>(
        `INSERT INTO audit_events (time, verb, actor, cluster, session_id, outcome, body, size)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
        [time, text(e.verb), text(e.actor), text(e.cluster), text(e.sessionId), outcome, body, size],
      );
      await client.query('COMMIT');
      return mirrorToSink(this.sink, { ...e, id: Number(r.rows[0]?.id), time, outcome });
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async bySession(sessionId: string): Promise<StoredAuditEvent[]> {
    const r = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM audit_events WHERE session_id = $1 ORDER BY id`,
      [text(sessionId)],
    );
    return r.rows.map(auditEventOf);
  }

  async query(q: AuditQuery): Promise<AuditPage> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    for (const c of auditConditions(q)) {
      params.push(typeof c.value === 'string' ? text(c.value) : c.value);
      where.push(`${c.column} ${c.op} $${params.length}${c.column === 'time' ? '::timestamptz' : ''}`);
    }
    params.push(q.limit + 1);
    const r = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM audit_events ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return auditPageOf(r.rows, q.limit, auditEventOf);
  }

  async unclosed(
    openVerb: string,
    closeVerb: string,
    limit: number,
    afterId = 0,
  ): Promise<StoredAuditEvent[]> {
    const r = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM audit_events o
       WHERE o.verb = $1 AND o.id > $2 AND NOT EXISTS (SELECT 1 FROM audit_events c WHERE c.verb = $3 AND c.session_id = o.session_id)
       ORDER BY o.id LIMIT $4`,
      [text(openVerb), afterId, text(closeVerb), limit],
    );
    return r.rows.map(auditEventOf);
  }

  /**
   * As the SQLite store; each close is written with {@link writeOnce}, so replicas starting
   * together write one close per session. Returns the sessions this call closed.
   */
  async closeOrphans(openVerb: string, closeVerb: string): Promise<string[]> {
    const r = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM audit_events o
       WHERE o.verb = $1 AND NOT EXISTS (SELECT 1 FROM audit_events c WHERE c.verb = $2 AND c.session_id = o.session_id)
       ORDER BY o.id`,
      [text(openVerb), text(closeVerb)],
    );
    const closed: string[] = [];
    for (const o of r.rows.map(auditEventOf)) {
      const w = await this.writeOnce({
        verb: closeVerb,
        actor: o.actor,
        cluster: o.cluster,
        sessionId: o.sessionId,
        body: orphanCloseBody(o.body, this.now() - Date.parse(o.time), 'server_restart'),
      });
      if (w !== undefined) closed.push(o.sessionId);
    }
    return closed;
  }

  /** The sum of the events' row-bytes estimates (see the class comment). */
  async storedBytes(): Promise<number> {
    const r = await this.pool.query<{ bytes: string | null }>('SELECT sum(size) AS bytes FROM audit_events');
    return Number(r.rows[0]?.bytes ?? 0);
  }

  async count(): Promise<number> {
    const r = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_events');
    return Number(r.rows[0]?.n ?? 0);
  }

  /** Bytes of stored events per actor (the row-bytes estimate). */
  async bytesByActor(): Promise<Map<string, number>> {
    const r = await this.pool.query<{ actor: string; bytes: string }>(
      'SELECT actor, sum(size) AS bytes FROM audit_events GROUP BY actor',
    );
    return new Map(r.rows.map((x) => [x.actor, Number(x.bytes)]));
  }

  /**
   * As the SQLite store's prune (age, then the size bound down to 90 %, the heaviest actors'
   * oldest events first), in batches. One replica prunes at a time: a replica that finds another
   * pruning skips this round and reports nothing deleted. Concurrent calls in one process share a run.
   */
  prune(policy: RetentionPolicy): Promise<PruneResult> {
    this.pruning ??= this.pruneLocked(policy).finally(() => {
      this.pruning = undefined;
    });
    return this.pruning;
  }

  private async pruneLocked(policy: RetentionPolicy): Promise<PruneResult> {
    const none = { deletedByAge: 0, deletedBySize: 0, bytes: 0 };
    if (this.isClosing()) return none;
    const client = await this.pool.connect();
    try {
      const got = await client.query<{ locked: boolean }>(
        `SELECT pg_try_advisory_lock(${PRUNE_LOCK}) AS locked`,
      );
      if (got.rows[0]?.locked !== true) return { ...none, bytes: await this.storedBytes() };
      try {
        return await this.pruneNow(client, policy);
      } finally {
        await client.query(`SELECT pg_advisory_unlock(${PRUNE_LOCK})`);
      }
    } finally {
      client.release();
    }
  }

  private async pruneNow(client: PoolClient, policy: RetentionPolicy): Promise<PruneResult> {
    const cutoff = new Date(this.now() - policy.retentionDays * 86_400_000).toISOString();
    let deletedByAge = 0;
    let deletedBySize = 0;
    const stopped = (): PruneResult => ({ deletedByAge, deletedBySize, bytes: 0 });
    for (;;) {
      if (this.isClosing()) return stopped();
      const n =
        (
          await client.query(
            `DELETE FROM audit_events WHERE id IN
               (SELECT id FROM audit_events WHERE time < $1::timestamptz ORDER BY id LIMIT $2)`,
            [cutoff, PRUNE_BATCH],
          )
        ).rowCount ?? 0;
      deletedByAge += n;
      if (n < PRUNE_BATCH) break;
      await yieldToLoop();
    }
    const usage = await this.bytesByActor();
    let live = [...usage.values()].reduce((a, b) => a + b, 0);
    if (live > policy.maxBytes) {
      const target = policy.maxBytes * 0.9;
      while (live > target && usage.size > 0) {
        if (this.isClosing()) return stopped();
        let n = 0;
        for (const [actor, quota] of fairShareCut(usage, Math.ceil(live - target))) {
          const r = await this.deleteOldestOf(client, actor, quota);
          if (r === undefined) return stopped();
          n += r.rows;
          live -= r.bytes;
          const left = (usage.get(actor) ?? 0) - r.bytes;
          if (left > 0 && r.rows > 0) usage.set(actor, left);
          else usage.delete(actor); // nothing left (or nothing deletable): out of the share
        }
        deletedBySize += n;
        if (n === 0) break;
        await yieldToLoop();
      }
    }
    if (this.isClosing()) return stopped();
    return { deletedByAge, deletedBySize, bytes: await this.storedBytes() };
  }

  /**
   * Deletes the oldest events of one actor until at least `bytes` of them are gone (at least one
   * event), in batches, by id (events another replica writes meanwhile are newer and stay).
   */
  private async deleteOldestOf(
    client: PoolClient,
    actor: string,
    bytes: number,
  ): Promise<{ rows: number; bytes: number } | undefined> {
    let rows = 0;
    let freed = 0;
    while (freed < bytes) {
      if (this.isClosing()) return undefined;
      const batch = await client.query<{ id: string; size: number }>(
        'SELECT id, size FROM audit_events WHERE actor = $1 ORDER BY id LIMIT $2',
        [actor, PRUNE_BATCH],
      );
      if (batch.rows.length === 0) break;
      const ids: string[] = [];
      for (const r of batch.rows) {
        ids.push(r.id);
        freed += r.size;
        rows++;
        if (freed >= bytes) break;
      }
      await client.query('DELETE FROM audit_events WHERE id = ANY($1::bigint[])', [ids]);
      if (freed < bytes) await yieldToLoop();
    }
    return { rows, bytes: freed };
  }

  /** A method, not a property read, so checks after an await are not narrowed away. */
  private isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** Stops a running prune at its next batch, then closes the pool's connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.pruning?.catch(() => undefined);
      await this.pool.end();
    })();
    return this.closing;
  }
}
