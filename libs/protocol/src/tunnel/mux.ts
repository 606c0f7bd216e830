import { CreditViolation, ReceiveCredit, SendCredit } from './credit';
import { newRid } from './ids';
import {
  CHANNEL,
  FRAME,
  FrameError,
  RESET_CODE,
  decodeFrame,
  encodeDataHeader,
  encodeFrame,
  type Channel,
  type Frame,
  type ResetCode,
  type StreamExit,
  type StreamOpen,
} from './frames';
import { hopTrace } from './hop-trace';

/** Where the mux writes frames: one tunnel connection (a Socket.IO socket). */
export interface MuxLink {
  /** one frame; for a split DATA frame its header and, separately, its payload */
  send(frame: Uint8Array, payload?: Uint8Array): void;
  /** the peer takes DATA frames as header + payload (agreed at resume): the payload is not copied */
  splitData?: boolean;
  /** bytes written but not yet handed to the kernel; bulk data waits while this is above the cap */
  queuedBytes(): number;
}

export interface MuxLimits {
  /** per stream, per direction credit window */
  window: number;
  /** bulk data is held while the link has more than this queued */
  linkCap: number;
  /** largest DATA payload */
  frameData: number;
  /** open streams per tunnel */
  maxStreams: number;
  /** a stream with output waiting and no credit for this long is reset as a slow consumer (not stdin) */
  starveMs: number;
  /** data frames up to this size from an otherwise idle stream bypass the link cap (keystrokes) */
  interactiveBytes: number;
  /**
   * Output (stdout, stderr) the peer already consumed, kept per stream so that another peer can
   * take the stream over and restart its output from an earlier offset (re-homing a session to
   * another server replica). 0: none kept (the server side; agents before re-homing).
   */
  retainBytes: number;
  /** the same, over every stream of the mux; past it the stream that grows drops its oldest kept bytes */
  retainTotalBytes: number;
}

export const DEFAULT_MUX_LIMITS: MuxLimits = {
  window: 256 * 1024,
  linkCap: 512 * 1024,
  frameData: 64 * 1024,
  maxStreams: 256,
  starveMs: 60_000,
  interactiveBytes: 256,
  retainBytes: 0,
  retainTotalBytes: 0,
};

export interface StreamHandlers {
  onData?(channel: Channel, bytes: Uint8Array): void;
  onWritable?(): void;
  onResize?(cols: number, rows: number): void;
  onHalfClose?(channel: Channel): void;
  onOpenOk?(info: Record<string, unknown>): void;
  onExit?(exit: StreamExit): void;
  /** the stream is gone (reset by either side, or closed after exit) */
  onClose?(code: ResetCode, reason: string, byPeer: boolean): void;
}

export interface StreamResumeState {
  streamId: number;
  sessionId: string;
  /** next offset expected per incoming channel */
  rx: Partial<Record<Channel, number>>;
  /**
   * Agent side, when it keeps output for re-homing: the first stdout offset it can still send
   * again (absent when the stream cannot be taken over losslessly: it sent stderr, or it kept
   * nothing), and the next stdout offset it will send.
   */
  outFrom?: number;
  outTo?: number;
  /** agent side: stdin bytes its sink consumed (a new peer's send credit starts from it) */
  inConsumed?: number;
}

export type MuxEvent =
  | { event: 'frame_rejected'; reason: string }
  | {
      event: 'stream_reset';
      streamId: number;
      sessionId: string;
      code: ResetCode;
      reason: string;
      byPeer: boolean;
      bytesIn: number;
      bytesOut: number;
    };

interface OutChannel {
  credit: SendCredit;
  queue: Uint8Array[];
  queued: number;
  /** sent but not yet consumed by the peer, in order: what a resume may have to resend */
  replay: { offset: number; bytes: Uint8Array }[];
  /** consumed by the peer and kept for a take-over (MuxLimits.retainBytes), oldest first */
  kept: { offset: number; bytes: Uint8Array }[];
  keptBytes: number;
  endRequested: boolean;
  endSent: boolean;
  /** when data has been waiting without credit (for the slow-consumer check) */
  starvedSince: number | undefined;
}

