import {
  DATA_EVENT,
  Mux,
  PROGRESS_EVENT,
  ProgressEvent,
  RESET_CODE,
  RPC_ERROR,
  RPC_EVENT,
  RPC_OP,
  RpcError,
  Ring,
  checkDto,
  hopTrace,
  newRid,
  parseOpReply,
  rpcResult,
  traceRawSocket,
  type AgentHello,
  type MuxEvent,
  type MuxLimits,
  type OpReply,
  type OpRequest,
  type RequestRecord,
  type StreamResumeState,
  type TunnelOp,
} from '@periscope/protocol';
import type { Logger } from 'pino';
import type { Socket } from 'socket.io';

export interface RequestOptions {
  timeoutMs?: number;
  rid?: string;
  waitForConnection?: boolean;
  onProgress?: (phase: string, message: string) => void;
}

export interface LinkOptions {
  graceMs: number;
  limits?: Partial<MuxLimits>;
  maxPendingRequests: number;
  ringSize: number;
  defaultTimeoutMs: number;
  /** the server's longest cluster-shell session, announced at resume (the agent's sweep uses it) */
  maxSessionSeconds?: number;
  /**
   * Several replicas: takes over the streams the agent still has that this replica does not know
   * (their replica died; re-homing). Unset: the agent resets them (one replica: nothing to adopt).
   */
  orphans?: () => OrphanHandler | undefined;
  /** the resume buffer per session: what the agent keeps of each stream for a take-over */
  retainBytes?: number;
}

/** Adopts (or rejects with `mux.rejectStream`) each stream the agent kept as an orphan. */
export type OrphanHandler = (link: AgentLink, orphans: StreamResumeState[]) => void;

interface EngineInternals {
  writeBuffer?: unknown[];
  transport?: { socket?: { bufferedAmount?: number; _socket?: unknown } };
}

/** Bytes the server has queued toward this agent (socket.io keeps no byte count of its own). */
function queuedBytes(socket: Socket): number {
  const conn = socket.conn as unknown as EngineInternals;
  return (conn.transport?.socket?.bufferedAmount ?? 0) + (conn.writeBuffer?.length ?? 0) * 16 * 1024;
}

/**
 * The server's side of one agent: its current Socket.IO connection, the stream multiplexer that
 * survives reconnects for a grace period, control-plane requests and the diagnostics ring.
 */
export class AgentLink {
  readonly mux: Mux;
  socket: Socket | undefined;
  /** SHA-256 of the certificate the current connection authenticated with (after a renewal: the new one) */
  fingerprint: string | undefined;
  hello: AgentHello | undefined;
  /** why the last connection attempt was refused at its handshake (cleared by a good one) */
  handshakeProblem: { at: Date; reason: string } | undefined;
  /** when the last adopted connection went away */
  disconnectedAt: Date | undefined;
  connectedSince: Date | undefined;
  lastSeen: Date | undefined;
  lastRttMs: number | undefined;
  readonly ring: Ring<RequestRecord>;
  private pending = 0;
  /** called with every finished control-plane request (for metrics) */
  onRequestDone: ((op: string, seconds: number, outcome: 'ok' | 'error') => void) | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private rttTimer: NodeJS.Timeout | undefined;
  private epoch = 0;
  private readonly waiters = new Set<() => void>();
  private readonly progress = new Map<string, (phase: string, message: string) => void>();

  constructor(
    readonly cluster: string,
    private readonly options: LinkOptions,
    private readonly log: Logger,
    onMuxEvent: (e: MuxEvent) => void,
  ) {
    this.mux = new Mux('server', { limits: options.limits ?? {}, onEvent: onMuxEvent });
    this.ring = new Ring(options.ringSize);
  }

  get pendingRequests(): number {
    return this.pending;
  }

  /** Connected and past the handshake (hello and stream resume), so usable. */
  get connected(): boolean {
    return this.socket?.connected === true && this.mux.attached;
  }

