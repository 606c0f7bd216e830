import { describe, expect, it } from 'vitest';

import { mergeSessions, parseSnapshot, MAX_INDEX_SESSIONS } from './session-index';
import type { SessionView } from './terminal-sessions.service';

const session = (id: string, over: Partial<SessionView> = {}): SessionView => ({
  sessionId: id,
  kind: 'pod_exec',
  cluster: 'edge',
  subject: 'alice@example.com',
  tier: 'admin',
  startedAt: '2026-12-06T10:00:00.000Z',
  state: 'open',
  bytesIn: 1,
  bytesOut: 2,
  lastActivityAt: '2026-12-06T10:00:10.000Z',
  idleSeconds: 0,
  ...over,
});

const NOW = Date.parse('2026-12-06T10:01:10.000Z');

describe('mergeSessions', () => {
  it("this replica's live sessions and the others' snapshots, each once, in start order", () => {
    const here = [session('b', { startedAt: '2026-12-06T10:00:05.000Z', bytesOut: 99 })];
    const merged = mergeSessions(
      here,
      [
        { replica: 'fwd-b', sessions: [session('c'), session('b')] },
        { replica: 'fwd-c', sessions: [session('a')] },
      ],
      { subject: 'alice@example.com' },
      false,
      NOW,
      'fwd-a',
    );
    expect(merged.map((s) => s.sessionId)).toEqual(['a', 'c', 'b']);
    // each named with the replica holding it
    expect(merged.map((s) => s.replica)).toEqual(['fwd-c', 'fwd-b', 'fwd-a']);
    // the live one wins over a snapshot of it
    expect(merged.find((s) => s.sessionId === 'b')?.bytesOut).toBe(99);
    // idle counted from the last activity now, not when the snapshot was written
    expect(merged.find((s) => s.sessionId === 'a')?.idleSeconds).toBe(60);
  });

  it("someone else's sessions only for admins", () => {
    const snaps = [
      { replica: 'fwd-b', sessions: [session('x', { subject: 'bob@example.com' }), session('y')] },
    ];
    expect(
      mergeSessions([], snaps, { subject: 'alice@example.com' }, false, NOW).map((s) => s.sessionId),
    ).toEqual(['y']);
    expect(
      mergeSessions([], snaps, { subject: 'alice@example.com' }, true, NOW).map((s) => s.sessionId),
    ).toEqual(['x', 'y']);
    // one replica (no localReplica): its own rows are not named
    expect(mergeSessions([session('z')], [], { subject: 'alice@example.com' }, false, NOW)[0]?.replica).toBe(
      undefined,
    );
  });
});

describe('parseSnapshot', () => {
  it('keeps well-formed sessions (bounded), refuses what is not a snapshot', () => {
    expect(
      parseSnapshot(JSON.stringify({ replica: 'r', sessions: [session('a'), { sessionId: 1 }] })),
    ).toEqual({
      replica: 'r',
      sessions: [session('a')],
    });
    expect(parseSnapshot(null)).toBeUndefined();
    expect(parseSnapshot('{')).toBeUndefined();
    expect(parseSnapshot(JSON.stringify({ sessions: [] }))).toBeUndefined();
    const many = Array.from({ length: MAX_INDEX_SESSIONS + 10 }, (_, i) => session(String(i)));
    expect(parseSnapshot(JSON.stringify({ replica: 'r', sessions: many }))?.sessions).toHaveLength(
      MAX_INDEX_SESSIONS,
    );
  });
});