/** One multiplexed byte stream of the tunnel. */
export class MuxStream {
  private readonly out = new Map<Channel, OutChannel>();
  private readonly inbound = new Map<Channel, ReceiveCredit>();
  private wantWritable = false;
  private exitPending: StreamExit | undefined;
  private exitSent = false;
  closed = false;
  /**
   * Agent side: the server the stream belonged to is gone and the one the tunnel reconnected to
   * did not know it; it waits (bounded) for that server to take it over ({@link Mux.adoptOrphan}).
   */
  orphaned = false;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    private readonly mux: Mux,
    readonly id: number,
    readonly sessionId: string,
    public handlers: StreamHandlers,
  ) {}

  private outChannel(channel: Channel): OutChannel {
    let c = this.out.get(channel);
    if (!c) {
      c = {
        credit: new SendCredit(this.mux.limits.window),
        queue: [],
        queued: 0,
        replay: [],
        kept: [],
        keptBytes: 0,
        endRequested: false,
        endSent: false,
        starvedSince: undefined,
      };
      this.out.set(channel, c);
    }
    return c;
  }

  /** @internal */
  inChannel(channel: Channel): ReceiveCredit {
    let c = this.inbound.get(channel);
    if (!c) {
      c = new ReceiveCredit(this.mux.limits.window);
      this.inbound.set(channel, c);
    }
    return c;
  }

  /**
   * Queues bytes for the peer. Returns false when the caller should pause its source until
   * `onWritable` fires (more than one window is waiting). A source that ignores this and queues
   * beyond four windows gets the stream reset.
   */
  write(channel: Channel, bytes: Uint8Array): boolean {
    if (this.closed) return false;
    const c = this.outChannel(channel);
    if (c.endRequested) throw new Error(`write after end on channel ${channel}`);
    if (bytes.length > 0) {
      hopTrace?.mark(this.mux.hops.write, bytes.length);
      c.queue.push(bytes);
      c.queued += bytes.length;
    }
    if (c.queued > 4 * this.mux.limits.window) {
      this.reset(RESET_CODE.limit, 'writer ignored backpressure');
      return false;
    }
    // A keystroke (or its echo) on an otherwise idle channel goes out now, ahead of anything
    // queued on other streams and without waiting for the pump's microtask.
    if (
      !this.orphaned &&
      c.queue.length === 1 &&
      c.queued <= this.mux.limits.interactiveBytes &&
      this.mux.interactiveNow()
    ) {
      if (c.credit.available() >= c.queued) {
        this.sendHead(channel, c, c.queued);
        return true;
      }
    }
    this.mux.schedule();
    const ok = c.queued <= this.mux.limits.window;
    if (!ok) this.wantWritable = true;
    return ok;
  }

  /** Ends one outgoing channel after its queued bytes (stdin EOF). */
  end(channel: Channel): void {
    if (this.closed) return;
    this.outChannel(channel).endRequested = true;
    this.mux.schedule();
  }

  /** Tells the peer the sink accepted `n` bytes of `channel`; grants credit when due. */
  consumed(channel: Channel, n: number): void {
    if (this.closed || n === 0) return;
    const rx = this.inChannel(channel);
    const grant = rx.consume(n);
    // An orphan says nothing to a server that does not know it (its adopter gets every grant).
    if (grant !== undefined && !this.orphaned)
      this.mux.sendNow({
        type: FRAME.credit,
        streamId: this.id,
        channel,
        consumed: grant,
        window: rx.window,
      });
  }

  resize(cols: number, rows: number): void {
    if (!this.closed) this.mux.sendNow({ type: FRAME.resize, streamId: this.id, cols, rows });
  }

  openOk(info: Record<string, unknown>): void {
    if (!this.closed) this.mux.sendNow({ type: FRAME.openOk, streamId: this.id, info });
  }

  /** Reports the end of the command once every queued output byte went out. */
  exit(exit: StreamExit): void {
    if (this.closed) return;
    this.exitPending = exit;
    this.mux.schedule();
  }

  /** Closes the stream on this side only (see {@link Mux.forget}). */
  forget(reason: string): void {
    this.mux.forget(this, reason);
  }

  /** Ends the stream on both sides. */
  reset(code: ResetCode, reason: string): void {
    if (this.closed) return;
    this.mux.sendNow({ type: FRAME.reset, streamId: this.id, code, reason });
    this.mux.closeStream(this, code, reason, false);
  }

  /** @internal bytes waiting to be sent on all channels */
  pendingBytes(): number {
    let n = 0;
    for (const c of this.out.values()) n += c.queued;
    return n;
  }

  /** @internal sends at most one data frame; returns true if it sent something */
  sendOne(linkBusy: boolean): boolean {
    const limits = this.mux.limits;
    for (const [channel, c] of this.out) {
      const head = c.queue[0];
      if (head !== undefined) {
        const avail = c.credit.available();
        if (avail === 0) continue;
        const interactive = c.queued <= limits.interactiveBytes && c.queue.length === 1;
        if (linkBusy && !interactive) continue;
        this.sendHead(channel, c, Math.min(avail, limits.frameData, head.length));
        this.maybeWritable();
        return true;
      }
      if (c.endRequested && !c.endSent) {
        c.endSent = true;
        this.mux.sendNow({ type: FRAME.halfClose, streamId: this.id, channel, finalOffset: c.credit.offset });
        return true;
      }
    }
    if (this.exitPending && !this.exitSent && this.pendingBytes() === 0) {
      this.exitSent = true;
      this.mux.sendNow({ type: FRAME.exit, streamId: this.id, exit: this.exitPending });
      return true;
    }
    return false;
  }

  /** @internal sends the queued bytes of every channel that holds just a keystroke, credit permitting */
  sendInteractive(): void {
    if (this.orphaned) return;
    for (const [channel, c] of this.out) {
      if (
        c.queue.length === 1 &&
        c.queued <= this.mux.limits.interactiveBytes &&
        c.credit.available() >= c.queued
      )
        this.sendHead(channel, c, c.queued);
    }
  }

  /** Sends the first `n` queued bytes of a channel as one DATA frame (credit checked by the caller). */
  private sendHead(channel: Channel, c: OutChannel, n: number): void {
    const head = c.queue[0];
    if (head === undefined) return;
    const payload = n === head.length ? head : head.subarray(0, n);
    if (n === head.length) c.queue.shift();
    else c.queue[0] = head.subarray(n);
    c.queued -= n;
    const offset = c.credit.offset;
    c.credit.spend(n);
    c.replay.push({ offset, bytes: payload });
    this.bytesOut += n;
    this.mux.sendNow({ type: FRAME.data, streamId: this.id, channel, offset, payload });
  }

  private maybeWritable(): void {
    if (!this.wantWritable) return;
    for (const c of this.out.values()) if (c.queued > this.mux.limits.window) return;
    this.wantWritable = false;
    this.handlers.onWritable?.();
  }

  /** @internal */
  hasWork(): boolean {
    // An orphan waits, silent, for a server to take it over (or for its deadline).
    if (this.orphaned) return false;
    for (const c of this.out.values()) {
      if (c.queue.length > 0 && c.credit.available() > 0) return true;
      if (c.queue.length === 0 && c.endRequested && !c.endSent) return true;
    }
    return this.exitPending !== undefined && !this.exitSent && this.pendingBytes() === 0;
  }

  /** @internal */
  onCredit(channel: Channel, consumed: number, window: number): void {
    const c = this.outChannel(channel);
    c.credit.grant(consumed, window);
    const keep = this.mux.limits.retainBytes > 0 && channel !== CHANNEL.stdin;
    let first = c.replay[0];
    while (first !== undefined && first.offset + first.bytes.length <= consumed) {
      c.replay.shift();
      if (keep) {
        c.kept.push(first);
        c.keptBytes += first.bytes.length;
        this.mux.retained += first.bytes.length;
      }
      first = c.replay[0];
    }
    if (keep) this.trimKept(c);
  }

  /** Drops the oldest kept output beyond the stream's and the mux's bounds. */
  private trimKept(c: OutChannel): void {
    const limits = this.mux.limits;
    while (
      c.keptBytes > limits.retainBytes ||
      (this.mux.retained > limits.retainTotalBytes && c.keptBytes > 0)
    ) {
      const old = c.kept.shift();
      if (old === undefined) break;
      c.keptBytes -= old.bytes.length;
      this.mux.retained -= old.bytes.length;
    }
  }

  /** @internal frees the kept output (the stream is gone) */
  dropKept(): void {
    for (const c of this.out.values()) {
      this.mux.retained -= c.keptBytes;
      c.kept = [];
      c.keptBytes = 0;
    }
  }

  /**
   * Agent side: a new peer takes the stream over and wants its stdout again from `from` (the
   * browser's offset, or the oldest byte kept). Everything from there is queued again; stdin
   * credit is granted anew from what the sink consumed. Throws when `from` is no longer kept.
   */
  restartFrom(from: number): void {
    const c = this.outChannel(CHANNEL.stdout);
    const err = this.out.get(CHANNEL.stderr);
    if (err !== undefined && err.credit.offset > 0)
      throw new Error('the stream sent stderr: its output offsets do not map to one byte stream');
    const held = [...c.kept, ...c.replay];
    const oldest = held[0]?.offset ?? c.credit.offset;
    if (from < oldest || from > c.credit.offset)
      throw new Error(`output from ${from} is no longer kept (kept ${oldest}..${c.credit.offset})`);
    const resend: Uint8Array[] = [];
    for (const r of held) {
      if (r.offset + r.bytes.length <= from) continue;
      resend.push(r.offset >= from ? r.bytes : r.bytes.subarray(from - r.offset));
    }
    const n = resend.reduce((t, b) => t + b.length, 0);
    this.mux.retained -= c.keptBytes;
    c.kept = [];
    c.keptBytes = 0;
    c.replay = [];
    c.queue = [...resend, ...c.queue];
    c.queued += n;
    c.credit.restartAt(from, from);
    c.starvedSince = undefined;
    this.bytesOut -= n;
    this.orphaned = false;
    this.exitSent = false;
    for (const o of this.out.values()) o.endSent = false;
    for (const [channel, rx] of this.inbound) {
      this.mux.sendNow({
        type: FRAME.credit,
        streamId: this.id,
        channel,
        consumed: rx.announceAll(),
        window: rx.window,
      });
    }
  }

  /**
   * Server side: this end takes over a stream another server opened (re-homing): stdout is
   * expected from `outFrom`, stdin goes on from what the agent received (`rx`) and consumed.
   */
  takeOver(peer: StreamResumeState, outFrom: number): void {
    this.inChannel(CHANNEL.stdout).startAt(outFrom);
    const stdinAt = peer.rx[CHANNEL.stdin] ?? 0;
    this.outChannel(CHANNEL.stdin).credit.restartAt(stdinAt, Math.min(stdinAt, peer.inConsumed ?? stdinAt));
  }

  /** @internal slow-consumer check */
  starvedFor(now: number): number {
    let worst = 0;
    for (const [channel, c] of this.out) {
      // Stdin waits on the process in the pod, which may rightly not read for a long time (as
      // under kubectl exec); its writer pauses its source while the stream is full, so nothing
      // grows meanwhile. The session's idle limit bounds that wait, not this check.
      if (channel === CHANNEL.stdin) continue;
      if (c.queued > 0 && c.credit.available() === 0) {
        c.starvedSince ??= now;
        worst = Math.max(worst, now - c.starvedSince);
      } else c.starvedSince = undefined;
    }
    return worst;
  }

  /** @internal */
  resumeState(): StreamResumeState {
    const rx: Partial<Record<Channel, number>> = {};
    for (const [ch, c] of this.inbound) rx[ch] = c.offset;
    const state: StreamResumeState = { streamId: this.id, sessionId: this.sessionId, rx };
    if (this.mux.limits.retainBytes > 0) {
      const out = this.out.get(CHANNEL.stdout);
      const err = this.out.get(CHANNEL.stderr);
      const to = out?.credit.offset ?? 0;
      state.outTo = to;
      if (err === undefined || err.credit.offset === 0)
        state.outFrom = out?.kept[0]?.offset ?? out?.replay[0]?.offset ?? to;
      state.inConsumed = this.inbound.get(CHANNEL.stdin)?.consumed ?? 0;
    }
    return state;
  }

  /** @internal continue after a reconnect from what the peer says it received */
  rewind(peerRx: Partial<Record<Channel, number>>): void {
    for (const [channel, c] of this.out) {
      const from = peerRx[channel] ?? 0;
      if (from >= c.credit.offset) continue;
      c.credit.rewindTo(from);
      const resend: Uint8Array[] = [];
      const keep: { offset: number; bytes: Uint8Array }[] = [];
      for (const r of c.replay) {
        if (r.offset + r.bytes.length <= from) keep.push(r);
        else if (r.offset >= from) resend.push(r.bytes);
        else {
          keep.push({ offset: r.offset, bytes: r.bytes.subarray(0, from - r.offset) });
          resend.push(r.bytes.subarray(from - r.offset));
        }
      }
      c.replay = keep;
      c.queue = [...resend, ...c.queue];
      c.queued += resend.reduce((n, b) => n + b.length, 0);
      this.bytesOut -= resend.reduce((n, b) => n + b.length, 0);
    }
    // A half-close or exit sent just before the drop may be lost; send them again (receivers
    // treat repeats as no-ops).
    this.exitSent = false;
    for (const c of this.out.values()) c.endSent = false;
    // Grants may have been lost with the old connection; repeat them (they are absolute).
    for (const [channel, rx] of this.inbound) {
      this.mux.sendNow({
        type: FRAME.credit,
        streamId: this.id,
        channel,
        consumed: rx.consumed,
        window: rx.window,
      });
    }
  }
}

