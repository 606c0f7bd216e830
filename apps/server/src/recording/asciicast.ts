/**
 * asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header line, then one
 * JSON array per event, `[seconds, code, data]`. Codes written here: `o` output, `i` input,
 * `r` resize (`"COLSxROWS"`), `m` marker (`truncated`, `input not recorded (echo off)`).
 */

export const RECORDING_MODES = ['off', 'output', 'output+input'] as const;
export type RecordingMode = (typeof RECORDING_MODES)[number];

export type CastCode = 'o' | 'i' | 'r' | 'm';

export interface CastHeader {
  version: 2;
  width: number;
  height: number;
  /** unix seconds of the session's start */
  timestamp: number;
  title: string;
  env: { TERM: string; SHELL?: string };
}

/** The marker written once when the size cap is reached; nothing follows it but the end. */
export const TRUNCATED_MARKER = 'truncated';
/** Written in place of an input line whose keystrokes the terminal did not echo (a password). */
export const ECHO_OFF_MARKER = 'input not recorded (echo off)';

export function headerLine(h: CastHeader): string {
  return `${JSON.stringify(h)}\n`;
}

/** One event line; times are seconds with microsecond resolution, never negative. */
export function eventLine(seconds: number, code: CastCode, data: string): string {
  const t = Math.max(0, Math.round(seconds * 1e6) / 1e6);
  return `${JSON.stringify([t, code, data])}\n`;
}

export interface CastEvent {
  t: number;
  code: string;
  data: string;
}

/** Parses a cast (header and events); lines that are not events are skipped and counted. */
export function parseCast(text: string): {
  header: CastHeader | undefined;
  events: CastEvent[];
  bad: number;
} {
  const lines = text.split('\n');
  let header: CastHeader | undefined;
  const events: CastEvent[] = [];
  let bad = 0;
  for (const [i, line] of lines.entries()) {
    if (line === '') continue;
    try {
      const v = JSON.parse(line) as unknown;
      if (i === 0 && v !== null && typeof v === 'object' && !Array.isArray(v)) {
        header = v as CastHeader;
        continue;
      }
      if (
        Array.isArray(v) &&
        typeof v[0] === 'number' &&
        typeof v[1] === 'string' &&
        typeof v[2] === 'string'
      )
        events.push({ t: v[0], code: v[1], data: v[2] });
      else bad++;
    } catch {
      bad++;
    }
  }
  return { header, events, bad };
}