  /**
   * Adopts a new connection and resumes open streams on it. The new connection first proves
   * itself with a valid `hello` for this cluster while the current one keeps serving: one that
   * answers a hello of the wrong shape (or none in 10 s) never replaces a healthy tunnel; it is
   * refused, and when no other connection is up the cluster shows as unavailable with the reason
   * (`handshakeProblem`). Streams resume only while `stillCurrent` holds after the handshake: a
   * certificate superseded meanwhile is never handed the cluster's open streams.
   */
  async adopt(
    socket: Socket,
    opts: { fingerprint?: string | undefined; stillCurrent?: () => boolean } = {},
  ): Promise<void> {
    let hello: AgentHello;
    try {
      hello = parseOpReply(RPC_OP.hello, await this.askOn(socket, RPC_OP.hello, {}, 10_000), 'agent hello');
      if (hello.cluster !== this.cluster)
        throw new RpcError({
          code: RPC_ERROR.badRequest,
          message: `agent hello: names cluster ${JSON.stringify(hello.cluster.slice(0, 63))}, its certificate ${this.cluster}`,
        });
    } catch (err) {
      const reason = (err as Error).message;
      this.handshakeProblem = { at: new Date(), reason };
      this.log.warn(
        { reason, keptCurrent: this.connected },
        this.connected
          ? 'a second agent connection failed its handshake; the current connection stays'
          : 'agent handshake failed; the cluster is unavailable until its agent connects with a valid hello',
      );
      throw err;
    }
    const epoch = ++this.epoch;
    const previous = this.socket;
    this.socket = socket;
    this.fingerprint = opts.fingerprint;
    this.hello = hello;
    this.handshakeProblem = undefined;
    if (previous && previous !== socket) {
      this.log.info('agent reconnected; replacing the previous connection');
      previous.disconnect(true);
    }
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.mux.detach();
    if (hopTrace)
      traceRawSocket(
        'server:tunnel.tls',
        (socket.conn as unknown as EngineInternals).transport?.socket?._socket,
      );
    socket.on(DATA_EVENT, (bytes: unknown, payload: unknown) => {
      if (this.socket !== socket) return;
      this.lastSeen = new Date();
      if (!(bytes instanceof Uint8Array)) return;
      hopTrace?.mark('server:tunnel.event', (payload as Uint8Array | undefined)?.length ?? bytes.length);
      if (payload === undefined) this.mux.receive(bytes);
      else if (payload instanceof Uint8Array) this.mux.receive(bytes, payload);
    });
    socket.on(PROGRESS_EVENT, (p: unknown) => {
      if (this.socket !== socket) return;
      const event = checkDto(ProgressEvent, p, 'lenient');
      if (!event.ok) return; // best effort: a bad progress note is dropped
      const { rid, phase, message } = event.value;
      this.progress.get(rid)?.(phase.slice(0, 64), message.slice(0, 1024));
    });
    socket.on('disconnect', (reason) => {
      if (this.socket === socket) this.onDisconnect(reason);
    });
    this.connectedSince = new Date();
    this.lastSeen = new Date();
    // Exchange stream offsets so open streams continue.
    // `splitData`: we take DATA frames as header + payload; an agent that says so too gets them.
    // `graceSeconds`: PERISCOPE_AGENT_TUNNEL_GRACE_SECONDS, so both ends give up on a cut together.
    const orphans = this.options.orphans?.();
    const agentState = await this.request(
      RPC_OP.resume,
      {
        streams: this.mux.resumeState(),
        splitData: true,
        // The agent keeps its streams through a cut for as long as we do.
        graceSeconds: Math.max(1, Math.round(this.options.graceMs / 1000)),
        ...(this.options.maxSessionSeconds !== undefined
          ? { maxSessionSeconds: this.options.maxSessionSeconds }
          : {}),
        ...(orphans ? { adopts: true } : {}),
        ...(orphans && this.options.retainBytes !== undefined
          ? { retainBytes: this.options.retainBytes }
          : {}),
      },
      { timeoutMs: 10_000, waitForConnection: false },
    );
    if (epoch !== this.epoch || this.socket !== socket) return;
    if (opts.stillCurrent && !opts.stillCurrent())
      throw new Error('the certificate of this connection was superseded or revoked during the handshake');
    this.mux.attach({
      send: (frame, data) => {
        if (data === undefined) socket.emit(DATA_EVENT, asBuffer(frame));
        else socket.emit(DATA_EVENT, asBuffer(frame), asBuffer(data));
        hopTrace?.mark('server:tunnel.emitted', data?.length ?? frame.length);
      },
      splitData: agentState.splitData === true,
      queuedBytes: () => queuedBytes(socket),
    });
    const { lost } = this.mux.applyResume(agentState.streams);
    if (lost.length > 0) this.log.warn({ streams: lost }, 'streams could not be resumed');
    // Streams the agent has and this replica does not: another replica's, which died.
    const unknown = agentState.streams.filter((s) => this.mux.stream(s.streamId) === undefined);
    if (orphans && unknown.length > 0) {
      try {
        orphans(this, unknown);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'taking over the streams of a lost replica failed');
      }
    }
    this.startRtt();
    for (const w of this.waiters) w();
    this.waiters.clear();
  }

  /** One request on a connection that is not (yet) the link's own: the handshake's hello. */
  private async askOn(socket: Socket, op: string, payload: unknown, timeoutMs: number): Promise<unknown> {
    const rid = newRid();
    const deadline = Date.now() + timeoutMs;
    let answer: unknown;
    try {
      answer = await socket.timeout(timeoutMs).emitWithAck(RPC_EVENT, { rid, op, deadline, payload });
    } catch {
      throw new RpcError({ code: RPC_ERROR.deadline, message: `no answer to ${op} within ${timeoutMs} ms` });
    }
    return rpcResult(answer, op);
  }

  /** Measures the tunnel round trip now and every 20 s while connected (GET /api/agents shows it). */
  private startRtt(): void {
    if (this.rttTimer) clearInterval(this.rttTimer);
    const measure = (): void => {
      this.ping().catch(() => undefined);
    };
    measure();
    this.rttTimer = setInterval(measure, 20_000);
    this.rttTimer.unref();
  }

  /**
   * The agent's connection was refused at its handshake since its last good connection went
   * away (or it never had one): the cluster is unavailable for that reason. A refused second
   * connection beside a healthy one does not count once that one drops.
   */
  get unavailable(): { reason: string } | undefined {
    const p = this.handshakeProblem;
    if (this.connected || !p) return undefined;
    if (this.disconnectedAt !== undefined && p.at < this.disconnectedAt) return undefined;
    return { reason: p.reason };
  }

  private onDisconnect(reason: string): void {
    this.disconnectedAt = new Date();
    if (this.rttTimer) clearInterval(this.rttTimer);
    this.log.warn({ reason }, 'agent disconnected; keeping its streams for the grace period');
    this.mux.detach();
    this.socket = undefined;
    this.connectedSince = undefined;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      if (this.socket) return;
      this.log.warn(
        { streams: this.mux.size },
        'agent did not come back within the grace period; resetting its streams',
      );
      this.mux.resetAll(
        RESET_CODE.graceExpired,
        `agent unreachable for more than ${Math.round(this.options.graceMs / 1000)} s`,
      );
    }, this.options.graceMs);
    this.graceTimer.unref();
  }

  /** Resolves when the link is attached, or rejects at the deadline. */
  private waitAttached(deadline: number): Promise<void> {
    if (this.socket && this.mux.attached) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waiters.delete(done);
          reject(
            new RpcError({ code: RPC_ERROR.disconnected, message: `agent ${this.cluster} is not connected` }),
          );
        },
        Math.max(0, deadline - Date.now()),
      );
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.add(done);
    });
  }

  /**
   * Sends one control-plane request and waits for its answer, never longer than the timeout.
   * If the connection drops meanwhile, the same `rid` is sent again after reconnecting; the agent
   * answers a repeated rid with its first result instead of running the operation twice. The
   * payload and the answer are typed by `TUNNEL_OPS`; an answer of the wrong shape fails with
   * E_BAD_REPLY naming the operation and the field.
   */
  request<O extends TunnelOp>(op: O, payload: OpRequest<O>, opts: RequestOptions = {}): Promise<OpReply<O>> {
    return this.send(op, payload, opts, (result) => parseOpReply(op, result));
  }

  /**
   * An operation outside `TUNNEL_OPS` (tests, diagnostics): nothing is checked but the envelope.
   * Prefer adding the operation to the map.
   */
  requestUntyped(op: string, payload: unknown, opts: RequestOptions = {}): Promise<unknown> {
    return this.send(op, payload, opts, (result) => result);
  }

  private async send<T>(
    op: string,
    payload: unknown,
    opts: RequestOptions,
    check: (result: unknown) => T,
  ): Promise<T> {
    if (this.pending >= this.options.maxPendingRequests) {
      throw new RpcError({
        code: RPC_ERROR.busy,
        message: `too many pending requests to agent ${this.cluster}`,
      });
    }
    const timeoutMs = opts.timeoutMs ?? this.options.defaultTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const rid = opts.rid ?? newRid();
    const record: RequestRecord = {
      rid,
      cluster: this.cluster,
      op,
      startedAt: new Date().toISOString(),
      outcome: 'pending',
    };
    this.ring.push(record);
    this.pending++;
    if (opts.onProgress) this.progress.set(rid, opts.onProgress);
    const started = performance.now();
    try {
      for (;;) {
        if (opts.waitForConnection !== false) await this.waitAttached(deadline);
        const socket = this.socket;
        if (!socket)
          throw new RpcError({
            code: RPC_ERROR.disconnected,
            message: `agent ${this.cluster} is not connected`,
          });
        const remaining = deadline - Date.now();
        if (remaining <= 0)
          throw new RpcError({
            code: RPC_ERROR.deadline,
            message: `${op} did not finish within ${timeoutMs} ms`,
          });
        let answer: unknown;
        // Socket.IO does not fail a pending acknowledgement when the connection drops: stop
        // waiting on a dead socket, so the request is re-sent (same rid) once the agent is back.
        let onLost: (() => void) | undefined;
        const lost = new Promise<never>((_, reject) => {
          onLost = () => {
            reject(new Error('connection lost'));
          };
          socket.once('disconnect', onLost);
        });
        try {
          answer = await Promise.race([
            socket.timeout(remaining).emitWithAck(RPC_EVENT, { rid, op, deadline, payload }),
            lost,
          ]);
        } catch {
          if (this.socket !== socket && Date.now() < deadline && opts.waitForConnection !== false) continue; // reconnected: retry same rid
          if (this.socket !== socket)
            throw new RpcError({
              code: RPC_ERROR.disconnected,
              message: `agent ${this.cluster} disconnected during ${op}`,
            });
          throw new RpcError({
            code: RPC_ERROR.deadline,
            message: `${op} did not finish within ${timeoutMs} ms`,
          });
        } finally {
          if (onLost) socket.off('disconnect', onLost);
        }
        const result = check(rpcResult(answer, op));
        record.outcome = 'ok';
        return result;
      }
    } catch (err) {
      record.outcome = 'error';
      record.error = (err as Error).message;
      throw err;
    } finally {
      this.pending--;
      this.progress.delete(rid);
      record.durationMs = Math.round(performance.now() - started);
      this.onRequestDone?.(op, record.durationMs / 1000, record.outcome === 'ok' ? 'ok' : 'error');
      this.log.info(
        {
          rid,
          op,
          durationMs: record.durationMs,
          outcome: record.outcome,
          error: record.error,
        },
        'tunnel request',
      );
    }
  }

  async ping(): Promise<number> {
    const t = performance.now();
    await this.request(RPC_OP.ping, {}, { timeoutMs: 5000, waitForConnection: false });
    this.lastRttMs = Math.round((performance.now() - t) * 100) / 100;
    return this.lastRttMs;
  }

  /** Drops the link for good (deregistered, or server shutdown). */
  close(reason: string): void {
    if (this.rttTimer) clearInterval(this.rttTimer);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.mux.resetAll(RESET_CODE.shutdown, reason);
    this.mux.dispose();
    this.socket?.disconnect(true);
    this.socket = undefined;
  }
}

/** A Buffer view of the bytes (no copy): the msgpack encoder sends Buffers as binary. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