/**
 * Multiplexes byte streams over one tunnel link with per-stream credits, a cap on bytes queued
 * in the link, round-robin between streams and priority for control frames and keystrokes.
 * Streams survive a link change (detach → attach) and resume from exchanged offsets.
 */
export class Mux {
  readonly limits: MuxLimits;
  /** @internal hop names for the keystroke tracer (hop-trace.ts) */
  readonly hops: { write: string; send: string; receive: string };
  private readonly streams = new Map<number, MuxStream>();
  private link: MuxLink | undefined;
  private nextId: number;
  private rr: number[] = [];
  private scheduled = false;
  private pumping = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  /** @internal output kept for take-overs, over every stream (MuxLimits.retainTotalBytes) */
  retained = 0;

  constructor(
    readonly role: 'server' | 'agent',
    private readonly options: {
      limits?: Partial<MuxLimits>;
      /** agent side: the peer opened a stream */
      onOpen?: (stream: MuxStream, open: StreamOpen) => void;
      onEvent?: (e: MuxEvent) => void;
      now?: () => number;
    } = {},
  ) {
    this.limits = { ...DEFAULT_MUX_LIMITS, ...options.limits };
    this.hops = { write: `${role}:mux.write`, send: `${role}:mux.send`, receive: `${role}:mux.receive` };
    // Parity-partitioned ids (server even, agent odd) so both sides could open streams.
    this.nextId = role === 'server' ? 2 : 1;
  }

