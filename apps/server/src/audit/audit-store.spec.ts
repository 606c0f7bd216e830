import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { SqliteAuditLog } from './audit-log';
import { auditLogCases } from './audit-log.test-cases';
import {
  auditConditions,
  auditEventOf,
  auditPageOf,
  AuditStore,
  deriveOutcome,
  fairShareCut,
  type AuditEvent,
} from './audit-store';

const T0 = Date.parse('2025-03-01T00:00:00.000Z');

function dbPath(): string {
  return join(mkdtempSync(join(tmpdir(), 'audit-')), 'audit.db');
}

const open = (actor: string, sessionId: string, cluster = 'c'): AuditEvent => ({
  verb: 'cluster_shell_open',
  actor,
  cluster,
  sessionId,
  body: { cluster, mode: 'bash', tier: 'admin', session_id: sessionId, actor },
});

const close = (
  actor: string,
  sessionId: string,
  reason: string,
  exitCode: number | null = 0,
): AuditEvent => ({
  verb: 'cluster_shell_close',
  actor,
  cluster: 'c',
  sessionId,
  body: { session_id: sessionId, close_reason: reason, exit_code: exitCode, commands: [] },
});

/** A store on a temp file with a captured sink and a settable clock. */
function store(path = dbPath()): { s: AuditStore; lines: string[]; clock: { now: number }; path: string } {
  const lines: string[] = [];
  const clock = { now: T0 };
  const s = new AuditStore(path, { sink: (l) => lines.push(l), now: () => clock.now });
  opened.push(s);
  return { s, lines, clock, path };
}

const opened: AuditStore[] = [];
afterEach(() => {
  for (const s of opened.splice(0)) s.close();
  vi.restoreAllMocks();
});

describe(AuditStore.name, () => {
  describe('shared audit store cases (SQLite)', () => {
    auditLogCases(
      {
        newDatabase: () => Promise.resolve(dbPath()),
        open: (path, options) => Promise.resolve(new SqliteAuditLog(new AuditStore(path, options))),
      },
      {
        afterSizePrune: (log, path, maxBytes) => {
          const s = (log as SqliteAuditLog).store;
          // Freed pages went back to the file system and the WAL was truncated.
          expect(s.fileBytes()).toBeLessThanOrEqual(maxBytes);
          expect(statSync(path).size).toBeLessThanOrEqual(maxBytes);
          expect(!existsSync(`${path}-wal`) || statSync(`${path}-wal`).size === 0).toBe(true);
        },
      },
    );
  });

  it('is synchronous: an event is stored when write returns, and the port sees it at once', () => {
    const { s } = store();
    const e = s.write(open('alice', 's1'));
    expect(s.bySession('s1')).toEqual([e]);
    const log = new SqliteAuditLog(s);
    void log.write(open('bob', 's2')); // the port runs the SQLite write before its promise settles
    expect(s.count()).toBe(2);
    expect(s.writeOnce(close('bob', 's2', 'exit'))).toBeDefined();
    expect(s.writeOnce(close('bob', 's2', 'exit'))).toBeUndefined();
  });

  it('derives the outcome of closes and keeps an explicit one', () => {
    expect(deriveOutcome('cluster_shell_open', {})).toBe('ok');
    expect(deriveOutcome('cluster_shell_close', { close_reason: 'exit', exit_code: 0 })).toBe('ok');
    expect(deriveOutcome('cluster_shell_close', { close_reason: 'exit', exit_code: null })).toBe('ok');
    expect(deriveOutcome('cluster_shell_close', { close_reason: 'client_close', exit_code: null })).toBe(
      'ok',
    );
    expect(deriveOutcome('cluster_shell_close', { close_reason: 'exit', exit_code: 2 })).toBe('error');
    expect(deriveOutcome('cluster_shell_close', { close_reason: 'heartbeat_timeout', exit_code: null })).toBe(
      'error',
    );
    expect(deriveOutcome('cluster_shell_close', { close_reason: 'server_restart' })).toBe('error');
    for (const clean of ['idle', 'ended_by_user', 'max_duration', 'client_close'])
      expect(deriveOutcome('exec_close', { close_reason: clean, exit_code: null })).toBe('ok');
    expect(deriveOutcome('exec_close', { close_reason: 'ended_by_admin' })).toBe('error');
    expect(deriveOutcome('cluster_shell_close', {})).toBe('error');
    expect(deriveOutcome('pod_exec_close', { close_reason: 'exit', exit_code: 1 })).toBe('error');
    expect(deriveOutcome('cluster_shell_closed', { close_reason: 'heartbeat_timeout' })).toBe('ok');
  });

  it('cuts the heaviest shares down to one level (water-filling)', () => {
    const u = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));
    expect(fairShareCut(u({ a: 100, b: 10 }), 50)).toEqual(u({ a: 50 }));
    expect(fairShareCut(u({ a: 100, b: 60, c: 10 }), 60)).toEqual(u({ a: 50, b: 10 }));
    expect(fairShareCut(u({ a: 30, b: 30 }), 20)).toEqual(u({ a: 10, b: 10 }));
    expect(fairShareCut(u({ a: 30, b: 10 }), 100)).toEqual(u({ a: 30, b: 10 }));
    expect(fairShareCut(u({}), 10)).toEqual(u({}));
  });

  it('migrates a database written before the outcome column', () => {
    const path = dbPath();
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(`CREATE TABLE audit_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      time TEXT NOT NULL,
      verb TEXT NOT NULL,
      actor TEXT NOT NULL,
      cluster TEXT NOT NULL,
      session_id TEXT NOT NULL,
      body TEXT NOT NULL
    );
    CREATE INDEX audit_events_session ON audit_events(session_id);`);
    const ins = old.prepare(
      'INSERT INTO audit_events (time, verb, actor, cluster, session_id, body) VALUES (?, ?, ?, ?, ?, ?)',
    );
    const t = '2025-01-01T00:00:00.000Z';
    ins.run(t, 'cluster_shell_open', 'alice', 'c', 's1', JSON.stringify({ session_id: 's1' }));
    ins.run(
      t,
      'cluster_shell_close',
      'alice',
      'c',
      's1',
      JSON.stringify({ close_reason: 'exit', exit_code: 0 }),
    );
    ins.run(t, 'cluster_shell_open', 'bob', 'c', 's2', JSON.stringify({ session_id: 's2' }));
    ins.run(
      t,
      'cluster_shell_close',
      'bob',
      'c',
      's2',
      JSON.stringify({ close_reason: 'heartbeat_timeout', exit_code: null }),
    );
    ins.run(t, 'cluster_shell_open', 'carol', 'c', 's3', JSON.stringify({ session_id: 's3' }));
    ins.run(
      t,
      'cluster_shell_close',
      'carol',
      'c',
      's3',
      JSON.stringify({ close_reason: 'exit', exit_code: 3 }),
    );
    expect(old.pragma('auto_vacuum', { simple: true })).toBe(0);
    old.close();

    const { s } = store(path);
    expect(s.query({ limit: 10 }).events.map((e) => [e.sessionId, e.verb, e.outcome])).toEqual([
      ['s3', 'cluster_shell_close', 'error'],
      ['s3', 'cluster_shell_open', 'ok'],
      ['s2', 'cluster_shell_close', 'error'],
      ['s2', 'cluster_shell_open', 'ok'],
      ['s1', 'cluster_shell_close', 'ok'],
      ['s1', 'cluster_shell_open', 'ok'],
    ]);
    expect(s.write(open('dave', 's4')).id).toBe(7);
    s.close();

    const check = new Database(path, { readonly: true });
    const indexes = (check.prepare('PRAGMA index_list(audit_events)').all() as { name: string }[])
      .map((i) => i.name)
      .sort();
    expect(indexes).toEqual([
      'audit_events_actor',
      'audit_events_cluster',
      'audit_events_session',
      'audit_events_time',
      'audit_events_verb',
    ]);
    expect(check.pragma('auto_vacuum', { simple: true })).toBe(2); // small: switched with one VACUUM
    expect(check.pragma('user_version', { simple: true })).toBe(3);
    check.close();

    const { s: again } = store(path); // idempotent
    expect(again.count()).toBe(7);
    // Row sizes were filled in for the old rows, so retention can share by actor.
    const bytes = again.bytesByActor();
    expect([...bytes.keys()].sort()).toEqual(['alice', 'bob', 'carol', 'dave']);
    for (const b of bytes.values()) expect(b).toBeGreaterThan(64);
  });
});

