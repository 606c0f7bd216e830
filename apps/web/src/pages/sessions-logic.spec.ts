import { END_REASON_MAX_CHARS } from '@periscope/protocol';
import { describe, expect, it } from 'vitest';

import type { LiveSession } from '../types';
import {
  bytes,
  choices,
  filterOf,
  matches,
  nextPollDelay,
  ordered,
  reasonProblem,
  SESSIONS_POLL,
  targetOf,
} from './sessions-logic';

const session = (over: Partial<LiveSession>): LiveSession => ({
  sessionId: 's1',
  kind: 'cluster_shell',
  cluster: 'lab',
  subject: 'alice',
  tier: 'admin',
  startedAt: '2026-01-01T10:00:00.000Z',
  state: 'attached',
  bytesIn: 0,
  bytesOut: 0,
  lastActivityAt: '2026-01-01T10:00:00.000Z',
  idleSeconds: 0,
  ...over,
});

describe('sessions page logic', () => {
  it('filters by person, cluster and kind from the URL (exact, combined)', () => {
    const f = filterOf(new URLSearchParams('subject=bob&kind=pod_exec&cluster='));
    expect(f).toEqual({ subject: 'bob', kind: 'pod_exec' });
    expect(matches(session({ subject: 'bob', kind: 'pod_exec' }), f)).toBe(true);
    expect(matches(session({ subject: 'bob' }), f)).toBe(false);
    expect(matches(session({ subject: 'bobby', kind: 'pod_exec' }), f)).toBe(false);
    expect(matches(session({}), {})).toBe(true);
  });

  it('orders newest first and offers each value once, keeping the current filter value', () => {
    const list = [
      session({ sessionId: 'a', startedAt: '2026-01-01T09:00:00.000Z', subject: 'bob' }),
      session({ sessionId: 'b', startedAt: '2026-01-01T11:00:00.000Z' }),
      session({ sessionId: 'c', startedAt: '2026-01-01T11:00:00.000Z', subject: 'bob' }),
    ];
    expect(ordered(list).map((s) => s.sessionId)).toEqual(['b', 'c', 'a']);
    expect(choices(list, (s) => s.subject)).toEqual(['alice', 'bob']);
    expect(choices(list, (s) => s.subject, 'zed')).toEqual(['alice', 'bob', 'zed']);
  });

  it('describes a pod-exec target and byte counts', () => {
    expect(targetOf(session({}))).toBe('');
    expect(targetOf(session({ namespace: 'web', pod: 'api-0', container: 'app' }))).toBe('web/api-0 · app');
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1536)).toBe('1.5 KiB');
    expect(bytes(300 * 1024 * 1024)).toBe('300 MiB');
  });

  it('asks for a reason of one bounded line, as the server does', () => {
    expect(reasonProblem('  ')).toMatch(/say why/);
    expect(reasonProblem('incident 42')).toBeUndefined();
    expect(reasonProblem('a\tb')).toMatch(/one line/);
    expect(reasonProblem('bidi \u202e')).toMatch(/one line/);
    expect(reasonProblem('x'.repeat(END_REASON_MAX_CHARS + 1))).toMatch(/at most 500/);
  });

  it('polls every 5 s while it works and backs off, doubling up to a minute, while it fails', () => {
    expect([0, 1, 2, 3, 4, 5, 50].map((n) => nextPollDelay(n))).toEqual([
      5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000,
    ]);
    expect(nextPollDelay(0, SESSIONS_POLL)).toBe(SESSIONS_POLL.everyMs);
  });
});
