/**
 * The audit store's behaviour as tests, run against every adapter of the {@link AuditLog} port:
 * SQLite in the unit project (audit-store.spec.ts), PostgreSQL in the integration project
 * (e2e/server/audit-store-postgres.int.spec.ts, a real server). Not a spec file itself.
 */
import { afterEach, expect, it, vi } from 'vitest';

import type { AuditLog } from './audit-log';
import { auditLine, stdoutSink, type AuditEvent, type AuditQuery, type AuditSink } from './audit-store';

export interface AuditLogAdapter {
  /** A new, empty database: a file path (SQLite) or a URL (PostgreSQL). */
  newDatabase(): Promise<string>;
  open(database: string, options: { sink?: AuditSink; now?: () => number }): Promise<AuditLog>;
}

export interface AuditLogCaseOptions {
  /** Adapter-specific checks after the size-bound prune (SQLite: the files shrank). */
  afterSizePrune?: (log: AuditLog, database: string, maxBytes: number) => void | Promise<void>;
}

const DAY = 86_400_000;
export const T0 = Date.parse('2025-03-01T00:00:00.000Z');

export const openEvent = (actor: string, sessionId: string, cluster = 'c'): AuditEvent => ({
  verb: 'cluster_shell_open',
  actor,
  cluster,
  sessionId,
  body: { cluster, mode: 'bash', tier: 'admin', session_id: sessionId, actor },
});

