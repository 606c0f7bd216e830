import {
  ArrayMaxSize,
  Equals,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Max,
  MaxLength,
  Min,
} from 'class-validator';

import { checkDto, type DtoClass, type UnknownFields } from './validation/validate';

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
  /** the session's maximum length ends it in `secondsRemaining`, whatever the activity */
  maxWarn: 'max_warn',
  /** who is watching the session live (read-only); an empty list: nobody any more */
  watch: 'watch',
  closed: 'closed',
  error: 'error',
} as const;
export type ServerFrameType = (typeof SERVER_FRAME)[keyof typeof SERVER_FRAME];

export const SESSION_KIND = { podExec: 'pod_exec', clusterShell: 'cluster_shell' } as const;
export type SessionKind = (typeof SESSION_KIND)[keyof typeof SESSION_KIND];

export interface HelloFrame {
  type: 'hello';
  sessionId: string;
  kind: SessionKind;
  cluster: string;
  namespace?: string;
  pod?: string;
  container?: string;
  mode?: string;
  /** the socket continues a session after a disconnect (the replay of missed output follows) */
  resumed?: boolean;
}

export type ServerFrame =
  | HelloFrame
  | { type: 'status'; phase: string; message: string }
  | { type: 'idle_warn'; secondsRemaining: number }
  | { type: 'max_warn'; secondsRemaining: number }
  | { type: 'watch'; watchers: string[] }
  | {
      type: 'closed';
      reason: string;
      exitCode?: number;
      /** who ended the session on request (the owner, or an admin) */
      endedBy?: string;
      /** the free-text reason they gave (one line, at most 500 characters, no control characters) */
      endReason?: string;
    }
  | { type: 'error'; code: string; message: string; retryable: boolean };

/**
 * WebSocket close codes of a terminal socket. The server sends `normal`, `goingAway`,
 * `policyViolation`, `superseded` and `sessionGone`; the `ws` library itself closes with
 * `invalidPayload` and `tooBig`; the browser closes with `normal` (planned end) and `clientDrop`
 * (the "simulate a network drop" test hook, treated as unplanned).
 */
export const TERMINAL_CLOSE = {
  /** planned end: the session closed (a `closed` frame came first), or the browser's close */
  normal: 1000,
  /** the server dropped the socket but keeps the session for a resume (heartbeat lost, bad frames) */
  goingAway: 1001,
  /** a text frame that is not UTF-8 (closed by the `ws` library) */
  invalidPayload: 1007,
  /** the socket broke the rules (stdin rate limit); an error frame came first */
  policyViolation: 1008,
  /** a frame over TERMINAL_FRAME_MAX_BYTES (closed by the `ws` library) */
  tooBig: 1009,
  /** the session is moving to this replica (re-homing): resume again in a moment */
  tryAgainLater: 1013,
  /** the browser's simulated network drop; the server treats it as unplanned */
  clientDrop: 4000,
  /** a newer socket resumed this session */
  superseded: 4409,
  /** the session cannot be resumed (ended, not yours, or output no longer kept); E_SESSION_GONE came first */
  sessionGone: 4410,
} as const;
export type TerminalCloseCode = (typeof TERMINAL_CLOSE)[keyof typeof TERMINAL_CLOSE];

/**
 * Binary frames larger than this are refused by the server (the socket is closed with 1009). A
 * client sends larger input (a paste) as several frames of STDIN_FRAME_BYTES; the server then
 * takes them as the container reads, pausing the socket in between.
 */
export const TERMINAL_FRAME_MAX_BYTES = 64 * 1024;
export const STDIN_FRAME_BYTES = 16 * 1024;

/** Terminal sizes outside this range are refused as hostile or broken input. */
export const TERMINAL_LIMITS = { minCols: 1, maxCols: 1000, minRows: 1, maxRows: 500 } as const;

// ---- validation of text frames (class-validator DTOs; no `design:type` metadata is needed, so
// the browser build, whose esbuild emits none, runs the same rules) ----

const integerIn = (name: string, min: number, max: number): string =>
  `${name} must be a whole number from ${min} to ${max}`;

class ResizeFrameDto {
  @Equals(CLIENT_FRAME.resize)
  type!: 'resize';

  @IsInt({ message: integerIn('cols', TERMINAL_LIMITS.minCols, TERMINAL_LIMITS.maxCols) })
  @Min(TERMINAL_LIMITS.minCols, {
    message: integerIn('cols', TERMINAL_LIMITS.minCols, TERMINAL_LIMITS.maxCols),
  })
  @Max(TERMINAL_LIMITS.maxCols, {
    message: integerIn('cols', TERMINAL_LIMITS.minCols, TERMINAL_LIMITS.maxCols),
  })
  cols!: number;

  @IsInt({ message: integerIn('rows', TERMINAL_LIMITS.minRows, TERMINAL_LIMITS.maxRows) })
  @Min(TERMINAL_LIMITS.minRows, {
    message: integerIn('rows', TERMINAL_LIMITS.minRows, TERMINAL_LIMITS.maxRows),
  })
  @Max(TERMINAL_LIMITS.maxRows, {
    message: integerIn('rows', TERMINAL_LIMITS.minRows, TERMINAL_LIMITS.maxRows),
  })
  rows!: number;
}

class CloseFrameDto {
  @Equals(CLIENT_FRAME.close)
  type!: 'close';
}