  now(): number {
    return this.options.now?.() ?? Date.now();
  }

  get size(): number {
    return this.streams.size;
  }

  get attached(): boolean {
    return this.link !== undefined;
  }

  stream(id: number): MuxStream | undefined {
    return this.streams.get(id);
  }

  allStreams(): MuxStream[] {
    return [...this.streams.values()];
  }

  attach(link: MuxLink): void {
    this.link = link;
    this.sweepTimer ??= setInterval(
      () => {
        this.sweep();
      },
      Math.max(100, Math.floor(this.limits.starveMs / 4)),
    );
    (this.sweepTimer as { unref?: () => void }).unref?.();
    this.schedule();
  }

  detach(): void {
    this.link = undefined;
  }

  /** Opens a stream (server side). */
  open(open: Omit<StreamOpen, 'window'>, handlers: StreamHandlers): MuxStream {
    if (this.streams.size >= this.limits.maxStreams)
      throw new Error(`tunnel stream limit (${this.limits.maxStreams}) reached`);
    const id = this.nextId;
    this.nextId += 2;
    const stream = new MuxStream(this, id, open.sessionId, handlers);
    this.add(stream);
    this.sendNow({
      type: FRAME.open,
      streamId: id,
      open: { rid: newRid(), ...open, window: this.limits.window },
    });
    return stream;
  }

