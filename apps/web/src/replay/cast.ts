/** Reading an asciicast v2 recording in the browser: events, output up to a time, search, the command timeline. */
import type { AuditEvent } from '../types';

export interface CastEvent {
  t: number;
  code: string;
  data: string;
}

export interface Cast {
  width: number;
  height: number;
  title: string;
  events: CastEvent[];
  duration: number;
  truncated: boolean;
}

export function parseCast(text: string): Cast {
  const lines = text.split('\n');
  let width = 80;
  let height = 24;
  let title = '';
  const events: CastEvent[] = [];
  for (const [i, line] of lines.entries()) {
    if (line === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    if (i === 0 && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const h = v as Record<string, unknown>;
      if (typeof h['width'] === 'number') width = h['width'];
      if (typeof h['height'] === 'number') height = h['height'];
      if (typeof h['title'] === 'string') title = h['title'];
      continue;
    }
    if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string' && typeof v[2] === 'string')
      events.push({ t: v[0], code: v[1], data: v[2] });
  }
  return {
    width,
    height,
    title,
    events,
    duration: events.length > 0 ? (events[events.length - 1]?.t ?? 0) : 0,
    truncated: events.some((e) => e.code === 'm' && e.data === 'truncated'),
  };
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

export function stripAnsi(s: string): string {
  return s.replace(ANSI, '');
}

/** `COLSxROWS` of a resize event. */
export function sizeOf(data: string): { cols: number; rows: number } | undefined {
  const m = /^(\d{1,4})x(\d{1,4})$/.exec(data);
  if (!m) return undefined;
  return { cols: Number(m[1]), rows: Number(m[2]) };
}

/** Times of the output events whose text has `word` (case-insensitive), at most `max`. */
export function searchOutput(cast: Cast, word: string, max = 200): number[] {
  const w = word.trim().toLowerCase();
  if (w === '') return [];
  const out: number[] = [];
  // A word may straddle two events: look at each event with the tail of the previous one.
  let prev = '';
  for (const e of cast.events) {
    if (e.code !== 'o') continue;
    const text = stripAnsi(e.data).toLowerCase();
    if ((prev + text).includes(w)) {
      out.push(e.t);
      if (out.length >= max) break;
      prev = '';
    } else prev = text.slice(-w.length);
  }
  return out;
}

export interface TimelineEntry {
  /** seconds from the recording's start */
  at: number;
  command: string;
  exitCode: number | null;
}

/** The kubectl/helm commands of the session's close record, placed on the recording's time line. */
export function timelineOf(events: AuditEvent[]): TimelineEntry[] {
  const open = events.find((e) => e.verb.endsWith('_open'));
  const close = events.find((e) => e.verb.endsWith('_close'));
  const list = close?.body['commands'];
  if (!open || !Array.isArray(list)) return [];
  const t0 = Date.parse(open.time);
  const out: TimelineEntry[] = [];
  for (const c of list) {
    if (typeof c !== 'object' || c === null) continue;
    const r = c as Record<string, unknown>;
    const at = typeof r['timestamp'] === 'string' ? Date.parse(r['timestamp']) : NaN;
    if (!Number.isFinite(at) || !Array.isArray(r['argv'])) continue;
    out.push({
      at: Math.max(0, (at - t0) / 1000),
      command: r['argv'].map(String).join(' '),
      exitCode: typeof r['exit_code'] === 'number' ? r['exit_code'] : null,
    });
  }
  return out.sort((a, b) => a.at - b.at);
}

/** m:ss.s of a time in seconds. */
export function clock(seconds: number): string {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, '0')}`;
}
