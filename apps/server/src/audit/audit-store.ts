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

  close(): void {
    this.db.close();
  }
}
