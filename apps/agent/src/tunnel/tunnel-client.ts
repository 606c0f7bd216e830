import {
  Backoff,
  DATA_EVENT,
  PROGRESS_EVENT,
  RENEW_EVENT,
  Mux,
  RESET_CODE,
  RPC_EVENT,
  RPC_OP,
  RenewReply,
  hopTrace,
  parseDto,
  traceRawSocket,
  type AgentHello,
  type MuxLimits,
  type MuxStream,
  type RenewRequest,
  type ResumeRequest,
  type ResumeResult,
  type RpcOp,
  type RpcResponse,
  type StreamOpen,
} from '@periscope/protocol';
import type { Logger } from 'pino';
import { io, type Socket } from 'socket.io-client';
import msgpackParser from 'socket.io-msgpack-parser';

import { RpcDispatcher, type OpHandlers } from './rpc-dispatcher';

export interface TunnelIdentity {
  certPem: string;
  keyPem: string;
  /** CA that issued the server's tunnel certificate */
  caPem: string;
}

export interface TunnelClientOptions {
  serverUrl: string;
  cluster: string;
  identity: () => TunnelIdentity;
  graceMs: number;
  /**
   * Output kept over all streams for a server replica that takes a session over (re-homing);
   * per stream the server announces its resume buffer. 0 or absent: nothing kept.
   */
  rehomeBufferBytes?: number;
  /** how long a stream no server knows waits to be adopted before it is reset (default 30 s) */
  orphanMs?: number;
  /** exit when no connection could be made for this long, so Kubernetes restarts the agent */
  giveUpAfterMs: number;
  onGiveUp: () => void;
  onOpen: (stream: MuxStream, open: StreamOpen) => void;
  hello: () => AgentHello;
  limits?: Partial<MuxLimits>;
  log: Logger;
  backoff?: Backoff;
}

interface ClientInternals {
  io: { engine?: { transport?: { ws?: { bufferedAmount?: number; _socket?: unknown } } } };
}

/**
 * The agent's end of the tunnel: one Socket.IO connection to the server's `/agent` namespace
 * with its client certificate, reconnecting with jittered backoff; a stream multiplexer that
 * outlives connections for a grace period; control-plane requests answered by the dispatcher.
 */
export class TunnelClient {
  readonly mux: Mux;
  readonly rpc: RpcDispatcher;
  private socket: Socket | undefined;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  /** how long streams outlive a cut; the server announces its own at every resume */
  private graceMs: number;
  private giveUpTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  connectedSince: Date | undefined;
  /** the server's maximum cluster-shell session length, as announced at the last resume */
  serverMaxSessionSeconds: number | undefined;

  constructor(private readonly options: TunnelClientOptions) {
    this.graceMs = options.graceMs;
    this.backoff = options.backoff ?? new Backoff();
    this.mux = new Mux('agent', {
      limits: {
        // Nothing kept until a server that takes streams over says so (resume).
        retainBytes: 0,
        retainTotalBytes: options.rehomeBufferBytes ?? 0,
        ...options.limits,
      },
      onOpen: options.onOpen,
      onEvent: (e) => {
        options.log.info(e, 'tunnel stream event');
      },
    });
    this.rpc = new RpcDispatcher(options.cluster, options.log);
    this.rpc.serve(this.tunnelHandlers());
  }

  /** The tunnel's own operations (the cluster operations are served beside them). */
  private tunnelHandlers(): OpHandlers<RpcOp> {
    return {
      [RPC_OP.ping]: () => Promise.resolve({ at: Date.now() }),
      [RPC_OP.hello]: () => Promise.resolve(this.options.hello()),
      [RPC_OP.recentRequest]: ({ rid }) => Promise.resolve(this.rpc.ring.find((r) => r.rid === rid) ?? null),
      [RPC_OP.resume]: (req) => Promise.resolve(this.resume(req)),
      [RPC_OP.adopt]: (req) =>
        Promise.resolve({
          streams: req.streams.map((s) => {
            const error = this.mux.adoptOrphan(s.streamId, s.sessionId, s.from);
            this.options.log.info(
              { streamId: s.streamId, sessionId: s.sessionId, from: s.from, ...(error ? { error } : {}) },
              error
                ? 'stream could not be taken over by the new server'
                : 'stream taken over by the new server',
            );
            return { streamId: s.streamId, ...(error !== undefined ? { error } : {}) };
          }),
        }),
    };
  }

