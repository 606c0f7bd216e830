/**
 * The browser side of the terminal protocol (docs/api.md "Terminal sessions"), framework-free:
 * opens the socket, parses control frames, counts the output bytes handed to the terminal, and
 * resumes an unplanned disconnect at `/api/sessions/{id}/attach?received=N` with exponential
 * backoff and jitter. It knows nothing of React or xterm; a fake socket drives it in unit tests.
 */
import {
  CLIENT_ERROR,
  CLIENT_FRAME,
  parseServerFrame,
  STDIN_FRAME_BYTES,
  TERMINAL_CLOSE,
  TERMINAL_ERROR,
  TERMINAL_LIMITS,
  type ClientFrame,
  type HelloFrame,
} from '@periscope/protocol';

/** The part of the DOM WebSocket the client uses; tests inject a fake. */
export interface SocketLike {
  binaryType: BinaryType;
  readonly readyState: number;
  onopen: ((ev: Event) => unknown) | null;
  onmessage: ((ev: MessageEvent) => unknown) | null;
  onclose: ((ev: CloseEvent) => unknown) | null;
  onerror: ((ev: Event) => unknown) | null;
  send(data: string | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = (url: string) => SocketLike;

const OPEN = 1;

export interface BackoffOptions {
  /** first delay (ms) */
  baseMs: number;
  /** largest delay (ms) */
  maxMs: number;
  /** attempts before giving up */
  maxAttempts: number;
}
export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 10_000, maxAttempts: 10 };

/**
 * Delay before reconnect attempt `attempt` (1-based): exponential, capped, with "equal jitter"
 * (half fixed, half random) so a fleet of browsers that lost the same proxy does not come back at
 * once, yet no attempt fires immediately after the previous one.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number): number {
  const exp = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (random() * exp) / 2);
}

export type SessionState =
  | { phase: 'connecting' }
  | { phase: 'open'; since: number }
  | { phase: 'reconnecting'; attempt: number; maxAttempts: number; delayMs: number }
  | {
      phase: 'closed';
      reason: string;
      exitCode?: number;
      /** who ended the session on request, and the reason they gave */
      endedBy?: string;
      endReason?: string;
    }
  | { phase: 'error'; code: string; message: string }
  | { phase: 'gone'; message: string };

export interface SessionEvents {
  /** Output bytes, in order, each byte exactly once (also across resumes). */
  onOutput?: (bytes: Uint8Array) => void;
  onState?: (state: SessionState) => void;
  onHello?: (hello: HelloFrame) => void;
  onStatus?: (phase: string, message: string) => void;
  onIdleWarn?: (secondsRemaining: number) => void;
  /** The session's maximum length ends it in `secondsRemaining`, whatever is typed. */
  onMaxWarn?: (secondsRemaining: number) => void;
  /** Who watches the session live (read-only); empty when nobody does any more. */
  onWatch?: (watchers: string[]) => void;
  /** Activity seen (stdin sent or output received): the idle warning is over. */
  onActivity?: () => void;
  /** A retryable error frame (the session goes on, or a closed frame follows). */
  onNotice?: (code: string, message: string) => void;
}

