/**
 * The browser terminal protocol shared by pod exec and cluster shell (raw WebSocket).
 * Binary frames carry stdin (browser → server) and merged stdout/stderr (server → browser);
 * text frames carry these JSON control messages.
 */

/**
 * `keepalive`: the operator is still there (the "keep alive" button). Activity, for the idle cut,
 * is stdin or stdout bytes and this frame; a resize is not activity (a tab that fits itself to
 * its window would otherwise keep a forgotten session alive).
 */
export const CLIENT_FRAME = { resize: 'resize', close: 'close', keepalive: 'keepalive' } as const;
export type ClientFrameType = (typeof CLIENT_FRAME)[keyof typeof CLIENT_FRAME];

export type ClientFrame =
  { type: 'resize'; cols: number; rows: number } | { type: 'close' } | { type: 'keepalive' };

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

/**
 * Binary frames larger than this are refused by the server (the socket is closed with 1009). A
 * client sends larger input (a paste) as several frames of STDIN_FRAME_BYTES; the server then
 * takes them as the container reads, pausing the socket in between.
 */
export const TERMINAL_FRAME_MAX_BYTES = 64 * 1024;
export const STDIN_FRAME_BYTES = 16 * 1024;

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
    case CLIENT_FRAME.keepalive:
      return { type: 'keepalive' };
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