class KeepaliveFrameDto {
  @Equals(CLIENT_FRAME.keepalive)
  type!: 'keepalive';
}

const CLIENT_FRAME_DTO: { [K in ClientFrameType]: DtoClass<Extract<ClientFrame, { type: K }>> } = {
  resize: ResizeFrameDto,
  close: CloseFrameDto,
  keepalive: KeepaliveFrameDto,
};

/** Bounds of server frame fields (the browser ignores a frame beyond them). */
const MAX_NAME = 253;
const MAX_TEXT = TERMINAL_FRAME_MAX_BYTES;

class HelloFrameDto {
  @Equals(SERVER_FRAME.hello)
  type!: 'hello';

  @IsString()
  @MaxLength(64)
  sessionId!: string;

  @IsIn(Object.values(SESSION_KIND))
  kind!: SessionKind;

  @IsString()
  @MaxLength(MAX_NAME)
  cluster!: string;

  @IsOptional()
  @IsString()
  @MaxLength(MAX_NAME)
  namespace?: string;

  @IsOptional()
  @IsString()
  @MaxLength(MAX_NAME)
  pod?: string;

  @IsOptional()
  @IsString()
  @MaxLength(MAX_NAME)
  container?: string;

  @IsOptional()
  @IsString()
  @MaxLength(64)
  mode?: string;

  @IsOptional()
  @IsBoolean()
  resumed?: boolean;
}

class StatusFrameDto {
  @Equals(SERVER_FRAME.status)
  type!: 'status';

  @IsString()
  @MaxLength(64)
  phase!: string;

  @IsString()
  @MaxLength(MAX_TEXT)
  message!: string;
}

class IdleWarnFrameDto {
  @Equals(SERVER_FRAME.idleWarn)
  type!: 'idle_warn';

  @IsInt()
  @Min(0)
  @Max(86_400)
  secondsRemaining!: number;
}

class MaxWarnFrameDto {
  @Equals(SERVER_FRAME.maxWarn)
  type!: 'max_warn';

  /** up to the longest session (PERISCOPE_CLUSTER_SHELL_MAX_SESSION_SECONDS, 7 days) */
  @IsInt()
  @Min(0)
  @Max(604_800)
  secondsRemaining!: number;
}

class WatchFrameDto {
  @Equals(SERVER_FRAME.watch)
  type!: 'watch';

  @IsArray()
  @ArrayMaxSize(64)
  @IsString({ each: true })
  @MaxLength(MAX_NAME, { each: true })
  watchers!: string[];
}

class ClosedFrameDto {
  @Equals(SERVER_FRAME.closed)
  type!: 'closed';

  @IsString()
  @MaxLength(1024)
  reason!: string;

  @IsOptional()
  @IsInt()
  @Min(-2_147_483_648)
  @Max(2_147_483_647)
  exitCode?: number;

  @IsOptional()
  @IsString()
  @MaxLength(1024)
  endedBy?: string;

  @IsOptional()
  @IsString()
  @MaxLength(1024)
  endReason?: string;
}

class ErrorFrameDto {
  @Equals(SERVER_FRAME.error)
  type!: 'error';

  @IsString()
  @MaxLength(64)
  code!: string;

  @IsString()
  @MaxLength(MAX_TEXT)
  message!: string;

  /** absent means false */
  @IsOptional()
  @IsBoolean()
  retryable?: boolean;
}

/** A server frame as sent: `retryable` may be absent (it then means false). */
type WireServerFrame =
  | Exclude<ServerFrame, { type: 'error' }>
  | { type: 'error'; code: string; message: string; retryable?: boolean };

const SERVER_FRAME_DTO: { [K in ServerFrameType]: DtoClass<Extract<WireServerFrame, { type: K }>> } = {
  hello: HelloFrameDto,
  status: StatusFrameDto,
  idle_warn: IdleWarnFrameDto,
  max_warn: MaxWarnFrameDto,
  watch: WatchFrameDto,
  closed: ClosedFrameDto,
  error: ErrorFrameDto,
};

/** JSON text → the DTO its `type` names, checked; undefined for anything else. */
function parseFrame<F extends { type: string }>(
  text: string,
  classes: Readonly<Record<F['type'], DtoClass<F>>>,
  unknownFields: UnknownFields,
): F | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !Object.hasOwn(classes, type)) return undefined;
  const r = checkDto(classes[type as F['type']], value, unknownFields);
  if (!r.ok) return undefined;
  // A plain object of the fields present (not a class instance with absent optional keys).
  return Object.fromEntries(Object.entries(r.value as object).filter(([, v]) => v !== undefined)) as F;
}

/**
 * Parses a text frame from the browser; returns undefined for anything not in the contract
 * (unknown type, unknown field, size out of TERMINAL_LIMITS, not JSON).
 */
export function parseClientFrame(text: string): ClientFrame | undefined {
  return parseFrame<ClientFrame>(text, CLIENT_FRAME_DTO, 'strict');
}

/**
 * Parses a text frame from the server (the browser's side). Fields a newer server may add are
 * dropped rather than refused (a page cached across an upgrade keeps working); a missing
 * `retryable` means false; anything else outside the contract answers undefined.
 */
export function parseServerFrame(text: string): ServerFrame | undefined {
  const f = parseFrame<WireServerFrame>(text, SERVER_FRAME_DTO, 'lenient');
  if (f?.type === SERVER_FRAME.error) return { ...f, retryable: f.retryable === true };
  return f;
}
