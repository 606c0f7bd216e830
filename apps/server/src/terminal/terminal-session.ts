import type { ExecChannel, ExecChannelHandlers, ExecResult } from '@periscope/cluster-ops';
import {
  TERMINAL_CLOSE,
  TERMINAL_ERROR,
  hopTrace,
  parseClientFrame,
  traceRawSocket,
  type ServerFrame,
  type SessionKind,
} from '@periscope/protocol';
import type { Logger } from 'pino';
import type WebSocket from 'ws';

import { ReplayBuffer } from './replay-buffer';
import type { SessionTap } from './session-tap';

/** Who and what a session is; shown by the sessions API and sent in `hello`. */
export interface SessionInfo {
  sessionId: string;
  kind: SessionKind;
  subject: string;
  tier: string | null;
  cluster: string;
  namespace?: string;
  pod?: string;
  container?: string;
  mode?: string;
  startedAt: Date;
  /**
   * The sign-in the session is shown in (AuthService.loginId: opened, or last resumed, with it);
   * signing out of it ends the session.
   */
  loginId?: string;
  /**
   * What a replica taking the session over needs beyond these fields, kept in Redis (re-homing,
   * rehome-store.ts): never a secret (pod exec: its open record's fields, the command redacted).
   */
  rehome?: Record<string, unknown>;
}

export interface SessionLimits {
  idleSeconds: number;
  idleWarnSeconds: number;
  heartbeatSeconds: number;
  maxSessionSeconds: number;
  /** lead time of the `max_warn` frame before maxSessionSeconds ends the session; 0 = none */
  maxWarnSeconds: number;
  /** how long an unplanned disconnect may last before the session ends (0: no resume) */
  graceSeconds: number;
  /** replay buffer size; output pauses while a detached session has half of it unread */
  bufferBytes: number;
}

/** Who ended a session on request (`DELETE /api/sessions/{id}`), and the reason they gave. */
export interface EndedBy {
  /** the subject who asked (the owner, or an admin) */
  by: string;
  /** their free text, already cleaned (end-reason.ts) */
  reason?: string;
}

/** How a session ended, as the driver and the audit see it. */
export interface SessionEnd {
  reason: string;
  exitCode: number | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** set when a person ended the session on request */
  endedBy?: EndedBy;
  /** the close record's fields from the session's taps (recording id, size, SHA-256) */
  tapFields?: Record<string, unknown>;
}

/**
 * The close record's fields for a session ended on request: `ended_by` and, when given,
 * `end_reason` (the free text; `close_reason` stays the code, e.g. `ended_by_admin`).
 */
export function endedByFields(end: SessionEnd): Record<string, string> {
  if (!end.endedBy) return {};
  return {
    ended_by: end.endedBy.by,
    ...(end.endedBy.reason !== undefined ? { end_reason: end.endedBy.reason } : {}),
  };
}

/** An error the browser is told about, before `closed`. */
export interface SessionError {
  code: string;
  message: string;
  retryable: boolean;
}

/**
 * The part that differs between cluster shell and pod exec: how the exec starts (provisioning,
 * impersonation), how its end is read (exit code, no-shell heuristics) and what teardown and
 * audit follow.
 */
export interface SessionDriver {
  start(io: {
    status: (phase: string, message: string) => void;
    size: () => { cols: number; rows: number };
    handlers: ExecChannelHandlers;
  }): Promise<ExecChannel>;
  /** maps the exec's result to the close reason, exit code and optional error frame */
  classifyExit(
    r: ExecResult,
    stats: { bytesIn: number; bytesOut: number; runMs: number },
  ): { reason: string; exitCode: number | null; error?: SessionError };
  /** maps a start failure to the error frame and close reason */
  classifyStartError(err: unknown): { reason: string; error: SessionError };
  /** teardown and the audit close; must not throw */
  finish(end: SessionEnd): Promise<void>;
}

/**
 * An exec that ended without an exit status lost its connection (apiserver gone, kubelet
 * restarted, stream reset): that is an error to report, not an exit.
 */
