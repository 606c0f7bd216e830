/**
 * Binary frames of the tunnel's data plane (server ⇄ agent). One frame travels as the single
 * binary argument of a Socket.IO event. Layout (big-endian): `type:u8 | streamId:u32 | body`.
 * When both ends agreed to it at resume (`splitData`), a DATA frame travels as two arguments —
 * its 14-byte header, then the payload — so the payload is never copied into a frame buffer.
 *
 * Byte offsets and consumed counters are absolute per stream and direction, so a lost or
 * repeated credit cannot corrupt accounting and both double as resume cursors.
 */

export const FRAME = {
  /** server → agent: open an exec stream; body = UTF-8 JSON of StreamOpen */
  open: 1,
  /** agent → server: the stream is attached; body = UTF-8 JSON */
  openOk: 2,
  /** bytes of one channel; body = channel:u8 | offset:u64 | payload */
  data: 3,
  /** receiver → sender: body = channel:u8 | consumed:u64 | window:u32 */
  credit: 4,
  /** server → agent: body = cols:u16 | rows:u16 */
  resize: 5,
  /** end of one channel (stdin EOF); body = channel:u8 | finalOffset:u64 */
  halfClose: 6,
  /** agent → server: the command ended; body = UTF-8 JSON of StreamExit */
  exit: 7,
  /** either side: the stream is gone; body = code:u16 | UTF-8 reason */
  reset: 8,
} as const;
export type FrameType = (typeof FRAME)[keyof typeof FRAME];

/** Kubernetes exec channel numbering. */
export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2 } as const;
export type Channel = (typeof CHANNEL)[keyof typeof CHANNEL];

export const RESET_CODE = {
  protocol: 1,
  creditViolation: 2,
  slowConsumer: 3,
  resumeFailed: 4,
  graceExpired: 5,
  targetGone: 6,
  openFailed: 7,
  closedByPeer: 8,
  limit: 9,
  shutdown: 10,
} as const;
export type ResetCode = (typeof RESET_CODE)[keyof typeof RESET_CODE];

export const FRAME_LIMITS = {
  /** largest payload of one DATA frame */
  maxData: 64 * 1024,
  /** largest encoded frame of any type (JSON bodies included) */
  maxFrame: 72 * 1024,
  maxReason: 512,
} as const;

export interface StreamOpen {
  sessionId: string;
  /** request id of this stream; the agent sends it as the apiserver's Audit-ID */
  rid?: string;
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  tty: boolean;
  stdin: boolean;
  cols?: number;
  rows?: number;
  /** initial credit the server grants for stdout/stderr */
  window: number;
  /** identity to exec as (impersonation); absent = the agent's own identity */
  impersonate?: { user: string; groups: string[]; extra?: Record<string, string[]> };
}

export interface StreamExit {
  exitCode: number | null;
  status: 'Success' | 'Failure';
  message?: string;
}

export type Frame =
  | { type: typeof FRAME.open; streamId: number; open: StreamOpen }
  | { type: typeof FRAME.openOk; streamId: number; info: Record<string, unknown> }
  | { type: typeof FRAME.data; streamId: number; channel: Channel; offset: number; payload: Uint8Array }
  | { type: typeof FRAME.credit; streamId: number; channel: Channel; consumed: number; window: number }
  | { type: typeof FRAME.resize; streamId: number; cols: number; rows: number }
  | { type: typeof FRAME.halfClose; streamId: number; channel: Channel; finalOffset: number }
  | { type: typeof FRAME.exit; streamId: number; exit: StreamExit }
  | { type: typeof FRAME.reset; streamId: number; code: ResetCode; reason: string };