  get connected(): boolean {
    return this.socket?.connected === true;
  }

  start(): void {
    this.armGiveUp();
    this.connect();
  }

  private armGiveUp(): void {
    if (this.giveUpTimer) return;
    this.giveUpTimer = setTimeout(() => {
      this.options.log.error(
        { afterMs: this.options.giveUpAfterMs },
        'no tunnel connection for too long; exiting so Kubernetes restarts the agent',
      );
      this.options.onGiveUp();
    }, this.options.giveUpAfterMs);
    this.giveUpTimer.unref();
  }

  private connect(): void {
    if (this.stopped) return;
    const id = this.options.identity();
    const socket = io(`${this.options.serverUrl.replace(/\/$/, '')}/agent`, {
      transports: ['websocket'],
      parser: msgpackParser,
      reconnection: false,
      timeout: 20_000,
      cert: id.certPem,
      key: id.keyPem,
      ca: id.caPem,
      rejectUnauthorized: true,
    });
    this.socket = socket;
    socket.on('connect', () => {
      this.connectedSince = new Date();
      this.backoff.connected();
      if (this.giveUpTimer) clearTimeout(this.giveUpTimer);
      this.giveUpTimer = undefined;
      if (this.graceTimer) clearTimeout(this.graceTimer);
      this.graceTimer = undefined;
      this.options.log.info({ server: this.options.serverUrl }, 'tunnel connected');
    });
    socket.on(RPC_EVENT, (req: unknown, ack: (r: RpcResponse) => void) => {
      if (typeof ack !== 'function') return;
      void this.rpc.handle(req, (p) => socket.emit(PROGRESS_EVENT, p)).then(ack);
    });
    socket.on(DATA_EVENT, (bytes: unknown, payload: unknown) => {
      if (!(bytes instanceof Uint8Array)) return;
      hopTrace?.mark('agent:tunnel.event', (payload as Uint8Array | undefined)?.length ?? bytes.length);
      if (payload === undefined) this.mux.receive(bytes);
      else if (payload instanceof Uint8Array) this.mux.receive(bytes, payload);
    });
    socket.on('connect_error', (err) => {
      // The transport error carries the WebSocket failure, e.g. "Unexpected server response: 401".
      const detail = (err as { description?: { message?: unknown } }).description?.message;
      if (typeof detail === 'string' && /\b401\b/.test(detail))
        this.options.log.error(
          { err: err.message, detail },
          "the server refused this agent's certificate: revoked, superseded by a newer registration or renewal, or never registered. Delete the agent's state Secret and register again with a new token (docs/agent-onboarding.md)",
        );
      else
        this.options.log.warn(
          { err: err.message, ...(typeof detail === 'string' ? { detail } : {}) },
          'tunnel connection failed',
        );
      this.scheduleReconnect(socket);
    });
    socket.on('disconnect', (reason) => {
      this.options.log.warn({ reason }, 'tunnel disconnected');
      this.connectedSince = undefined;
      this.backoff.disconnected();
      this.mux.detach();
      this.startGrace();
      this.armGiveUp();
      this.scheduleReconnect(socket);
    });
  }