export function connectionLost(
  r: ExecResult,
): { reason: string; exitCode: null; error: SessionError } | undefined {
  if (r.exitCode !== null) return undefined;
  return {
    reason: 'connection_lost',
    exitCode: null,
    error: {
      code: TERMINAL_ERROR.stream,
      message: `the connection to the container was lost (${r.message ?? 'no exit status'}); open a new session`,
      retryable: true,
    },
  };
}

export type SessionState = 'starting' | 'attached' | 'detached' | 'ended';

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
const EARLY_STDIN_MAX = 64 * 1024;
/**
 * Stdin still arriving after the browser socket was paused (frames the socket had already read)
 * is taken, up to this much; a client that gets past a paused socket ends with E_BACKPRESSURE.
 */
export const STDIN_OVERFLOW_MAX = 512 * 1024;

/** A terminal size change reaches the exec at most this often (the latest size wins). */
export const RESIZE_INTERVAL_MS = 50;
/** Malformed control frames answered per socket; past this the socket is dropped. */
export const MAX_BAD_FRAMES = 64;

/**
 * One terminal session, independent of the socket it is shown on: it survives an unplanned
 * disconnect for the grace period (output kept in a bounded replay buffer, the exec paused
 * while that buffer has no room, so nothing is lost), and a new socket can attach and continue
 * from the byte count the browser has. Heartbeat, idle warning and cut, maximum length, and one
 * teardown path whatever ends it.
 */
export class TerminalSession {
  private ws: WebSocket | undefined;
  private exec: ExecChannel | undefined;
  private state_: SessionState = 'starting';
  private started = Date.now();
  private execStarted = 0;
  private lastActivity = Date.now();
  private bytesIn = 0;
  private cols = 80;
  private rows = 24;
  private warned = false;
  /** epoch ms when maxSessionSeconds ends the session (set at start) */
  private maxEndsAt = 0;
  /** the max-length warning is due (sent again to a resumed socket) */
  private maxWarned = false;
  private alive = true;
  private paused = false;
  private detachedAt = 0;
  private lastStatus: ServerFrame | undefined;
  private lastWatch: ServerFrame | undefined;
  /** keystrokes typed while the exec was still starting (bounded), sent once it is up */
  private early: Buffer[] = [];
  private earlyBytes = 0;
  /** the browser socket is paused: the exec cannot take stdin (or the early buffer is full) */
  private inputHeld = false;
  /** stdin taken since the socket was paused */
  private heldOverflow = 0;
  private readonly replay: ReplayBuffer;
  private readonly timers: NodeJS.Timeout[] = [];
  private heartbeat: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private resizeTimer: NodeJS.Timeout | undefined;
  private lastResizeAt = 0;
  private sentCols = 0;
  private sentRows = 0;
  /** malformed control frames on the current socket */
  private badFrames = 0;
  private graceTimer: NodeJS.Timeout | undefined;
  private ending: Promise<void> | undefined;
  private readonly endListeners: ((reason: string) => void)[] = [];
  /** observers of every byte (the recorder, live watchers); bounded by their owners */
  private readonly taps: SessionTap[] = [];
  /** told once the exec is up (re-homing records which tunnel stream carries it) */
  private readonly execListeners: ((exec: ExecChannel) => void)[] = [];
  /** taken over from a lost replica: the output offset the agent had sent by then (see adopt) */
  private adoptedUpTo: number | undefined;

  constructor(
    readonly info: SessionInfo,
    private readonly driver: SessionDriver,
    private readonly limits: SessionLimits,
    private readonly log: Logger,
  ) {
    this.replay = new ReplayBuffer(limits.bufferBytes);
  }

  get id(): string {
    return this.info.sessionId;
  }

  get state(): SessionState {
    return this.state_;
  }

  get bytesOut(): number {
    return this.replay.end;
  }

  /** stdin bytes received from the browser so far */
  get stdinBytes(): number {
    return this.bytesIn;
  }

  /** epoch ms of the last activity (stdin or output byte, keep-alive): what the idle cut measures */
  get lastActivityAt(): number {
    return this.lastActivity;
  }