/** Why a frame was refused; the tunnel logs it and resets or drops, never crashes. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

const HEADER = 5;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function isChannel(n: number): n is Channel {
  return n === 0 || n === 1 || n === 2;
}

function alloc(size: number): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(size);
  return { bytes, view: new DataView(bytes.buffer) };
}

function header(view: DataView, type: FrameType, streamId: number): void {
  view.setUint8(0, type);
  view.setUint32(1, streamId);
}

function setU64(view: DataView, at: number, n: number): void {
  view.setBigUint64(at, BigInt(n));
}

function getU64(view: DataView, at: number): number {
  const n = view.getBigUint64(at);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError('offset beyond 2^53');
  return Number(n);
}

function json(type: FrameType, streamId: number, value: unknown): Uint8Array {
  const body = encoder.encode(JSON.stringify(value));
  const { bytes, view } = alloc(HEADER + body.length);
  header(view, type, streamId);
  bytes.set(body, HEADER);
  if (bytes.length > FRAME_LIMITS.maxFrame)
    throw new FrameError(`frame of ${bytes.length} bytes exceeds ${FRAME_LIMITS.maxFrame}`);
  return bytes;
}

/** Encodes one frame. Throws FrameError for values outside the contract. */
export function encodeFrame(frame: Frame): Uint8Array {
  if (!Number.isInteger(frame.streamId) || frame.streamId < 0 || frame.streamId > 0xffffffff)
    throw new FrameError('bad stream id');
  switch (frame.type) {
    case FRAME.open:
      return json(frame.type, frame.streamId, frame.open);
    case FRAME.openOk:
      return json(frame.type, frame.streamId, frame.info);
    case FRAME.exit:
      return json(frame.type, frame.streamId, frame.exit);
    case FRAME.data: {
      if (frame.payload.length > FRAME_LIMITS.maxData)
        throw new FrameError(`data payload of ${frame.payload.length} bytes exceeds ${FRAME_LIMITS.maxData}`);
      const { bytes, view } = alloc(HEADER + 9 + frame.payload.length);
      header(view, frame.type, frame.streamId);
      view.setUint8(HEADER, frame.channel);
      setU64(view, HEADER + 1, frame.offset);
      bytes.set(frame.payload, HEADER + 9);
      return bytes;
    }
    case FRAME.credit: {
      const { bytes, view } = alloc(HEADER + 13);
      header(view, frame.type, frame.streamId);
      view.setUint8(HEADER, frame.channel);
      setU64(view, HEADER + 1, frame.consumed);
      view.setUint32(HEADER + 9, frame.window);
      return bytes;
    }
    case FRAME.resize: {
      const { bytes, view } = alloc(HEADER + 4);
      header(view, frame.type, frame.streamId);
      view.setUint16(HEADER, frame.cols);
      view.setUint16(HEADER + 2, frame.rows);
      return bytes;
    }
    case FRAME.halfClose: {
      const { bytes, view } = alloc(HEADER + 9);
      header(view, frame.type, frame.streamId);
      view.setUint8(HEADER, frame.channel);
      setU64(view, HEADER + 1, frame.finalOffset);
      return bytes;
    }
    case FRAME.reset: {
      const reason = encoder.encode(frame.reason.slice(0, FRAME_LIMITS.maxReason));
      const { bytes, view } = alloc(HEADER + 2 + reason.length);
      header(view, frame.type, frame.streamId);
      view.setUint16(HEADER, frame.code);
      bytes.set(reason, HEADER + 2);
      return bytes;
    }
  }
}

/** Length of a DATA frame without its payload: header, channel, offset. */
export const DATA_HEADER_BYTES = HEADER + 9;

type DataFrame = Extract<Frame, { type: typeof FRAME.data }>;

/** The header of a DATA frame alone, for sending the payload as a second argument (no copy). */
export function encodeDataHeader(frame: DataFrame): Uint8Array {
  if (!Number.isInteger(frame.streamId) || frame.streamId < 0 || frame.streamId > 0xffffffff)
    throw new FrameError('bad stream id');
  if (frame.payload.length > FRAME_LIMITS.maxData)
    throw new FrameError(`data payload of ${frame.payload.length} bytes exceeds ${FRAME_LIMITS.maxData}`);
  const { bytes, view } = alloc(DATA_HEADER_BYTES);
  header(view, frame.type, frame.streamId);
  view.setUint8(HEADER, frame.channel);
  setU64(view, HEADER + 1, frame.offset);
  return bytes;
}

function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(body));
  } catch {
    throw new FrameError('body is not UTF-8 JSON');
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function validOpen(v: unknown): StreamOpen {
  if (!isRecord(v)) throw new FrameError('open body is not an object');
  const str = (k: string): string => {
    const x = v[k];
    if (typeof x !== 'string' || x.length === 0 || x.length > 253)
      throw new FrameError(`open.${k} is not a name`);
    return x;
  };
  const cmd = v['command'];
  if (!Array.isArray(cmd) || cmd.length === 0 || cmd.length > 64 || cmd.some((c) => typeof c !== 'string'))
    throw new FrameError('open.command is not a list of strings');
  const window = v['window'];
  if (typeof window !== 'number' || !Number.isInteger(window) || window < 1024 || window > 16 * 1024 * 1024)
    throw new FrameError('open.window out of range');
  const size = (k: string): number | undefined => {
    const x = v[k];
    if (x === undefined) return undefined;
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 1000)
      throw new FrameError(`open.${k} out of range`);
    return x;
  };
  const open: StreamOpen = {
    sessionId: str('sessionId'),
    namespace: str('namespace'),
    pod: str('pod'),
    container: str('container'),
    command: cmd as string[],
    tty: v['tty'] === true,
    stdin: v['stdin'] === true,
    window,
  };
  const rid = v['rid'];
  if (rid !== undefined) {
    if (typeof rid !== 'string' || !/^[0-9A-Za-z-]{8,64}$/.test(rid))
      throw new FrameError('open.rid is malformed');
    open.rid = rid;
  }
  const cols = size('cols');
  const rows = size('rows');
  if (cols !== undefined) open.cols = cols;
  if (rows !== undefined) open.rows = rows;
  const imp = v['impersonate'];
  if (imp !== undefined) {
    if (
      !isRecord(imp) ||
      typeof imp['user'] !== 'string' ||
      !Array.isArray(imp['groups']) ||
      imp['groups'].some((g) => typeof g !== 'string')
    ) {
      throw new FrameError('open.impersonate is malformed');
    }
    const extra = imp['extra'];
    if (
      extra !== undefined &&
      (!isRecord(extra) ||
        Object.values(extra).some((vals) => !Array.isArray(vals) || vals.some((x) => typeof x !== 'string')))
    ) {
      throw new FrameError('open.impersonate.extra is malformed');
    }
    open.impersonate = {
      user: imp['user'],
      groups: imp['groups'] as string[],
      ...(extra !== undefined ? { extra: extra as Record<string, string[]> } : {}),
    };
  }
  return open;
}