export interface SessionClientOptions {
  /** Server session id from the POST answer (resume uses it until hello confirms it). */
  sessionId: string;
  /** Absolute ws(s):// URL of the first socket (the POST answer's socketPath with the ticket). */
  socketUrl: string;
  /** ws(s):// origin for resume URLs, e.g. `ws://localhost:8080`. */
  wsOrigin: string;
  createSocket?: SocketFactory;
  backoff?: Partial<BackoffOptions>;
  random?: () => number;
  now?: () => number;
  setTimer?: (cb: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  events?: SessionEvents;
}

/** `ws://host` or `wss://host` of an http(s) page origin. */
export function wsOriginOf(loc: { protocol: string; host: string }): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}`;
}

/** The resume URL for a session that already holds `received` output bytes. */
export function attachUrl(wsOrigin: string, sessionId: string, received: number): string {
  return `${wsOrigin}/api/sessions/${encodeURIComponent(sessionId)}/attach?received=${received}`;
}

const clampSize = (n: number, min: number, max: number): number =>
  Math.min(max, Math.max(min, Math.floor(n)));

/** One terminal session: the first socket, then as many resumed sockets as the network needs. */
export class SessionClient {
  private socket: SocketLike | undefined;
  private readonly backoff: BackoffOptions;
  private readonly createSocket: SocketFactory;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly setTimer: (cb: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private readonly events: SessionEvents;
  private timer: unknown;
  private received = 0;
  private sent = 0;
  private attempt = 0;
  /** a hello arrived on the current socket */
  private helloSeen = false;
  /** a hello arrived on any socket: the session exists on the server and may be resumed */
  private everOpened = false;
  /** the session reached an end state; nothing reconnects any more */
  private finished = false;
  private size: { cols: number; rows: number } | undefined;
  private current: SessionState = { phase: 'connecting' };
  sessionId: string;
  hello: HelloFrame | undefined;

  constructor(private readonly opts: SessionClientOptions) {
    this.sessionId = opts.sessionId;
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.createSocket = opts.createSocket ?? ((url) => new WebSocket(url));
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.setTimer = opts.setTimer ?? ((cb, ms) => setTimeout(cb, ms));
    this.clearTimer =
      opts.clearTimer ??
      ((h) => {
        clearTimeout(h as ReturnType<typeof setTimeout>);
      });
    this.events = opts.events ?? {};
  }

  /** Output bytes handed to the terminal so far (the resume offset). */
  get receivedBytes(): number {
    return this.received;
  }

  /** Stdin bytes sent so far. */
  get sentBytes(): number {
    return this.sent;
  }

  get state(): SessionState {
    return this.current;
  }

  /** Opens the first socket. */
  connect(): void {
    this.open(this.opts.socketUrl);
  }

  /**
   * Keystrokes or a paste. Dropped while no socket is open (the terminal shows the state). A
   * paste goes out in frames of at most STDIN_FRAME_BYTES (the server refuses frames over 64 KiB);
   * what the server cannot take yet waits in the browser's socket.
   */
  sendInput(data: string | Uint8Array): boolean {
    const s = this.socket;
    if (!s || s.readyState !== OPEN || !this.helloSeen) return false;
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    if (bytes.length === 0) return false;
    // Fresh ArrayBuffers: never send a view into a larger shared buffer.
    for (let at = 0; at < bytes.length; at += STDIN_FRAME_BYTES)
      s.send(bytes.slice(at, at + STDIN_FRAME_BYTES).buffer);
    this.sent += bytes.length;
    this.events.onActivity?.();
    return true;
  }

  /** The terminal's size; sent now when open, and again on every (re)connect. */
  resize(cols: number, rows: number): void {
    const c = clampSize(cols, TERMINAL_LIMITS.minCols, TERMINAL_LIMITS.maxCols);
    const r = clampSize(rows, TERMINAL_LIMITS.minRows, TERMINAL_LIMITS.maxRows);
    this.size = { cols: c, rows: r };
    this.sendResize();
  }

  /**
   * Tells the server the operator is still there: a `keepalive` frame, which the server counts as
   * activity for the idle cut (as it does stdin and output, and not a resize).
   */
  keepAlive(): boolean {
    const ok = this.sendFrame({ type: CLIENT_FRAME.keepalive });
    if (ok) this.events.onActivity?.();
    return ok;
  }

  /** Planned end: the close frame, then the socket closes; never reconnects. */
  close(): void {
    this.clearPending();
    const s = this.socket;
    const wasFinished = this.finished;
    this.finished = true;
    if (s && s.readyState === OPEN) {
      this.sendFrame({ type: CLIENT_FRAME.close });
      s.close(TERMINAL_CLOSE.normal, 'client close');
    } else if (s) {
      this.detach(s);
      s.close();
    }
    if (!wasFinished) this.setState({ phase: 'closed', reason: 'closed by you' });
  }

  /** Reconnects now instead of waiting for the backoff timer. */
  retryNow(): void {
    if (this.finished || this.current.phase !== 'reconnecting') return;
    this.clearPending();
    this.reconnect();
  }

  /** Stops reconnecting; the server keeps the session until its grace period ends. */
  giveUp(): void {
    if (this.finished) return;
    this.clearPending();
    this.finished = true;
    if (this.socket) {
      this.detach(this.socket);
      this.socket.close();
    }
    this.setState({
      phase: 'error',
      code: CLIENT_ERROR.reconnectFailed,
      message: 'you stopped reconnecting; the session ends on the server when its resume grace runs out',
    });
  }

  /**
   * Test hook: drop the current socket as a network failure would (the browser can only close a
   * socket with a close frame; what matters is that no `close` control frame precedes it, so the
   * server treats it as unplanned and keeps the session for resume).
   */
  dropConnection(): boolean {
    const s = this.socket;
    if (!s || this.finished) return false;
    s.close(TERMINAL_CLOSE.clientDrop, 'simulated network drop');
    return true;
  }

  private setState(state: SessionState): void {
    this.current = state;
    this.events.onState?.(state);
  }

  private sendFrame(frame: ClientFrame): boolean {
    const s = this.socket;
    if (!s || s.readyState !== OPEN) return false;
    s.send(JSON.stringify(frame));
    return true;
  }

  private sendResize(): boolean {
    if (!this.size || !this.helloSeen) return false;
    return this.sendFrame({ type: CLIENT_FRAME.resize, cols: this.size.cols, rows: this.size.rows });
  }

  private clearPending(): void {
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
  }

  private detach(s: SocketLike): void {
    s.onopen = null;
    s.onmessage = null;
    s.onclose = null;
    s.onerror = null;
  }

  private open(url: string): void {
    this.helloSeen = false;
    let socket: SocketLike;
    try {
      socket = this.createSocket(url);
    } catch (err) {
      this.onSocketGone(socketFailed(err));
      return;
    }
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onmessage = (ev) => {
      if (this.socket !== socket) return;
      this.onMessage(ev.data);
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.detach(socket);
      this.socket = undefined;
      this.onSocketGone({ code: ev.code, reason: ev.reason });
    };
    // onerror is always followed by onclose; nothing to do here.
    socket.onerror = null;
  }

  private onMessage(data: unknown): void {
    if (this.finished && this.current.phase !== 'closed') return;
    if (typeof data === 'string') {
      this.onControl(data);
      return;
    }
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else return;
    if (bytes.length === 0) return;
    this.received += bytes.length;
    this.events.onActivity?.();
    this.events.onOutput?.(bytes);
  }

  private onControl(text: string): void {
    const f = parseServerFrame(text);
    if (!f) return;
    switch (f.type) {
      case 'hello':
        this.helloSeen = true;
        this.everOpened = true;
        this.attempt = 0;
        this.sessionId = f.sessionId;
        this.hello = f;
        this.events.onHello?.(f);
        if (!this.finished) this.setState({ phase: 'open', since: this.now() });
        this.sendResize();
        return;
      case 'status':
        this.events.onStatus?.(f.phase, f.message);
        return;
      case 'idle_warn':
        this.events.onIdleWarn?.(f.secondsRemaining);
        return;
      case 'max_warn':
        this.events.onMaxWarn?.(f.secondsRemaining);
        return;
      case 'watch':
        this.events.onWatch?.(f.watchers);
        return;
      case 'closed':
        // The first closed frame wins; the session is over whatever follows.
        if (this.finished) return;
        this.finished = true;
        this.clearPending();
        this.setState({
          phase: 'closed',
          reason: f.reason,
          ...(f.exitCode !== undefined ? { exitCode: f.exitCode } : {}),
          ...(f.endedBy !== undefined ? { endedBy: f.endedBy } : {}),
          ...(f.endReason !== undefined ? { endReason: f.endReason } : {}),
        });
        return;
      case 'error':
        if (f.code === TERMINAL_ERROR.sessionGone) {
          this.finish({ phase: 'gone', message: f.message || 'the session has ended' });
          return;
        }
        if (f.retryable) {
          this.events.onNotice?.(f.code, f.message);
          return;
        }
        this.finish({ phase: 'error', code: f.code, message: f.message });
        return;
    }
  }

  private finish(state: SessionState): void {
    if (this.finished) return;
    this.finished = true;
    this.clearPending();
    this.setState(state);
  }

  private onSocketGone(close: { code: number; reason: string }): void {
    if (this.finished) return;
    if (close.code === TERMINAL_CLOSE.sessionGone) {
      this.finish({ phase: 'gone', message: close.reason || 'the session has ended' });
      return;
    }
    if (!this.everOpened) {
      // The first socket never got a hello: the ticket is spent, nothing exists to resume.
      this.finish({
        phase: 'error',
        code: CLIENT_ERROR.transport,
        message: `the terminal socket closed before the session started (code ${close.code}${close.reason ? `: ${close.reason}` : ''})`,
      });
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    this.attempt += 1;
    if (this.attempt > this.backoff.maxAttempts) {
      this.finish({
        phase: 'error',
        code: CLIENT_ERROR.reconnectFailed,
        message: `could not reconnect after ${this.backoff.maxAttempts} attempts; the session may have ended`,
      });
      return;
    }
    const delayMs = backoffDelay(this.attempt, this.backoff, this.random);
    this.setState({
      phase: 'reconnecting',
      attempt: this.attempt,
      maxAttempts: this.backoff.maxAttempts,
      delayMs,
    });
    this.timer = this.setTimer(() => {
      this.timer = undefined;
      this.reconnect();
    }, delayMs);
  }

  private reconnect(): void {
    if (this.finished) return;
    this.open(attachUrl(this.opts.wsOrigin, this.sessionId, this.received));
  }
}

function socketFailed(err: unknown): { code: number; reason: string } {
  return { code: 1006, reason: err instanceof Error ? err.message : String(err) };
}
