/** The admin sessions page's pure parts: filters, labels, the end reason's rule, the poll schedule. */
import { END_REASON_FORBIDDEN, END_REASON_MAX_CHARS } from '@periscope/protocol';

import type { LiveSession } from '../types';

/** The URL parameters of the page's filters (exact matches; empty or absent: no filter). */
export const SESSION_FILTERS = ['subject', 'cluster', 'kind'] as const;
export type SessionFilter = Partial<Record<(typeof SESSION_FILTERS)[number], string>>;

export function filterOf(search: URLSearchParams): SessionFilter {
  const f: SessionFilter = {};
  for (const k of SESSION_FILTERS) {
    const v = search.get(k);
    if (v) f[k] = v;
  }
  return f;
}

export function matches(s: LiveSession, f: SessionFilter): boolean {
  return (
    (f.subject === undefined || s.subject === f.subject) &&
    (f.cluster === undefined || s.cluster === f.cluster) &&
    (f.kind === undefined || s.kind === f.kind)
  );
}

/** Sessions newest first, then by id (a stable order across refreshes). */
export function ordered(list: readonly LiveSession[]): LiveSession[] {
  return [...list].sort(
    (a, b) => b.startedAt.localeCompare(a.startedAt) || a.sessionId.localeCompare(b.sessionId),
  );
}

/** The distinct values of a field, sorted, plus the current filter value when no session has it. */
export function choices(
  list: readonly LiveSession[],
  pick: (s: LiveSession) => string,
  current?: string,
): string[] {
  const set = new Set(list.map(pick));
  if (current) set.add(current);
  return [...set].sort();
}

export const KIND_LABEL: Record<string, string> = { cluster_shell: 'cluster shell', pod_exec: 'pod exec' };
export const kindLabel = (kind: string): string => KIND_LABEL[kind] ?? kind;

/** What a pod-exec session is attached to (`ns/pod · container`); empty for a cluster shell. */
export function targetOf(s: LiveSession): string {
  if (s.pod === undefined) return '';
  return `${s.namespace ?? '?'}/${s.pod}${s.container !== undefined ? ` · ${s.container}` : ''}`;
}

export function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function seconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '—';
  if (s < 60) return `${Math.floor(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** Why `reason` would be refused, or undefined when it is fine. Required here: the page always asks why. */
export function reasonProblem(reason: string): string | undefined {
  const t = reason.trim();
  if (t === '') return 'say why you end the session; the person whose session it is will see it';
  if (t.length > END_REASON_MAX_CHARS)
    return `at most ${END_REASON_MAX_CHARS} characters (this is ${t.length})`;
  if (END_REASON_FORBIDDEN.test(t))
    return 'one line of text, without tabs, control or invisible formatting characters';
  return undefined;
}

export interface PollSchedule {
  /** delay between refreshes while they succeed */
  everyMs: number;
  /** longest delay after failures */
  maxMs: number;
}
export const SESSIONS_POLL: PollSchedule = { everyMs: 5_000, maxMs: 60_000 };

/** Delay before the next refresh after `failures` failed ones in a row: doubling from everyMs, capped. */
export function nextPollDelay(failures: number, p: PollSchedule = SESSIONS_POLL): number {
  if (failures <= 0) return p.everyMs;
  return Math.min(p.maxMs, p.everyMs * 2 ** Math.min(failures, 20));
}