/**
 * Decodes one frame, validating every field; throws FrameError for anything outside the contract.
 * `payload` is the separately sent payload of a DATA frame whose `input` is the header alone.
 */
export function decodeFrame(input: Uint8Array, payload?: Uint8Array): Frame {
  if (payload !== undefined) return decodeSplitData(input, payload);
  if (input.length < HEADER) throw new FrameError('frame shorter than its header');
  if (input.length > FRAME_LIMITS.maxFrame)
    throw new FrameError(`frame of ${input.length} bytes exceeds ${FRAME_LIMITS.maxFrame}`);
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const type = view.getUint8(0);
  const streamId = view.getUint32(1);
  const body = input.subarray(HEADER);
  const need = (n: number, exact = true): void => {
    if (exact ? body.length !== n : body.length < n)
      throw new FrameError(`frame type ${type} has a body of ${body.length} bytes`);
  };
  const channelAt = (at: number): Channel => {
    const c = view.getUint8(at);
    if (!isChannel(c)) throw new FrameError(`unknown channel ${c}`);
    return c;
  };
  switch (type) {
    case FRAME.open:
      return { type, streamId, open: validOpen(parseJson(body)) };
    case FRAME.openOk: {
      const info = parseJson(body);
      if (!isRecord(info)) throw new FrameError('openOk body is not an object');
      return { type, streamId, info };
    }
    case FRAME.exit: {
      const e = parseJson(body);
      if (
        !isRecord(e) ||
        (e['exitCode'] !== null && (typeof e['exitCode'] !== 'number' || !Number.isInteger(e['exitCode']))) ||
        (e['status'] !== 'Success' && e['status'] !== 'Failure')
      ) {
        throw new FrameError('exit body is malformed');
      }
      return {
        type,
        streamId,
        exit: {
          exitCode: e['exitCode'],
          status: e['status'],
          ...(typeof e['message'] === 'string' ? { message: e['message'] } : {}),
        },
      };
    }
    case FRAME.data: {
      need(9, false);
      if (body.length - 9 > FRAME_LIMITS.maxData) throw new FrameError('data payload too large');
      return {
        type,
        streamId,
        channel: channelAt(HEADER),
        offset: getU64(view, HEADER + 1),
        payload: input.subarray(HEADER + 9),
      };
    }
    case FRAME.credit:
      need(13);
      return {
        type,
        streamId,
        channel: channelAt(HEADER),
        consumed: getU64(view, HEADER + 1),
        window: view.getUint32(HEADER + 9),
      };
    case FRAME.resize: {
      need(4);
      const cols = view.getUint16(HEADER);
      const rows = view.getUint16(HEADER + 2);
      if (cols < 1 || cols > 1000 || rows < 1 || rows > 500) throw new FrameError('resize out of range');
      return { type, streamId, cols, rows };
    }
    case FRAME.halfClose:
      need(9);
      return { type, streamId, channel: channelAt(HEADER), finalOffset: getU64(view, HEADER + 1) };
    case FRAME.reset: {
      need(2, false);
      if (body.length - 2 > FRAME_LIMITS.maxReason * 4) throw new FrameError('reset reason too long');
      let reason: string;
      try {
        reason = decoder.decode(body.subarray(2));
      } catch {
        throw new FrameError('reset reason is not UTF-8');
      }
      return { type, streamId, code: view.getUint16(HEADER) as ResetCode, reason };
    }
    default:
      throw new FrameError(`unknown frame type ${type}`);
  }
}

function decodeSplitData(head: Uint8Array, payload: Uint8Array): Frame {
  if (head.length !== DATA_HEADER_BYTES || head[0] !== FRAME.data)
    throw new FrameError('only a DATA frame header may come with a separate payload');
  if (payload.length > FRAME_LIMITS.maxData) throw new FrameError('data payload too large');
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const channel = view.getUint8(HEADER);
  if (!isChannel(channel)) throw new FrameError(`unknown channel ${channel}`);
  return {
    type: FRAME.data,
    streamId: view.getUint32(1),
    channel,
    offset: getU64(view, HEADER + 1),
    payload,
  };
}
