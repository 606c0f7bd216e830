/**
 * The browser terminal protocol shared by pod exec and cluster shell (raw WebSocket).
 * Binary frames carry stdin (browser → server) and merged stdout/stderr (server → browser);
 * text frames carry these JSON control messages.
 */

export const CLIENT_FRAME = { resize: 'resize', close: 'close' } as const;
export type ClientFrameType = (typeof CLIENT_FRAME)[keyof typeof CLIENT_FRAME];

export type ClientFrame = { type: 'resize'; cols: number; rows: number } | { type: 'close' };

export const SERVER_FRAME = {
  hello: 'hello',
  status: 'status',
  idleWarn: 'idle_warn',
  closed: 'closed',
  error: 'error',
} as const;
export type ServerFrameType = (typeof SERVER_FRAME)[keyof typeof SERVER_FRAME];

export const SESSION_KIND = { podExec: 'pod_exec', clusterShell: 'cluster_shell' } as const;
export type SessionKind = (typeof SESSION_KIND)[keyof typeof SESSION_KIND];

export type ServerFrame =
  | {
      type: 'hello';
      sessionId: string;
      kind: SessionKind;
      cluster: string;
      namespace?: string;
      pod?: string;
      container?: string;
      mode?: string;
    }
  | { type: 'status'; phase: string; message: string }
  | { type: 'idle_warn'; secondsRemaining: number }
  | { type: 'closed'; reason: string; exitCode?: number }
  | { type: 'error'; code: string; message: string; retryable: boolean };

/** Terminal sizes outside this range are refused as hostile or broken input. */
export const TERMINAL_LIMITS = { minCols: 1, maxCols: 1000, minRows: 1, maxRows: 500 } as const;

/** Parses a text frame from the browser; returns undefined for anything not in the contract. */
export function parseClientFrame(text: string): ClientFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  switch (v['type']) {
    case CLIENT_FRAME.close:
      return { type: 'close' };
    case CLIENT_FRAME.resize: {
      const { cols, rows } = v;
      const ok = (n: unknown, min: number, max: number): n is number =>
        typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
      if (
        !ok(cols, TERMINAL_LIMITS.minCols, TERMINAL_LIMITS.maxCols) ||
        !ok(rows, TERMINAL_LIMITS.minRows, TERMINAL_LIMITS.maxRows)
      )
        return undefined;
      return { type: 'resize', cols, rows };
    }
    default:
      return undefined;
  }
}
