import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';

export interface AuditEvent {
  verb: string;
  actor: string;
  cluster: string;
  sessionId: string;
  body: Record<string, unknown>;
}

export interface StoredAuditEvent extends AuditEvent {
  id: number;
  time: string;
}

/**
 * Audit events in SQLite (WAL): every write is durable before it returns, so an `open` is on
 * disk before the socket upgrade it announces.
 */
export class AuditStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS audit_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      time TEXT NOT NULL,
      verb TEXT NOT NULL,
      actor TEXT NOT NULL,
      cluster TEXT NOT NULL,
      session_id TEXT NOT NULL,
      body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_events_session ON audit_events(session_id);`);
    this.insert = this.db.prepare(
      'INSERT INTO audit_events (time, verb, actor, cluster, session_id, body) VALUES (?, ?, ?, ?, ?, ?)',
    );
  }

  write(e: AuditEvent): StoredAuditEvent {
    const time = new Date().toISOString();
    const r = this.insert.run(time, e.verb, e.actor, e.cluster, e.sessionId, JSON.stringify(e.body));
    return { ...e, id: Number(r.lastInsertRowid), time };
  }

  bySession(sessionId: string): StoredAuditEvent[] {
    const rows = this.db
      .prepare('SELECT * FROM audit_events WHERE session_id = ? ORDER BY id')
      .all(sessionId) as {
      id: number;
      time: string;
      verb: string;
      actor: string;
      cluster: string;
      session_id: string;
      body: string;
    }[];
    return rows.map((r) => ({
      id: r.id,
      time: r.time,
      verb: r.verb,
      actor: r.actor,
      cluster: r.cluster,
      sessionId: r.session_id,
      body: JSON.parse(r.body) as Record<string, unknown>,
    }));
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
        body: {
          ...open,
          duration_ms: Date.now() - Date.parse(r.time),
          exit_code: null,
          bytes_in: null,
          bytes_out: null,
          close_reason: 'server_restart',
          commands: [],
        },
      });
    }
    return rows.map((r) => r.session_id);
  }

  close(): void {
    this.db.close();
  }
}
