import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  AuditStore,
  auditLine,
  deriveOutcome,
  fairShareCut,
  stdoutSink,
  type AuditEvent,
} from './audit-store';

const DAY = 86_400_000;
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
  it('keeps events durably across reopen and closes sessions a server stop left open', () => {
    const { s: a, path } = store();
    a.write({
      verb: 'cluster_shell_open',
      actor: 'alice',
      cluster: 'c',
      sessionId: 's1',
      body: { cluster: 'c', mode: 'bash', tier: 'admin', session_id: 's1' },
    });
    a.write(open('bob', 's2'));
    a.write(close('bob', 's2', 'exit'));
    a.close(); // the server stops with s1 open

    const { s: b } = store(path);
    expect(b.closeOrphans('cluster_shell_open', 'cluster_shell_close')).toEqual(['s1']);
    expect(b.closeOrphans('cluster_shell_open', 'cluster_shell_close')).toEqual([]);
    const s1 = b.bySession('s1');
    expect(s1.map((e) => e.verb)).toEqual(['cluster_shell_open', 'cluster_shell_close']);
    expect(s1[1]!.body).toMatchObject({ close_reason: 'server_restart', tier: 'admin', commands: [] });
    expect(s1[1]!.outcome).toBe('error');
    expect(b.bySession('s2')).toHaveLength(2);
  });

  it('mirrors every event to the sink as one JSON line, envelope first, after storing it', () => {
    const { s, lines } = store();
    const e = s.write({
      ...open('alice', 's1'),
      body: { ...open('alice', 's1').body, audit: false, id: 999, verb: 'fake', note: 'line\nbreak' },
    });
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).not.toContain('\n');
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(parsed).slice(0, 8)).toEqual([
      'audit',
      'id',
      'time',
      'verb',
      'actor',
      'cluster',
      'session_id',
      'outcome',
    ]);
    expect(parsed).toEqual({
      audit: true,
      id: e.id,
      time: '2025-03-01T00:00:00.000Z',
      verb: 'cluster_shell_open',
      actor: 'alice',
      cluster: 'c',
      session_id: 's1',
      outcome: 'ok',
      mode: 'bash',
      tier: 'admin',
      note: 'line\nbreak',
    });
    expect(s.bySession('s1')[0]!.body).toMatchObject({ id: 999, verb: 'fake' }); // the stored body is untouched
    expect(auditLine(e)).toBe(line);
  });

  it('writes the stdout sink as one line per event and survives a throwing sink', () => {
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    stdoutSink('{"audit":true}');
    expect(write).toHaveBeenCalledWith('{"audit":true}\n');
    const s = new AuditStore(dbPath(), {
      sink: () => {
        throw new Error('EPIPE');
      },
    });
    opened.push(s);
    expect(s.write(open('a', 's')).id).toBe(1);
    expect(s.count()).toBe(1);
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

    const { s } = store();
    expect(s.write(close('a', 's1', 'exit', 0)).outcome).toBe('ok');
    expect(s.write(close('a', 's2', 'exit', 137)).outcome).toBe('error');
    expect(s.write({ ...open('a', 's3'), outcome: 'error' }).outcome).toBe('error');
    expect(s.write({ ...close('a', 's4', 'heartbeat_timeout'), outcome: 'ok' }).outcome).toBe('ok');
    expect(s.query({ outcome: 'error', limit: 10 }).events.map((e) => e.sessionId)).toEqual(['s3', 's2']);
    expect(s.query({ outcome: 'ok', limit: 10 }).events.map((e) => e.sessionId)).toEqual(['s4', 's1']);
  });

  it('filters by verb, actor, cluster, session, outcome and a half-open time range', () => {
    const { s, clock } = store();
    s.write(open('alice', 's1', 'east')); // T0
    clock.now = T0 + 1000;
    s.write(open('bob', 's2', 'west'));
    clock.now = T0 + 2000;
    s.write(close('alice', 's1', 'exit'));
    clock.now = T0 + 3000;
    s.write(close('bob', 's2', 'heartbeat_timeout', null));
    const ids = (q: Parameters<AuditStore['query']>[0]): number[] => s.query(q).events.map((e) => e.id);

    expect(ids({ limit: 100 })).toEqual([4, 3, 2, 1]);
    expect(ids({ verb: 'cluster_shell_open', limit: 100 })).toEqual([2, 1]);
    expect(ids({ actor: 'alice', limit: 100 })).toEqual([3, 1]);
    expect(ids({ cluster: 'west', limit: 100 })).toEqual([2]);
    expect(ids({ sessionId: 's2', limit: 100 })).toEqual([4, 2]);
    expect(ids({ outcome: 'error', limit: 100 })).toEqual([4]);
    expect(ids({ actor: 'bob', verb: 'cluster_shell_close', limit: 100 })).toEqual([4]);
    expect(ids({ actor: 'nobody', limit: 100 })).toEqual([]);
    const at = (ms: number): string => new Date(T0 + ms).toISOString();
    expect(ids({ since: at(1000), limit: 100 })).toEqual([4, 3, 2]);
    expect(ids({ until: at(2000), limit: 100 })).toEqual([2, 1]);
    expect(ids({ since: at(1000), until: at(3000), limit: 100 })).toEqual([3, 2]);
    const e = s.query({ sessionId: 's1', limit: 1 }).events[0]!;
    expect(e).toEqual({
      id: 3,
      time: at(2000),
      verb: 'cluster_shell_close',
      actor: 'alice',
      cluster: 'c',
      sessionId: 's1',
      outcome: 'ok',
      body: { session_id: 's1', close_reason: 'exit', exit_code: 0, commands: [] },
    });
  });

  it('pages newest first by id, stable while new events arrive', () => {
    const { s } = store();
    for (let i = 1; i <= 25; i++) s.write(open(i % 2 === 0 ? 'even' : 'odd', `s${i}`));
    const p1 = s.query({ limit: 10 });
    expect(p1.events.map((e) => e.id)).toEqual([25, 24, 23, 22, 21, 20, 19, 18, 17, 16]);
    expect(p1.nextBefore).toBe(16);
    for (let i = 26; i <= 30; i++) s.write(open('odd', `s${i}`)); // newer events do not shift older pages
    const p2 = s.query({ limit: 10, before: p1.nextBefore! });
    expect(p2.events.map((e) => e.id)).toEqual([15, 14, 13, 12, 11, 10, 9, 8, 7, 6]);
    const p3 = s.query({ limit: 10, before: p2.nextBefore! });
    expect(p3.events.map((e) => e.id)).toEqual([5, 4, 3, 2, 1]);
    expect(p3.nextBefore).toBeNull();
    // A page that ends exactly at the last event says so.
    expect(s.query({ limit: 5, before: 6 }).nextBefore).toBeNull();
    // Paging with a filter.
    const odd1 = s.query({ actor: 'odd', limit: 4, before: 20 });
    expect(odd1.events.map((e) => e.id)).toEqual([19, 17, 15, 13]);
    expect(s.query({ actor: 'odd', limit: 4, before: odd1.nextBefore! }).events.map((e) => e.id)).toEqual([
      11, 9, 7, 5,
    ]);
  });

  it('deletes events older than the retention, open sessions included', async () => {
    const { s, clock } = store();
    s.write(open('alice', 'old-closed'));
    s.write(close('alice', 'old-closed', 'exit'));
    s.write(open('alice', 'old-still-open')); // its session never closed; age retention applies anyway
    clock.now = T0 + 10 * DAY;
    s.write(open('bob', 'new'));
    clock.now = T0 + 40 * DAY;

    const r = await s.prune({ retentionDays: 30, maxBytes: 1024 ** 3 });
    expect(r).toMatchObject({ deletedByAge: 3, deletedBySize: 0 });
    expect(s.query({ limit: 100 }).events.map((e) => e.sessionId)).toEqual(['new']);
    expect(await s.prune({ retentionDays: 30, maxBytes: 1024 ** 3 })).toMatchObject({ deletedByAge: 0 });
    clock.now = T0 + 41 * DAY;
    expect(await s.prune({ retentionDays: 30, maxBytes: 1024 ** 3 })).toMatchObject({ deletedByAge: 1 });
    expect(s.count()).toBe(0);
  });

  it('deletes many old events in batches', async () => {
    const { s, clock } = store();
    for (let i = 0; i < 4500; i++) s.write(open('a', `s${i}`));
    clock.now = T0 + 2 * DAY;
    s.write(open('a', 'keep'));
    const r = await s.prune({ retentionDays: 1, maxBytes: 1024 ** 3 });
    expect(r.deletedByAge).toBe(4500);
    expect(s.count()).toBe(1);
  });

  it('deletes the oldest events when the database exceeds maxBytes, down to 90 %, and shrinks the files', async () => {
    const { s, path } = store();
    const maxBytes = 256 * 1024;
    const filler = 'x'.repeat(400);
    for (let i = 1; i <= 3000; i++) s.write({ ...open(`u${i % 7}`, `s${i}`), body: { filler, i } });
    expect(s.liveBytes()).toBeGreaterThan(maxBytes * 3);

    const r = await s.prune({ retentionDays: 365, maxBytes });
    expect(r.deletedByAge).toBe(0);
    expect(r.deletedBySize).toBeGreaterThan(2000);
    expect(r.bytes).toBeLessThanOrEqual(maxBytes * 0.9);
    expect(s.liveBytes()).toBe(r.bytes);
    const left = s.count();
    expect(left).toBe(3000 - r.deletedBySize);
    // Seven actors of equal weight: each kept its newest events, all about the same number.
    const kept = new Map<string, number[]>();
    for (const e of s.query({ limit: 3000 }).events) kept.set(e.actor, [...(kept.get(e.actor) ?? []), e.id]);
    expect(kept.size).toBe(7);
    for (const [actor, ids] of kept) {
      const u = Number(actor.slice(1));
      const all = Array.from({ length: 3000 }, (_, i) => i + 1).filter((i) => i % 7 === u);
      expect(ids.slice().sort((a, b) => a - b)).toEqual(all.slice(all.length - ids.length));
    }
    const counts = [...kept.values()].map((ids) => ids.length);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(2);
    // Freed pages went back to the file system and the WAL was truncated.
    expect(s.fileBytes()).toBeLessThanOrEqual(maxBytes);
    expect(statSync(path).size).toBeLessThanOrEqual(maxBytes);
    expect(!existsSync(`${path}-wal`) || statSync(`${path}-wal`).size === 0).toBe(true);
    // Under the bound: nothing more to do.
    expect(await s.prune({ retentionDays: 365, maxBytes })).toMatchObject({ deletedBySize: 0 });
  });

  it("shares the size bound fairly: one user's many big closes never evict another user's records", async () => {
    const { s, clock } = store();
    const maxBytes = 512 * 1024;
    // bob and carol work normally; mallory then closes many sessions with 60 KiB command lists.
    for (let i = 0; i < 40; i++) {
      s.write(open('bob', `b${i}`));
      s.write(close('bob', `b${i}`, 'exit'));
      s.write(open('carol', `c${i}`));
    }
    const light = s.query({ limit: 1000 }).events.map((e) => e.id);
    const command = { timestamp: 't', argv: ['kubectl', 'get', 'pods', 'x'.repeat(600)], pid: 1 };
    const commands = Array.from({ length: 100 }, () => command);
    for (let i = 0; i < 120; i++) {
      clock.now += 1000;
      s.write(open('mallory', `m${i}`));
      s.write({ ...close('mallory', `m${i}`, 'exit'), body: { close_reason: 'exit', commands } });
    }
    expect(s.liveBytes()).toBeGreaterThan(maxBytes * 10);

    const r = await s.prune({ retentionDays: 365, maxBytes });
    expect(r.bytes).toBeLessThanOrEqual(maxBytes * 0.9);
    // Every light record is still there; only mallory lost history, oldest first.
    const ids = new Set(s.query({ limit: 5000 }).events.map((e) => e.id));
    for (const id of light) expect(ids.has(id)).toBe(true);
    expect(s.query({ actor: 'bob', limit: 1000 }).events).toHaveLength(80);
    expect(s.query({ actor: 'carol', limit: 1000 }).events).toHaveLength(40);
    const mallory = s.query({ actor: 'mallory', limit: 1000 }).events.map((e) => e.sessionId);
    expect(mallory.length).toBeGreaterThan(0);
    expect(mallory.length).toBeLessThan(240);
    expect(mallory[0]).toBe('m119'); // newest kept
    expect(r.deletedBySize).toBe(240 - mallory.length);
  });

  it('cuts the heaviest shares down to one level (water-filling)', () => {
    const u = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));
    expect(fairShareCut(u({ a: 100, b: 10 }), 50)).toEqual(u({ a: 50 }));
    expect(fairShareCut(u({ a: 100, b: 60, c: 10 }), 60)).toEqual(u({ a: 50, b: 10 }));
    expect(fairShareCut(u({ a: 30, b: 30 }), 20)).toEqual(u({ a: 10, b: 10 }));
    expect(fairShareCut(u({ a: 30, b: 10 }), 100)).toEqual(u({ a: 30, b: 10 }));
    expect(fairShareCut(u({}), 10)).toEqual(u({}));
  });

  it('stops a prune cleanly when the store is closed meanwhile', async () => {
    const { s, clock } = store();
    for (let i = 0; i < 4500; i++) s.write(open('a', `s${i}`));
    clock.now = T0 + 2 * DAY;
    const p = s.prune({ retentionDays: 1, maxBytes: 1024 ** 3 });
    s.close();
    await expect(p).resolves.toMatchObject({ bytes: 0 });
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