export const closeEvent = (
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

/** `v`, or a failed expectation when it is missing. */
function must<T>(v: T | null | undefined): T {
  expect(v).toBeDefined();
  expect(v).not.toBeNull();
  return v as T;
}

/** Registers the shared cases in the enclosing describe. */
export function auditLogCases(adapter: AuditLogAdapter, options: AuditLogCaseOptions = {}): void {
  const opened: AuditLog[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    vi.restoreAllMocks();
  });

  /** A store on a new (or the given) database with a captured sink and a settable clock. */
  async function store(database?: string): Promise<{
    s: AuditLog;
    lines: string[];
    clock: { now: number };
    database: string;
  }> {
    const db = database ?? (await adapter.newDatabase());
    const lines: string[] = [];
    const clock = { now: T0 };
    const s = await adapter.open(db, { sink: (l) => lines.push(l), now: () => clock.now });
    opened.push(s);
    return { s, lines, clock, database: db };
  }

  it('keeps events durably across reopen and closes sessions a server stop left open', async () => {
    const { s: a, database } = await store();
    await a.write({
      verb: 'cluster_shell_open',
      actor: 'alice',
      cluster: 'c',
      sessionId: 's1',
      body: { cluster: 'c', mode: 'bash', tier: 'admin', session_id: 's1' },
    });
    await a.write(openEvent('bob', 's2'));
    await a.write(closeEvent('bob', 's2', 'exit'));
    await a.close(); // the server stops with s1 open

    const { s: b } = await store(database);
    expect(await b.closeOrphans('cluster_shell_open', 'cluster_shell_close')).toEqual(['s1']);
    expect(await b.closeOrphans('cluster_shell_open', 'cluster_shell_close')).toEqual([]);
    const s1 = await b.bySession('s1');
    expect(s1.map((e) => e.verb)).toEqual(['cluster_shell_open', 'cluster_shell_close']);
    expect(must(s1[1]).body).toMatchObject({ close_reason: 'server_restart', tier: 'admin', commands: [] });
    expect(must(s1[1]).outcome).toBe('error');
    expect(await b.bySession('s2')).toHaveLength(2);
  });

  it('lists opens without a close, oldest first, in pages', async () => {
    const { s } = await store();
    for (const id of ['u1', 'u2', 'u3', 'u4']) await s.write(openEvent('alice', id));
    await s.write(closeEvent('alice', 'u2', 'exit'));
    await s.write({ ...openEvent('alice', 'e1'), verb: 'exec_open' });
    const all = await s.unclosed('cluster_shell_open', 'cluster_shell_close', 10);
    expect(all.map((e) => e.sessionId)).toEqual(['u1', 'u3', 'u4']);
    expect(all.every((e) => e.verb === 'cluster_shell_open')).toBe(true);
    const first = await s.unclosed('cluster_shell_open', 'cluster_shell_close', 2);
    expect(first.map((e) => e.sessionId)).toEqual(['u1', 'u3']);
    const rest = await s.unclosed('cluster_shell_open', 'cluster_shell_close', 2, must(first[1]).id);
    expect(rest.map((e) => e.sessionId)).toEqual(['u4']);
    expect((await s.unclosed('exec_open', 'exec_close', 10)).map((e) => e.sessionId)).toEqual(['e1']);
  });

  it('mirrors every event to the sink as one JSON line, envelope first, after storing it', async () => {
    const { s, lines } = await store();
    const e = await s.write({
      ...openEvent('alice', 's1'),
      body: { ...openEvent('alice', 's1').body, audit: false, id: 999, verb: 'fake', note: 'line\nbreak' },
    });
    expect(lines).toHaveLength(1);
    const line = must(lines[0]);
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
    // the stored body is untouched
    expect(must((await s.bySession('s1'))[0]).body).toMatchObject({ id: 999, verb: 'fake' });
    expect(auditLine(e)).toBe(line);
  });

  it('writes the stdout sink as one line per event and survives a throwing sink', async () => {
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    stdoutSink('{"audit":true}');
    expect(write).toHaveBeenCalledWith('{"audit":true}\n');
    const s = await adapter.open(await adapter.newDatabase(), {
      sink: () => {
        throw new Error('EPIPE');
      },
    });
    opened.push(s);
    expect((await s.write(openEvent('a', 's'))).id).toBe(1);
    expect(await s.count()).toBe(1);
  });

  it('derives the outcome of closes and keeps an explicit one', async () => {
    const { s } = await store();
    expect((await s.write(closeEvent('a', 's1', 'exit', 0))).outcome).toBe('ok');
    expect((await s.write(closeEvent('a', 's2', 'exit', 137))).outcome).toBe('error');
    expect((await s.write({ ...openEvent('a', 's3'), outcome: 'error' })).outcome).toBe('error');
    expect((await s.write({ ...closeEvent('a', 's4', 'heartbeat_timeout'), outcome: 'ok' })).outcome).toBe(
      'ok',
    );
    const sessions = async (q: AuditQuery): Promise<string[]> =>
      (await s.query(q)).events.map((e) => e.sessionId);
    expect(await sessions({ outcome: 'error', limit: 10 })).toEqual(['s3', 's2']);
    expect(await sessions({ outcome: 'ok', limit: 10 })).toEqual(['s4', 's1']);
  });

  it('filters by verb, actor, cluster, session, outcome and a half-open time range', async () => {
    const { s, clock } = await store();
    await s.write(openEvent('alice', 's1', 'east')); // T0
    clock.now = T0 + 1000;
    await s.write(openEvent('bob', 's2', 'west'));
    clock.now = T0 + 2000;
    await s.write(closeEvent('alice', 's1', 'exit'));
    clock.now = T0 + 3000;
    await s.write(closeEvent('bob', 's2', 'heartbeat_timeout', null));
    const ids = async (q: AuditQuery): Promise<number[]> => (await s.query(q)).events.map((e) => e.id);

    expect(await ids({ limit: 100 })).toEqual([4, 3, 2, 1]);
    expect(await ids({ verb: 'cluster_shell_open', limit: 100 })).toEqual([2, 1]);
    expect(await ids({ actor: 'alice', limit: 100 })).toEqual([3, 1]);
    expect(await ids({ cluster: 'west', limit: 100 })).toEqual([2]);
    expect(await ids({ sessionId: 's2', limit: 100 })).toEqual([4, 2]);
    expect(await ids({ outcome: 'error', limit: 100 })).toEqual([4]);
    expect(await ids({ actor: 'bob', verb: 'cluster_shell_close', limit: 100 })).toEqual([4]);
    expect(await ids({ actor: 'nobody', limit: 100 })).toEqual([]);
    const at = (ms: number): string => new Date(T0 + ms).toISOString();
    expect(await ids({ since: at(1000), limit: 100 })).toEqual([4, 3, 2]);
    expect(await ids({ until: at(2000), limit: 100 })).toEqual([2, 1]);
    expect(await ids({ since: at(1000), until: at(3000), limit: 100 })).toEqual([3, 2]);
    const e = must((await s.query({ sessionId: 's1', limit: 1 })).events[0]);
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

  it('pages newest first by id, stable while new events arrive', async () => {
    const { s } = await store();
    for (let i = 1; i <= 25; i++) await s.write(openEvent(i % 2 === 0 ? 'even' : 'odd', `s${i}`));
    const ids = async (q: AuditQuery): Promise<number[]> => (await s.query(q)).events.map((e) => e.id);
    const p1 = await s.query({ limit: 10 });
    expect(p1.events.map((e) => e.id)).toEqual([25, 24, 23, 22, 21, 20, 19, 18, 17, 16]);
    expect(p1.nextBefore).toBe(16);
    for (let i = 26; i <= 30; i++) await s.write(openEvent('odd', `s${i}`)); // newer events do not shift older pages
    const p2 = await s.query({ limit: 10, before: must(p1.nextBefore) });
    expect(p2.events.map((e) => e.id)).toEqual([15, 14, 13, 12, 11, 10, 9, 8, 7, 6]);
    const p3 = await s.query({ limit: 10, before: must(p2.nextBefore) });
    expect(p3.events.map((e) => e.id)).toEqual([5, 4, 3, 2, 1]);
    expect(p3.nextBefore).toBeNull();
    // A page that ends exactly at the last event says so.
    expect((await s.query({ limit: 5, before: 6 })).nextBefore).toBeNull();
    // Paging with a filter.
    const odd1 = await s.query({ actor: 'odd', limit: 4, before: 20 });
    expect(odd1.events.map((e) => e.id)).toEqual([19, 17, 15, 13]);
    expect(await ids({ actor: 'odd', limit: 4, before: must(odd1.nextBefore) })).toEqual([11, 9, 7, 5]);
  });

  it('deletes events older than the retention, open sessions included', async () => {
    const { s, clock } = await store();
    await s.write(openEvent('alice', 'old-closed'));
    await s.write(closeEvent('alice', 'old-closed', 'exit'));
    await s.write(openEvent('alice', 'old-still-open')); // its session never closed; age retention applies anyway
    clock.now = T0 + 10 * DAY;
    await s.write(openEvent('bob', 'new'));
    clock.now = T0 + 40 * DAY;

    const r = await s.prune({ retentionDays: 30, maxBytes: 1024 ** 3 });
    expect(r).toMatchObject({ deletedByAge: 3, deletedBySize: 0 });
    expect((await s.query({ limit: 100 })).events.map((e) => e.sessionId)).toEqual(['new']);
    expect(await s.prune({ retentionDays: 30, maxBytes: 1024 ** 3 })).toMatchObject({ deletedByAge: 0 });
    clock.now = T0 + 41 * DAY;
    expect(await s.prune({ retentionDays: 30, maxBytes: 1024 ** 3 })).toMatchObject({ deletedByAge: 1 });
    expect(await s.count()).toBe(0);
  });

  it('deletes many old events in batches', async () => {
    const { s, clock } = await store();
    for (let i = 0; i < 4500; i++) await s.write(openEvent('a', `s${i}`));
    clock.now = T0 + 2 * DAY;
    await s.write(openEvent('a', 'keep'));
    const r = await s.prune({ retentionDays: 1, maxBytes: 1024 ** 3 });
    expect(r.deletedByAge).toBe(4500);
    expect(await s.count()).toBe(1);
  });

  it('deletes the oldest events when the store exceeds maxBytes, down to 90 %, fairly by actor', async () => {
    const { s, database } = await store();
    const maxBytes = 256 * 1024;
    const filler = 'x'.repeat(400);
    for (let i = 1; i <= 3000; i++)
      await s.write({ ...openEvent(`u${i % 7}`, `s${i}`), body: { filler, i } });
    expect(await s.storedBytes()).toBeGreaterThan(maxBytes * 3);

    const r = await s.prune({ retentionDays: 365, maxBytes });
    expect(r.deletedByAge).toBe(0);
    expect(r.deletedBySize).toBeGreaterThan(2000);
    expect(r.bytes).toBeLessThanOrEqual(maxBytes * 0.9);
    expect(await s.storedBytes()).toBe(r.bytes);
    const left = await s.count();
    expect(left).toBe(3000 - r.deletedBySize);
    // Seven actors of equal weight: each kept its newest events, all about the same number.
    const kept = new Map<string, number[]>();
    for (const e of (await s.query({ limit: 3000 })).events)
      kept.set(e.actor, [...(kept.get(e.actor) ?? []), e.id]);
    expect(kept.size).toBe(7);
    for (const [actor, ids] of kept) {
      const u = Number(actor.slice(1));
      const all = Array.from({ length: 3000 }, (_, i) => i + 1).filter((i) => i % 7 === u);
      expect(ids.slice().sort((a, b) => a - b)).toEqual(all.slice(all.length - ids.length));
    }
    const counts = [...kept.values()].map((ids) => ids.length);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(2);
    await options.afterSizePrune?.(s, database, maxBytes);
    // Under the bound: nothing more to do.
    expect(await s.prune({ retentionDays: 365, maxBytes })).toMatchObject({ deletedBySize: 0 });
  });

  it("shares the size bound fairly: one user's many big closes never evict another user's records", async () => {
    const { s, clock } = await store();
    const maxBytes = 512 * 1024;
    // bob and carol work normally; mallory then closes many sessions with 60 KiB command lists.
    for (let i = 0; i < 40; i++) {
      await s.write(openEvent('bob', `b${i}`));
      await s.write(closeEvent('bob', `b${i}`, 'exit'));
      await s.write(openEvent('carol', `c${i}`));
    }
    const light = (await s.query({ limit: 1000 })).events.map((e) => e.id);
    const command = { timestamp: 't', argv: ['kubectl', 'get', 'pods', 'x'.repeat(600)], pid: 1 };
    const commands = Array.from({ length: 100 }, () => command);
    for (let i = 0; i < 120; i++) {
      clock.now += 1000;
      await s.write(openEvent('mallory', `m${i}`));
      await s.write({ ...closeEvent('mallory', `m${i}`, 'exit'), body: { close_reason: 'exit', commands } });
    }
    expect(await s.storedBytes()).toBeGreaterThan(maxBytes * 10);

    const r = await s.prune({ retentionDays: 365, maxBytes });
    expect(r.bytes).toBeLessThanOrEqual(maxBytes * 0.9);
    // Every light record is still there; only mallory lost history, oldest first.
    const ids = new Set((await s.query({ limit: 5000 })).events.map((e) => e.id));
    for (const id of light) expect(ids.has(id)).toBe(true);
    expect((await s.query({ actor: 'bob', limit: 1000 })).events).toHaveLength(80);
    expect((await s.query({ actor: 'carol', limit: 1000 })).events).toHaveLength(40);
    const mallory = (await s.query({ actor: 'mallory', limit: 1000 })).events.map((e) => e.sessionId);
    expect(mallory.length).toBeGreaterThan(0);
    expect(mallory.length).toBeLessThan(240);
    expect(mallory[0]).toBe('m119'); // newest kept
    expect(r.deletedBySize).toBe(240 - mallory.length);
  });

  it('stops a prune cleanly when the store is closed meanwhile', async () => {
    const { s, clock } = await store();
    for (let i = 0; i < 4500; i++) await s.write(openEvent('a', `s${i}`));
    clock.now = T0 + 2 * DAY;
    await s.write(openEvent('a', 'keep')); // a prune that ran to its end would report its bytes
    const p = s.prune({ retentionDays: 1, maxBytes: 1024 ** 3 });
    await s.close();
    await expect(p).resolves.toMatchObject({ bytes: 0 });
  });

  it('writes a session close once: a second writeOnce of the same session and verb is a no-op', async () => {
    const { s, lines } = await store();
    await s.write(openEvent('alice', 's1'));
    const first = await s.writeOnce(closeEvent('alice', 's1', 'exit'));
    expect(first).toMatchObject({ verb: 'cluster_shell_close', sessionId: 's1', outcome: 'ok' });
    expect(
      await s.writeOnce({ ...closeEvent('alice', 's1', 'replica_lost'), actor: 'alice' }),
    ).toBeUndefined();
    // Many at once (replicas noticing together): one lands.
    const racing = await Promise.all(
      Array.from({ length: 8 }, () => s.writeOnce(closeEvent('bob', 's2', 'replica_lost', null))),
    );
    expect(racing.filter((r) => r !== undefined)).toHaveLength(1);
    // Another kind, or another session, is its own record.
    expect(await s.writeOnce({ ...closeEvent('alice', 's1', 'exit'), verb: 'exec_close' })).toBeDefined();
    expect(await s.writeOnce(closeEvent('alice', 's3', 'exit'))).toBeDefined();
    // Not a close: once per session and verb too.
    expect(await s.writeOnce(openEvent('carol', 's4'))).toBeDefined();
    expect(await s.writeOnce(openEvent('carol', 's4'))).toBeUndefined();
    const closes = (await s.bySession('s1')).filter((e) => e.verb === 'cluster_shell_close');
    expect(closes.map((e) => e.body['close_reason'])).toEqual(['exit']);
    expect((await s.bySession('s2')).map((e) => e.verb)).toEqual(['cluster_shell_close']);
    // Only stored events reach the sink.
    expect(lines).toHaveLength(6);
  });

  it('answers the same through every store on one database (replicas), and closes an orphan once', async () => {
    const { s: a, database, clock } = await store();
    const { s: b } = await store(database);
    const written = await a.write(openEvent('alice', 'r1', 'east'));
    clock.now = T0 + 1000;
    await b.write(openEvent('bob', 'r2', 'west'));
    expect(await b.bySession('r1')).toEqual([written]);
    const fromA = await a.query({ limit: 10 });
    const fromB = await b.query({ limit: 10 });
    expect(fromB).toEqual(fromA);
    expect(fromA.events.map((e) => e.sessionId)).toEqual(['r2', 'r1']);
    // Both notice the orphans at once: each session gets exactly one close.
    const [ca, cb] = await Promise.all([
      a.closeOrphans('cluster_shell_open', 'cluster_shell_close'),
      b.closeOrphans('cluster_shell_open', 'cluster_shell_close'),
    ]);
    expect([...ca, ...cb].sort()).toEqual(['r1', 'r2']);
    for (const id of ['r1', 'r2'])
      expect((await a.bySession(id)).filter((e) => e.verb === 'cluster_shell_close')).toHaveLength(1);
  });
}