  /** Adds an observer of output, stdin and size (recording, live watch); before start(). */
  addTap(t: SessionTap): void {
    this.taps.push(t);
  }

  /**
   * Sends a control frame to the operator's browser (the watch banner); a `watch` frame is sent
   * again to a socket that resumes.
   */
  notify(frame: ServerFrame): void {
    if (frame.type === 'watch') this.lastWatch = frame;
    this.send(frame);
  }

  /** The output still held for a resume (a watcher starts from it), and the size now. */
  recentOutput(): { bytes: Buffer[]; cols: number; rows: number } {
    return { bytes: this.replay.since(this.replay.start) ?? [], cols: this.cols, rows: this.rows };
  }

  onEnded(cb: (reason: string) => void): void {
    this.endListeners.push(cb);
  }

  /** Called with the exec once it is up (not for a session that ended while starting). */
  onExec(cb: (exec: ExecChannel) => void): void {
    this.execListeners.push(cb);
  }

  /** epoch ms when the maximum length ends the session (0 before start) */
  get maxEndsAtMs(): number {
    return this.maxEndsAt;
  }

  /**
   * A session taken over from a replica that died (re-homing: the agent's tunnel came here and
   * still had its exec stream): detached, waiting for the browser's resume within the grace
   * period, its output continuing at `outFrom` (the oldest byte the agent kept) so that the
   * browser's offset is served whatever the dead replica had delivered. `outTo`: what the agent
   * had sent by then; the session is not paused for a detached browser before it has that much.
   * Rejects when the exec could not be taken over (the caller ends the session).
   */
  async adopt(o: {
    outFrom: number;
    outTo: number;
    stdinBytes: number;
    startedAt: number;
    maxEndsAt: number;
    attach: (handlers: ExecChannelHandlers) => Promise<ExecChannel>;
  }): Promise<void> {
    this.replay.startAt(o.outFrom);
    this.started = o.startedAt;
    this.bytesIn = o.stdinBytes;
    this.adoptedUpTo = o.outTo;
    this.state_ = 'detached';
    this.detachedAt = Math.max(o.outFrom, o.outTo);
    this.armTimers(o.maxEndsAt);
    this.graceTimer = setTimeout(() => void this.end('disconnected', null), this.limits.graceSeconds * 1000);
    this.graceTimer.unref();
    const exec = await o.attach(this.execHandlers());
    this.exec = exec;
    this.execStarted = Date.now();
    if ((this.state_ as SessionState) === 'ended') {
      exec.close();
      return;
    }
    // A browser that resumed while the agent was handing the stream over: its size, its keystrokes.
    this.flushEarly(exec);
  }

  /** The exec is up: the browser's size, then the keystrokes kept until now, in order. */
  private flushEarly(exec: ExecChannel): void {
    this.forwardResize();
    let room = true;
    for (const b of this.early) room = exec.write(b);
    this.early = [];
    this.earlyBytes = 0;
    if (room) this.releaseInput();
  }

  /**
   * A resume that came before the output it has was replayed here (a session just taken over):
   * ask the browser to try again in a moment rather than refuse it.
   */
  awaitingOutput(received: number): boolean {
    return (
      this.adoptedUpTo !== undefined &&
      this.state_ !== 'ended' &&
      received > this.replay.end &&
      received <= this.adoptedUpTo
    );
  }