  private add(stream: MuxStream): void {
    this.streams.set(stream.id, stream);
    this.rr.push(stream.id);
  }

  /**
   * @internal May an interactive frame go out at once, bypassing the pump? Yes while a link is
   * attached (the link cap does not hold keystrokes back) and not from inside a pump pass.
   */
  interactiveNow(): boolean {
    return this.link !== undefined && !this.pumping;
  }

  /** @internal */
  sendNow(frame: Frame): void {
    const link = this.link;
    if (!link) return;
    if (frame.type === FRAME.data) hopTrace?.mark(this.hops.send, frame.payload.length);
    if (frame.type === FRAME.data && link.splitData === true)
      link.send(encodeDataHeader(frame), frame.payload);
    else link.send(encodeFrame(frame));
  }

  /** @internal */
  closeStream(stream: MuxStream, code: ResetCode, reason: string, byPeer: boolean): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.dropKept();
    this.streams.delete(stream.id);
    this.rr = this.rr.filter((id) => id !== stream.id);
    this.options.onEvent?.({
      event: 'stream_reset',
      streamId: stream.id,
      sessionId: stream.sessionId,
      code,
      reason,
      byPeer,
      bytesIn: stream.bytesIn,
      bytesOut: stream.bytesOut,
    });
    stream.handlers.onClose?.(code, reason, byPeer);
  }

  /** Handles one frame from the link. Malformed frames are logged and dropped, never thrown. */
  receive(bytes: Uint8Array, payload?: Uint8Array): void {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes, payload);
    } catch (err) {
      this.options.onEvent?.({ event: 'frame_rejected', reason: (err as Error).message });
      if (err instanceof FrameError && bytes.length >= 5) {
        const id = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1);
        this.streams.get(id)?.reset(RESET_CODE.protocol, err.message);
      }
      return;
    }
    if (frame.type === FRAME.open) {
      this.onOpenFrame(frame.streamId, frame.open);
      return;
    }
    const stream = this.streams.get(frame.streamId);
    if (!stream) {
      if (frame.type !== FRAME.reset && frame.type !== FRAME.exit) {
        this.sendNow({
          type: FRAME.reset,
          streamId: frame.streamId,
          code: RESET_CODE.protocol,
          reason: 'unknown stream',
        });
      }
      return;
    }
    try {
      this.dispatch(stream, frame);
    } catch (err) {
      const code = err instanceof CreditViolation ? RESET_CODE.creditViolation : RESET_CODE.protocol;
      this.options.onEvent?.({ event: 'frame_rejected', reason: (err as Error).message });
      stream.reset(code, (err as Error).message);
    }
  }

  private onOpenFrame(streamId: number, open: StreamOpen): void {
    if (this.role !== 'agent' || streamId % 2 !== 0 || this.streams.has(streamId)) {
      this.sendNow({ type: FRAME.reset, streamId, code: RESET_CODE.protocol, reason: 'unexpected open' });
      return;
    }
    if (this.streams.size >= this.limits.maxStreams) {
      this.sendNow({
        type: FRAME.reset,
        streamId,
        code: RESET_CODE.limit,
        reason: `stream limit (${this.limits.maxStreams}) reached`,
      });
      return;
    }
    const stream = new MuxStream(this, streamId, open.sessionId, {});
    this.add(stream);
    if (this.options.onOpen) this.options.onOpen(stream, open);
    else stream.reset(RESET_CODE.openFailed, 'this side accepts no streams');
  }

  private dispatch(stream: MuxStream, frame: Exclude<Frame, { type: typeof FRAME.open }>): void {
    switch (frame.type) {
      case FRAME.data: {
        hopTrace?.mark(this.hops.receive, frame.payload.length);
        const rx = stream.inChannel(frame.channel);
        const skip = rx.accept(frame.offset, frame.payload.length);
        if (skip < frame.payload.length) {
          const fresh = skip === 0 ? frame.payload : frame.payload.subarray(skip);
          stream.bytesIn += fresh.length;
          stream.handlers.onData?.(frame.channel, fresh);
        }
        return;
      }
      case FRAME.credit:
        stream.onCredit(frame.channel, frame.consumed, frame.window);
        this.schedule();
        return;
      case FRAME.resize:
        stream.handlers.onResize?.(frame.cols, frame.rows);
        return;
      case FRAME.halfClose: {
        const rx = stream.inChannel(frame.channel);
        if (frame.finalOffset !== rx.offset)
          throw new FrameError(`half-close at ${frame.finalOffset}, received ${rx.offset}`);
        stream.handlers.onHalfClose?.(frame.channel);
        return;
      }
      case FRAME.openOk:
        stream.handlers.onOpenOk?.(frame.info);
        return;
      case FRAME.exit:
        stream.handlers.onExit?.(frame.exit);
        // The exit is the last frame of a stream; acknowledging it frees the agent's state.
        stream.reset(RESET_CODE.closedByPeer, 'exit received');
        return;
      case FRAME.reset:
        this.closeStream(stream, frame.code, frame.reason, true);
        return;
    }
  }

  /** Coalesces pumping into one pass per tick. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  /** Sends data round-robin, one frame per stream per round, honouring credit and the link cap. */
  pump(): void {
    const link = this.link;
    if (!link) return;
    this.pumping = true;
    try {
      this.pumpOn(link);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOn(link: MuxLink): void {
    // Keystrokes first: an interactive frame that waited (for credit, or for a link) never waits
    // behind a round of bulk frames.
    for (const id of [...this.rr]) {
      this.streams.get(id)?.sendInteractive();
      if (this.link !== link) return;
    }
    let heldByCap = false;
    for (;;) {
      let progress = false;
      const order = [...this.rr];
      for (const id of order) {
        const stream = this.streams.get(id);
        if (!stream?.hasWork()) continue;
        const busy = link.queuedBytes() > this.limits.linkCap;
        if (stream.sendOne(busy)) {
          progress = true;
          // rotate: the stream just served goes to the back
          this.rr = this.rr.filter((x) => x !== id);
          this.rr.push(id);
        } else if (busy) heldByCap = true;
        if (this.link !== link) return;
      }
      if (!progress) break;
    }
    if (heldByCap && this.retryTimer === undefined) {
      // Not every link reports drain reliably (the Socket.IO client fakes it); poll briefly.
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.pump();
      }, 2);
    }
  }

  /** Offsets this side received, for the peer to resume from. */
  resumeState(): StreamResumeState[] {
    return this.allStreams().map((s) => s.resumeState());
  }

  /**
   * Applies the peer's resume state after a reconnect: streams the peer knows continue from its
   * offsets; streams it does not know are reset with `resume-failed`, or, `keepUnknown` (agent
   * side, a server that takes streams over), kept as orphans for it to adopt.
   */
  applyResume(
    peer: readonly StreamResumeState[],
    opts: { keepUnknown?: boolean } = {},
  ): { resumed: number[]; lost: number[]; orphaned: number[] } {
    const byId = new Map(peer.map((p) => [p.streamId, p]));
    const resumed: number[] = [];
    const lost: number[] = [];
    const orphaned: number[] = [];
    for (const stream of this.allStreams()) {
      const p = byId.get(stream.id);
      if (p === undefined && opts.keepUnknown === true && this.role === 'agent') {
        stream.orphaned = true;
        orphaned.push(stream.id);
        continue;
      }
      if (p?.sessionId !== stream.sessionId) {
        lost.push(stream.id);
        this.closeStream(stream, RESET_CODE.resumeFailed, 'the peer no longer knows this stream', false);
        continue;
      }
      try {
        stream.rewind(p.rx);
        resumed.push(stream.id);
      } catch (err) {
        lost.push(stream.id);
        stream.reset(RESET_CODE.resumeFailed, (err as Error).message);
      }
    }
    this.schedule();
    return { resumed, lost, orphaned };
  }

  /**
   * Agent side: the server this tunnel is on takes over an orphaned stream (same id and session)
   * and wants its stdout again from `from`. Answers why not, or undefined when adopted.
   */
  adoptOrphan(streamId: number, sessionId: string, from: number): string | undefined {
    const stream = this.streams.get(streamId);
    if (stream?.sessionId !== sessionId) return 'no such stream';
    if (!stream.orphaned) return 'the stream is not waiting for a new server';
    try {
      stream.restartFrom(from);
    } catch (err) {
      stream.reset(RESET_CODE.resumeFailed, (err as Error).message);
      return (err as Error).message;
    }
    this.schedule();
    return undefined;
  }

  /**
   * Server side: a stream another server opened, taken over (see {@link MuxStream.takeOver}).
   * Later ids this side opens stay clear of it.
   */
  adoptStream(peer: StreamResumeState, outFrom: number, handlers: StreamHandlers): MuxStream {
    if (this.role !== 'server' || peer.streamId % 2 !== 0 || this.streams.has(peer.streamId))
      throw new Error(`stream ${peer.streamId} cannot be taken over here`);
    if (this.streams.size >= this.limits.maxStreams)
      throw new Error(`tunnel stream limit (${this.limits.maxStreams}) reached`);
    const stream = new MuxStream(this, peer.streamId, peer.sessionId, handlers);
    stream.takeOver(peer, outFrom);
    this.add(stream);
    if (this.nextId <= peer.streamId) this.nextId = peer.streamId + 2;
    return stream;
  }

  /** Tells the peer to drop a stream this side does not hold (an orphan nobody adopts). */
  rejectStream(streamId: number, reason: string): void {
    this.sendNow({ type: FRAME.reset, streamId, code: RESET_CODE.resumeFailed, reason });
  }

  /**
   * Closes a stream on this side only, without a word to the peer and without its handlers
   * (another server took the session over: the stream is that server's now).
   */
  forget(stream: MuxStream, reason: string): void {
    stream.handlers = {};
    this.closeStream(stream, RESET_CODE.resumeFailed, reason, false);
  }

  /** Resets every stream (tunnel gone for good, or shutdown). */
  resetAll(code: ResetCode, reason: string): void {
    for (const s of this.allStreams()) {
      if (this.link) s.reset(code, reason);
      else this.closeStream(s, code, reason, false);
    }
  }

  private sweep(): void {
    const now = this.now();
    for (const s of this.allStreams()) {
      if (s.starvedFor(now) >= this.limits.starveMs)
        s.reset(RESET_CODE.slowConsumer, `no credit for ${Math.round(this.limits.starveMs / 1000)} s`);
    }
  }

  dispose(): void {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.sweepTimer = undefined;
    this.retryTimer = undefined;
  }
}
