import type { PoolClient } from 'pg';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The schema in PostgreSQL (the audit, and the index of the session recordings), as numbered
 * migrations. Append new ones; never edit one that has shipped (a database that applied it keeps
 * its old form).
 */
export const AUDIT_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'audit_events',
    // body: the event body as JSON text, exactly as written (jsonb would reorder keys and refuse
    // \u0000). size: the event's bytes in the size bound (auditRowSize), kept so that size-based
    // retention can share the bound by actor without reading the bodies.
    sql: `
      CREATE TABLE audit_events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time timestamptz NOT NULL,
        verb text NOT NULL,
        actor text NOT NULL,
        cluster text NOT NULL,
        session_id text NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('ok', 'error')),
        body text NOT NULL,
        size integer NOT NULL
      );
      CREATE INDEX audit_events_session ON audit_events (session_id, id);
      CREATE INDEX audit_events_time ON audit_events (time);
      CREATE INDEX audit_events_actor ON audit_events (actor, id) INCLUDE (size);
      CREATE INDEX audit_events_cluster ON audit_events (cluster, id);
      CREATE INDEX audit_events_verb ON audit_events (verb, id);
    `,
  },
  {
    version: 2,
    name: 'one_close_per_session',
    // A session's close exists once, whichever replica writes it (writeOnce: ON CONFLICT DO NOTHING).
    sql: `
      CREATE UNIQUE INDEX audit_events_one_close ON audit_events (session_id, verb)
        WHERE right(verb, 6) = '_close' AND session_id <> '';
    `,
  },
  {
    version: 3,
    name: 'recordings',
    // Session recordings in large objects (PostgresRecordingStore), one row per recording: id is
    // the session id; bytes is advanced with every lo_put (in the same statement); sha256 and
    // closed_at are set at close; modified_at orders the retention.
    sql: `
      CREATE TABLE recordings (
        id text PRIMARY KEY,
        loid oid NOT NULL UNIQUE,
        bytes bigint NOT NULL DEFAULT 0,
        sha256 text,
        created_at timestamptz NOT NULL DEFAULT now(),
        modified_at timestamptz NOT NULL DEFAULT now(),
        closed_at timestamptz
      );
      CREATE INDEX recordings_modified ON recordings (modified_at);
    `,
  },
];

/** The predicate of audit_events_one_close, repeated where an insert names that index. */
export const ONE_CLOSE_PREDICATE = `right(verb, 6) = '_close' AND session_id <> ''`;

/** Serialises migrations of every replica on one database (a transaction-scoped advisory lock). */
const MIGRATION_LOCK = `hashtext('periscope:audit:migrations')`;

/**
 * Applies the migrations the database lacks, in order, in one transaction under an advisory lock:
 * replicas starting together wait for each other, and the ones that come second find the work done.
 * Returns the versions applied by this call (empty when the schema was current).
 */
export async function migrate(
  client: PoolClient,
  migrations: readonly Migration[] = AUDIT_MIGRATIONS,
): Promise<number[]> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    const newest = Math.max(0, ...done);
    const known = Math.max(0, ...migrations.map((m) => m.version));
    if (newest > known)
      throw new Error(
        `the audit database has schema version ${newest}, newer than this server knows (${known}); run a server at least as new as the one that migrated it`,
      );
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