  /** Server-driven resume: attach the mux to this connection and continue from the server's offsets. */
  private resume(req: ResumeRequest): ResumeResult {
    const socket = this.socket;
    const { streams, splitData, graceSeconds, maxSessionSeconds, adopts, retainBytes } = req;
    if (!socket) throw new Error('resume needs a connection');
    // The server's grace period wins (older servers do not send one: keep ours).
    if (graceSeconds !== undefined) this.graceMs = graceSeconds * 1000;
    // The server's longest session: the agent's own sweep while the server is unreachable.
    if (maxSessionSeconds !== undefined) this.serverMaxSessionSeconds = maxSessionSeconds;
    // Output kept for a take-over only for servers that take streams over (several replicas):
    // per stream their resume buffer (what a new owner may need again), within our total.
    const total = this.mux.limits.retainTotalBytes;
    this.mux.limits.retainBytes =
      adopts === true && total > 0 ? Math.min(retainBytes ?? DEFAULT_RETAIN_BYTES, total) : 0;
    const mine = this.mux.resumeState();
    if (hopTrace)
      traceRawSocket(
        'agent:tunnel.tls',
        (socket as unknown as ClientInternals).io.engine?.transport?.ws?._socket,
      );
    this.mux.attach({
      send: (frame, data) => {
        if (data === undefined) socket.emit(DATA_EVENT, asBuffer(frame));
        else socket.emit(DATA_EVENT, asBuffer(frame), asBuffer(data));
        hopTrace?.mark('agent:tunnel.emitted', data?.length ?? frame.length);
      },
      // A server that offers split DATA frames takes them; an older one gets whole frames.
      splitData: splitData === true,
      queuedBytes: () => (socket as unknown as ClientInternals).io.engine?.transport?.ws?.bufferedAmount ?? 0,
    });
    const { orphaned } = this.mux.applyResume(streams, { keepUnknown: adopts === true });
    if (orphaned.length > 0) this.expireOrphans(orphaned);
    return { streams: mine, splitData: true };
  }

  /**
   * Streams the server of this connection did not know (their replica died): it adopts them
   * (`stream.adopt`) or resets them; any still orphaned after `orphanMs` are reset here.
   */
  private expireOrphans(ids: number[]): void {
    this.options.log.info({ streams: ids }, 'streams kept for the new server to take over');
    setTimeout(() => {
      for (const id of ids) {
        const s = this.mux.stream(id);
        if (s?.orphaned === true)
          s.reset(RESET_CODE.resumeFailed, 'no server took the stream over after its replica was lost');
      }
    }, this.options.orphanMs ?? 30_000).unref();
  }

  private startGrace(): void {
    if (this.graceTimer || this.mux.size === 0) return;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      if (this.connected) return;
      this.options.log.warn(
        { streams: this.mux.size },
        'tunnel not back within the grace period; closing its streams',
      );
      this.mux.resetAll(RESET_CODE.graceExpired, 'tunnel lost for longer than the grace period');
    }, this.graceMs);
    this.graceTimer.unref();
  }

  private scheduleReconnect(socket: Socket): void {
    if (this.stopped || socket !== this.socket || this.reconnectTimer) return;
    socket.removeAllListeners();
    socket.close();
    const delay = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  /** Asks the server to sign a renewal CSR over this authenticated connection. */
  async renew(csrPem: string): Promise<string> {
    const socket = this.socket;
    if (!socket?.connected) throw new Error('tunnel not connected');
    const request: RenewRequest = { csr: csrPem };
    const answer = parseDto(
      RenewReply,
      await socket.timeout(30_000).emitWithAck(RENEW_EVENT, request),
      'renewal answer',
      'lenient',
    );
    if (!answer.ok || answer.certificate === undefined) throw new Error(answer.error ?? 'renewal refused');
    return answer.certificate;
  }

  stop(): void {
    this.stopped = true;
    for (const t of [this.reconnectTimer, this.graceTimer, this.giveUpTimer]) if (t) clearTimeout(t);
    this.mux.resetAll(RESET_CODE.shutdown, 'agent shutting down');
    this.mux.dispose();
    this.socket?.removeAllListeners();
    this.socket?.close();
  }
}

/** Output kept per stream for a take-over until the server announces its resume buffer. */
const DEFAULT_RETAIN_BYTES = 1024 * 1024;

/** A Buffer view of the bytes (no copy): the msgpack encoder sends Buffers as binary. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