  /**
   * Another replica took the session over (the agent's tunnel moved there and it holds the
   * session's ownership now): let go without teardown or close record, which are that replica's.
   * The browser's socket closes with 1001 so that it resumes, and lands there.
   */
  abandon(why: string): void {
    if (this.state_ === 'ended') return;
    this.state_ = 'ended';
    this.ending = Promise.resolve();
    for (const t of this.timers) clearTimeout(t);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.drainTimer) clearInterval(this.drainTimer);
    if (this.resizeTimer) clearTimeout(this.resizeTimer);
    const exec: (ExecChannel & { abandon?: (reason: string) => void }) | undefined = this.exec;
    if (exec?.abandon) exec.abandon(why);
    else exec?.close();
    for (const t of this.taps) void t.close().catch(() => undefined);
    this.log.info({ sessionId: this.id, why }, 'session moved to another replica; letting go here');
    this.dropSocket(TERMINAL_CLOSE.goingAway, 'session moved to another replica; resume');
    for (const cb of this.endListeners) cb('rehomed');
  }

  /** First attach: hello, then start the exec through the driver. */
  start(ws: WebSocket): void {
    this.attachSocket(ws, false);
    this.armTimers(Date.now() + this.limits.maxSessionSeconds * 1000);
    void this.runExec();
  }

  /** The idle check, the maximum length ending at `maxEndsAt` and its warning before. */
  private armTimers(maxEndsAt: number): void {
    this.maxEndsAt = maxEndsAt;
    const left = Math.max(0, maxEndsAt - Date.now());
    this.timers.push(
      setInterval(() => {
        this.checkIdle();
      }, 1000),
      setTimeout(() => void this.end('max_duration', null), left),
    );
    if (this.limits.maxWarnSeconds > 0)
      this.timers.push(
        setTimeout(
          () => {
            this.maxWarned = true;
            this.warnMax();
          },
          Math.max(0, left - this.limits.maxWarnSeconds * 1000),
        ),
      );
    for (const t of this.timers) t.unref();
  }

  /**
   * A browser coming back: continues from `received` output bytes. Answers false (and leaves
   * the session as it was) when that offset can no longer be served.
   */
  resume(ws: WebSocket, received: number): boolean {
    if (this.state_ === 'ended') return false;
    const missing = this.replay.since(received);
    if (!missing) return false;
    if (this.ws) this.dropSocket(TERMINAL_CLOSE.superseded, 'superseded by a newer connection');
    this.attachSocket(ws, true);
    for (const b of missing) ws.send(b, { binary: true });
    if (this.paused) this.drain();
    this.log.info({ sessionId: this.id, received, replayed: this.replay.end - received }, 'session resumed');
    return true;
  }

  private attachSocket(ws: WebSocket, resumed: boolean): void {
    this.ws = ws;
    if (hopTrace) traceRawSocket('server:browser.tcp', (ws as unknown as { _socket?: unknown })._socket);
    this.badFrames = 0;
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    if (this.state_ !== 'starting' || this.exec) this.state_ = 'attached';
    const { info } = this;
    this.send({
      type: 'hello',
      sessionId: info.sessionId,
      kind: info.kind,
      cluster: info.cluster,
      ...(info.namespace !== undefined ? { namespace: info.namespace } : {}),
      ...(info.pod !== undefined ? { pod: info.pod } : {}),
      ...(info.container !== undefined ? { container: info.container } : {}),
      ...(info.mode !== undefined ? { mode: info.mode } : {}),
      ...(resumed ? { resumed: true } : {}),
    });
    if (resumed && !this.exec && this.lastStatus) this.send(this.lastStatus);
    // The warning may have gone out while no socket was attached: a resumed browser hears it too.
    if (resumed && this.maxWarned) this.warnMax();
    if (resumed && this.lastWatch) this.send(this.lastWatch);
    this.alive = true;
    ws.on('pong', () => {
      if (this.ws === ws) this.alive = true;
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // Nothing more from a socket being closed (rate limit, too many bad frames).
      if (this.ws !== ws || ws.readyState !== ws.OPEN) return;
      // A frame proves the browser is there as well as a pong (which may wait behind a backlog).
      this.alive = true;
      this.onMessage(data, isBinary);
    });
    // A socket attached while stdin is held starts paused too.
    if (this.inputHeld) ws.pause();
    ws.on('close', () => {
      if (this.ws === ws) this.onSocketGone('client_disconnect');
    });
    ws.on('error', () => {
      if (this.ws === ws) this.onSocketGone('client_error');
    });
    this.heartbeat = setInterval(() => {
      if (this.ws !== ws) return;
      // While stdin is held nothing (pongs included) is read from the socket: no verdict then.
      if (!this.alive && !this.inputHeld) {
        this.log.info({ sessionId: this.id }, 'no heartbeat answer; treating the browser as gone');
        this.onSocketGone('heartbeat_timeout');
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, this.limits.heartbeatSeconds * 1000);
    this.heartbeat.unref();
  }

  private dropSocket(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = undefined;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (ws && ws.readyState === ws.OPEN) ws.close(code, reason);
  }

  /** The socket went away without a `close` frame: wait for a resume, or end. */
  private onSocketGone(cause: string): void {
    if (this.state_ === 'ended') return;
    this.dropSocket(TERMINAL_CLOSE.goingAway, cause);
    if (this.limits.graceSeconds <= 0) {
      void this.end(cause, null);
      return;
    }
    this.state_ = 'detached';
    this.detachedAt = this.replay.end;
    this.graceTimer = setTimeout(() => void this.end('disconnected', null), this.limits.graceSeconds * 1000);
    this.graceTimer.unref();
    this.log.info({ sessionId: this.id, cause, graceSeconds: this.limits.graceSeconds }, 'session detached');
  }

  private send(frame: ServerFrame): void {
    const ws = this.ws;
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
  }

  private execHandlers(): ExecChannelHandlers {
    return {
      onOutput: (_ch, bytes) => this.onOutput(bytes),
      onExit: (r) => {
        const c = this.driver.classifyExit(r, {
          bytesIn: this.bytesIn,
          bytesOut: this.replay.end,
          runMs: Date.now() - this.execStarted,
        });
        void this.end(c.reason, c.exitCode, c.error);
      },
      onError: (message) => {
        void this.end('stream_error', null, { code: TERMINAL_ERROR.stream, message, retryable: true });
      },
      onWritable: () => {
        this.releaseInput();
      },
    };
  }

  private async runExec(): Promise<void> {
    try {
      const exec = await this.driver.start({
        status: (phase, message) => {
          this.lastStatus = { type: 'status', phase, message };
          this.send(this.lastStatus);
        },
        size: () => ({ cols: this.cols, rows: this.rows }),
        handlers: this.execHandlers(),
      });
      this.exec = exec;
      this.execStarted = Date.now();
      if (this.state_ === 'ended') {
        exec.close(); // the session ended while the exec was starting
        return;
      }
      for (const cb of this.execListeners) {
        try {
          cb(exec);
        } catch (err) {
          this.log.error({ sessionId: this.id, err: (err as Error).message }, 'exec listener failed');
        }
      }
      if (this.state_ === 'starting') this.state_ = 'attached';
      this.flushEarly(exec);
    } catch (err) {
      // Ended while starting: the driver gave up on purpose and its finish() cleans up.
      if (this.state_ === 'ended') return;
      const c = this.driver.classifyStartError(err);
      this.log.warn(
        { sessionId: this.id, cluster: this.info.cluster, err: c.error.message },
        'session could not start',
      );
      await this.end(c.reason, null, c.error);
    }
  }

  private onOutput(bytes: Uint8Array): boolean {
    this.replay.push(bytes);
    this.lastActivity = Date.now();
    let tapsReady = true;
    for (const t of this.taps) {
      t.output(bytes);
      tapsReady &&= t.ready;
    }
    const ws = this.ws;
    if (ws) {
      hopTrace?.mark('server:browser.send', bytes.length);
      ws.send(bytes, { binary: true });
      if (ws.bufferedAmount < HIGH_WATER && tapsReady) return true;
    } else if (this.replay.end - this.detachedAt < this.limits.bufferBytes / 2 && tapsReady) {
      return true;
    }
    // The browser is not keeping up, or is away: pause the exec until there is room.
    this.paused = true;
    if (ws) this.drain();
    return false;
  }

  /** Resumes a paused exec once the attached socket has drained. */
  private drain(): void {
    if (this.drainTimer) return;
    this.drainTimer = setInterval(() => {
      const ws = this.ws;
      if (this.state_ === 'ended' || !ws) {
        clearInterval(this.drainTimer);
        this.drainTimer = undefined;
        return;
      }
      if (ws.bufferedAmount < LOW_WATER && this.taps.every((t) => t.ready)) {
        clearInterval(this.drainTimer);
        this.drainTimer = undefined;
        this.paused = false;
        this.exec?.resume();
      }
    }, 20);
    this.drainTimer.unref();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      if (data.length === 0) return;
      hopTrace?.mark('server:browser.message', data.length);
      this.touch();
      this.stdin(data);
      return;
    }
    const frame = parseClientFrame(data.toString('utf8'));
    if (!frame) {
      if (++this.badFrames > MAX_BAD_FRAMES) {
        // A client that keeps sending frames outside the contract is broken or hostile; answering
        // each would only fill its socket. The session waits for a resume as after any drop.
        this.log.warn(
          { sessionId: this.id, badFrames: this.badFrames },
          'too many malformed frames; dropping the socket',
        );
        this.send({
          type: 'error',
          code: TERMINAL_ERROR.badFrame,
          message: `more than ${MAX_BAD_FRAMES} malformed control frames on this connection; it was closed`,
          retryable: true,
        });
        // The error frame goes out before the close (a terminate would drop it).
        this.onSocketGone('bad_frames');
        return;
      }
      this.send({
        type: 'error',
        code: TERMINAL_ERROR.badFrame,
        message: 'unknown or malformed control frame (expected resize {cols, rows} within limits, or close)',
        retryable: false,
      });
      return;
    }
    switch (frame.type) {
      case 'resize':
        // Not activity (the guide: stdin or stdout bytes): a tab that fits itself to its window
        // must not keep a forgotten session alive.
        this.cols = frame.cols;
        this.rows = frame.rows;
        this.forwardResize();
        return;
      case 'keepalive':
        // The operator pressed "keep alive": someone is there.
        this.touch();
        return;
      case 'close':
        void this.end('client_close', null);
        return;
    }
  }

  /**
   * Stdin flow control: while the exec cannot take more (the apiserver exec socket or the tunnel
   * stream is full) the browser socket is paused, so a paste waits in the browser, not here. The
   * same before the exec is up, past 64 KiB of early keystrokes.
   */
  private stdin(data: Buffer): void {
    if (this.state_ === 'ended') return;
    if (this.inputHeld) {
      this.heldOverflow += data.length;
      if (this.heldOverflow > STDIN_OVERFLOW_MAX) {
        void this.end('backpressure', null, {
          code: TERMINAL_ERROR.backpressure,
          message: `input kept arriving while the session was paused for the container to read (more than ${STDIN_OVERFLOW_MAX} bytes); send input only as the socket accepts it, and open a new session`,
          retryable: false,
        });
        return;
      }
    }
    this.bytesIn += data.length;
    for (const t of this.taps) t.input(data);
    if (!this.exec) {
      // Typed before the shell is up: kept, and the socket paused once 64 KiB wait.
      this.early.push(data);
      this.earlyBytes += data.length;
      if (this.earlyBytes >= EARLY_STDIN_MAX) this.holdInput();
      return;
    }
    if (!this.exec.write(data)) this.holdInput();
    hopTrace?.mark('server:exec.written', data.length);
  }

  private holdInput(): void {
    if (this.inputHeld) return;
    this.inputHeld = true;
    this.heldOverflow = 0;
    this.ws?.pause();
  }

  private releaseInput(): void {
    if (!this.inputHeld || this.state_ === 'ended') return;
    this.inputHeld = false;
    this.alive = true; // the heartbeat starts over from here
    this.ws?.resume();
  }

  /**
   * Passes the terminal size to the exec, at most once per RESIZE_INTERVAL_MS (the latest size
   * wins), so a flood of resize frames costs the apiserver or the tunnel a few frames a second.
   */
  private forwardResize(): void {
    if (this.resizeTimer || !this.exec) return;
    const wait = this.lastResizeAt + RESIZE_INTERVAL_MS - Date.now();
    if (wait > 0) {
      this.resizeTimer = setTimeout(() => {
        this.resizeTimer = undefined;
        this.forwardResize();
      }, wait);
      this.resizeTimer.unref();
      return;
    }
    if (this.cols === this.sentCols && this.rows === this.sentRows) return;
    this.lastResizeAt = Date.now();
    this.sentCols = this.cols;
    this.sentRows = this.rows;
    this.exec.resize(this.cols, this.rows);
    for (const t of this.taps) t.resize(this.cols, this.rows);
  }

  private touch(): void {
    this.lastActivity = Date.now();
    this.warned = false;
  }

  private checkIdle(): void {
    const idleMs = Date.now() - this.lastActivity;
    const limitMs = this.limits.idleSeconds * 1000;
    const warnMs = this.limits.idleWarnSeconds * 1000;
    if (idleMs >= limitMs) {
      void this.end('idle', null);
    } else if (!this.warned && idleMs >= limitMs - warnMs) {
      this.warned = true;
      this.send({ type: 'idle_warn', secondsRemaining: Math.ceil((limitMs - idleMs) / 1000) });
    }
  }

  /**
   * Tells the browser how long until maxSessionSeconds ends the session; activity does not change it.
   * Never more than the configured lead time: a timer may fire a millisecond early (libuv's loop
   * clock against Date.now()), and rounding that up would announce one second too many.
   */
  private warnMax(): void {
    if (this.state_ === 'ended') return;
    const left = Math.ceil((this.maxEndsAt - Date.now()) / 1000);
    const secondsRemaining = Math.max(0, Math.min(this.limits.maxWarnSeconds, left));
    this.send({ type: 'max_warn', secondsRemaining });
  }

  /**
   * The one teardown path, whatever ended the session. Resolves when teardown is done. `endedBy`:
   * a person ended it on request (told to the browser in `closed`, written in the close record).
   */
  end(reason: string, exitCode: number | null, error?: SessionError, endedBy?: EndedBy): Promise<void> {
    // Never rejects: timers and socket events call this with `void`.
    this.ending ??= this.teardown(reason, exitCode, error, endedBy).catch((err: unknown) => {
      this.log.error({ sessionId: this.id, err: (err as Error).message }, 'session end failed');
    });
    return this.ending;
  }

  private async teardown(
    reason: string,
    exitCode: number | null,
    error?: SessionError,
    endedBy?: EndedBy,
  ): Promise<void> {
    this.state_ = 'ended';
    // Say why first (the client may already be gone; then nobody reads it).
    if (error) this.send({ type: 'error', ...error });
    this.send({
      type: 'closed',
      reason,
      ...(exitCode !== null ? { exitCode } : {}),
      ...(endedBy ? { endedBy: endedBy.by } : {}),
      ...(endedBy?.reason !== undefined ? { endReason: endedBy.reason } : {}),
    });
    for (const t of this.timers) clearTimeout(t);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.drainTimer) clearInterval(this.drainTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.resizeTimer) clearTimeout(this.resizeTimer);
    this.exec?.close();
    const tapFields: Record<string, unknown> = {};
    for (const t of this.taps) {
      try {
        Object.assign(tapFields, await t.close());
      } catch (err) {
        this.log.error({ sessionId: this.id, err: (err as Error).message }, 'session tap close failed');
      }
    }
    try {
      await this.driver.finish({
        tapFields,
        reason,
        exitCode,
        bytesIn: this.bytesIn,
        bytesOut: this.replay.end,
        durationMs: Date.now() - this.started,
        ...(endedBy ? { endedBy } : {}),
      });
    } catch (err) {
      this.log.error({ sessionId: this.id, err: (err as Error).message }, 'session teardown failed');
    }
    this.log.info(
      {
        sessionId: this.id,
        kind: this.info.kind,
        cluster: this.info.cluster,
        reason,
        exitCode,
        bytesIn: this.bytesIn,
        bytesOut: this.replay.end,
      },
      'terminal session closed',
    );
    const ws = this.ws;
    this.ws = undefined;
    // A socket paused for stdin must read again to complete the close handshake.
    if (this.inputHeld) ws?.resume();
    if (ws && ws.readyState === ws.OPEN) ws.close(TERMINAL_CLOSE.normal, reason);
    for (const cb of this.endListeners) cb(reason);
  }
}