describe('the pure parts both audit adapters share', () => {
  it('reads a row of either driver as the same event', () => {
    const columns = {
      verb: 'exec_close',
      actor: 'alice',
      cluster: 'c',
      session_id: 's1',
      body: '{"close_reason":"exit"}',
    };
    const sqlite = auditEventOf({ ...columns, id: 7, time: '2025-03-01T00:00:00.000Z', outcome: 'ok' });
    // pg: bigint as text, timestamptz as a Date
    const pg = auditEventOf({
      ...columns,
      id: '7',
      time: new Date('2025-03-01T00:00:00.000Z'),
      outcome: 'ok',
    });
    expect(pg).toEqual(sqlite);
    expect(sqlite).toEqual({
      id: 7,
      time: '2025-03-01T00:00:00.000Z',
      verb: 'exec_close',
      actor: 'alice',
      cluster: 'c',
      sessionId: 's1',
      outcome: 'ok',
      body: { close_reason: 'exit' },
    });
    // anything but `error` reads as ok
    expect(auditEventOf({ ...columns, id: 1, time: 't', outcome: 'weird' }).outcome).toBe('ok');
    expect(auditEventOf({ ...columns, id: 1, time: 't', outcome: 'error' }).outcome).toBe('error');
  });

  it('lists the conditions of a query in one order, only those asked', () => {
    expect(auditConditions({ limit: 10 })).toEqual([]);
    expect(
      auditConditions({
        limit: 10,
        before: 5,
        until: '2025-03-02T00:00:00.000Z',
        since: '2025-03-01T00:00:00.000Z',
        outcome: 'error',
        sessionId: 's',
        cluster: 'c',
        actor: 'a',
        verb: 'v',
      }).map((c) => `${c.column} ${c.op} ${c.value}`),
    ).toEqual([
      'verb = v',
      'actor = a',
      'cluster = c',
      'session_id = s',
      'outcome = error',
      'time >= 2025-03-01T00:00:00.000Z',
      'time < 2025-03-02T00:00:00.000Z',
      'id < 5',
    ]);
  });

  it('pages the limit + 1 rows a query read: the extra row only says there is more', () => {
    const row = (id: number) => ({
      id,
      time: 't',
      verb: 'v',
      actor: 'a',
      cluster: 'c',
      session_id: 's',
      outcome: 'ok',
      body: '{}',
    });
    const full = auditPageOf([row(9), row(8), row(7)], 2, auditEventOf);
    expect(full.events.map((e) => e.id)).toEqual([9, 8]);
    expect(full.nextBefore).toBe(8);
    const last = auditPageOf([row(9), row(8)], 2, auditEventOf);
    expect(last.nextBefore).toBeNull();
    expect(auditPageOf([], 2, auditEventOf)).toEqual({ events: [], nextBefore: null });
  });
});
