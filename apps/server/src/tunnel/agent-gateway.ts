import type {
  CallOptions,
  CaSource,
  ClusterGateway,
  ExecChannel,
  ExecChannelHandlers,
  ExecTarget,
  PhaseListener,
} from '@periscope/cluster-ops';
import { READ_FILE_TIMEOUT_MS, isProvisionPhase } from '@periscope/cluster-ops';
import {
  CHANNEL,
  CLUSTER_OP,
  RESET_CODE,
  newRid,
  RPC_OP,
  type MuxStream,
  type PodListRequest,
  type PodReadFileRequest,
  type PodSummary,
  type RequestRecord,
  type ShellProvisionRequest,
  type ShellReapRequest,
  type ShellTeardownRequest,
  type StreamHandlers,
  type StreamResumeState,
} from '@periscope/protocol';

import type { AgentLink } from './agent-link';

/**
 * The caller's request id becomes the tunnel request's: the agent sends it as the `Audit-ID` of
 * the operation's apiserver calls and both ends keep it in their diagnostics ring.
 */
function rid(opts: CallOptions): { rid?: string } {
  return opts.requestId !== undefined ? { rid: opts.requestId } : {};
}

/**
 * Reaches an agent-backed cluster: the same operations as a direct cluster, sent over the
 * agent's tunnel. Exec becomes a flow-controlled tunnel stream: output is consumed (credit
 * granted) only when the caller's sink accepted it, and stdin reports a full stream so the
 * caller pauses its source.
 */
export class AgentGateway implements ClusterGateway {
  constructor(
    private readonly link: () => AgentLink | undefined,
    private readonly cluster: string,
  ) {}

  private live(): AgentLink {
    const l = this.link();
    if (!l) throw new Error(`agent for cluster ${this.cluster} has never connected`);
    return l;
  }

  clusterCa(): Promise<{ caPem: string; server: string; source: CaSource }> {
    return this.live().request(CLUSTER_OP.ca, {}, { timeoutMs: 15_000 });
  }

  async provisionShell(
    req: ShellProvisionRequest,
    onPhase?: PhaseListener,
    opts: CallOptions = {},
  ): Promise<void> {
    await this.live().request(CLUSTER_OP.provision, req, {
      timeoutMs: req.podStartTimeoutMs + 30_000,
      ...rid(opts),
      ...(onPhase
        ? {
            onProgress: (phase: string, message: string) => {
              if (isProvisionPhase(phase)) onPhase(phase, message);
            },
          }
        : {}),
    });
  }

  async teardownShell(req: ShellTeardownRequest, opts: CallOptions = {}): Promise<void> {
    await this.live().request(CLUSTER_OP.teardown, req, { timeoutMs: 30_000, ...rid(opts) });
  }

  async reapShells(req: ShellReapRequest, opts: CallOptions = {}): Promise<string[]> {
    return (await this.live().request(CLUSTER_OP.reap, req, { timeoutMs: 60_000, ...rid(opts) })).removed;
  }

  async listPods(req: PodListRequest, opts: CallOptions = {}): Promise<PodSummary[]> {
    return (await this.live().request(CLUSTER_OP.listPods, req, { timeoutMs: 30_000, ...rid(opts) })).pods;
  }

  /** The agent's read has its own deadline (`timeoutMs`); the request allows for the tunnel on top. */
  readPodFile(
    req: PodReadFileRequest,
    opts: CallOptions = {},
  ): Promise<{ content: string; truncated: boolean }> {
    const timeoutMs = (req.timeoutMs ?? READ_FILE_TIMEOUT_MS) + 5_000;
    return this.live().request(CLUSTER_OP.readFile, req, { timeoutMs, ...rid(opts) });
  }

  openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel> {
    const link = this.live();
    const sessionId = target.sessionId;
    if (sessionId === undefined)
      return Promise.reject(new Error('an exec over the tunnel needs a session id'));
    // The stream's request id: the agent sends it as the apiserver's Audit-ID, and both ends keep
    // it in their diagnostics ring, so one id joins the session, the tunnel and the cluster's log.
    const rid = target.auditId ?? newRid();
    const record: RequestRecord = {
      rid,
      cluster: this.cluster,
      op: 'exec',
      startedAt: new Date().toISOString(),
      outcome: 'pending',
    };
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const wired = wireExecStream(handlers, record, started, {
        opened: (ch) => {
          resolve(ch);
        },
        failed: (reason) => {
          reject(new Error(reason));
        },
      });
      const stream = link.mux.open(
        {
          sessionId,
          rid,
          namespace: target.namespace,
          pod: target.pod,
          container: target.container,
          command: target.command,
          tty: target.tty,
          stdin: target.stdin,
          ...(target.cols !== undefined && target.rows !== undefined
            ? { cols: target.cols, rows: target.rows }
            : {}),
          ...(target.impersonate ? { impersonate: target.impersonate } : {}),
        },
        wired.handlers,
      );
      wired.bind(stream);
      record.streamId = stream.id;
      link.ring.push(record);
    });
  }

  /**
   * Takes over a stream another replica opened on this agent (it died; the agent kept the
   * stream): stdout again from `outFrom`. Resolves with the exec channel once the agent agreed,
   * rejects (the stream reset) when it did not, within the request's deadline.
   */
  async adoptExec(
    orphan: StreamResumeState,
    outFrom: number,
    handlers: ExecChannelHandlers,
  ): Promise<TunnelExecChannel> {
    const link = this.live();
    const record: RequestRecord = {
      rid: newRid(),
      cluster: this.cluster,
      op: 'exec.adopt',
      streamId: orphan.streamId,
      startedAt: new Date().toISOString(),
      outcome: 'pending',
    };
    const started = performance.now();
    let channel: TunnelExecChannel | undefined;
    let failed: string | undefined;
    const wired = wireExecStream(handlers, record, started, {
      opened: (ch) => {
        channel = ch;
      },
      failed: (reason) => {
        failed = reason;
      },
    });
    const stream = link.mux.adoptStream(orphan, outFrom, wired.handlers);
    wired.bind(stream);
    // Open already (on the agent): an exit arriving with the replayed output is the command's end.
    wired.markOpened();
    link.ring.push(record);
    try {
      const reply = await link.request(
        RPC_OP.adopt,
        { streams: [{ streamId: orphan.streamId, sessionId: orphan.sessionId, from: outFrom }] },
        { timeoutMs: 10_000, waitForConnection: false },
      );
      const error = reply.streams.find((s) => s.streamId === orphan.streamId)?.error;
      if (error !== undefined) throw new Error(error);
    } catch (err) {
      link.mux.forget(stream, 'not taken over');
      throw err;
    }
    if (failed !== undefined) throw new Error(failed);
    return channel ?? wired.channel('adopted');
  }
}

/** An exec over the tunnel: which stream carries it (re-homing records it). */
export interface TunnelExecChannel extends ExecChannel {
  tunnelStreamId: number;
  /** drops the stream here only, without a word to the agent (another replica holds it now) */
  abandon(reason: string): void;
}

export function isTunnelExec(exec: ExecChannel | undefined): exec is TunnelExecChannel {
  return exec !== undefined && typeof (exec as Partial<TunnelExecChannel>).tunnelStreamId === 'number';
}

/**
 * The stream handlers and the exec channel of one exec over the tunnel: output consumed (credit
 * granted) only when the caller's sink accepted it, stdin reporting a full stream.
 */
function wireExecStream(
  handlers: ExecChannelHandlers,
  record: RequestRecord,
  started: number,
  done: { opened: (ch: TunnelExecChannel) => void; failed: (reason: string) => void },
): {
  handlers: StreamHandlers;
  bind: (s: MuxStream) => void;
  channel: (protocol: string) => TunnelExecChannel;
  markOpened: () => void;
} {
  let opened = false;
  // After the exit (or our own close) the stream's end is expected, not an error.
  let finished = false;
  const held = { [CHANNEL.stdout]: 0, [CHANNEL.stderr]: 0 } as Record<number, number>;
  let paused = false;
  let stream: MuxStream | undefined;
  const channel = (protocol: string): TunnelExecChannel => ({
    protocol,
    tunnelStreamId: stream?.id ?? -1,
    // Stdin credit comes back from the agent once its exec socket took the bytes; past one
    // window queued here the stream is full and the caller pauses its source.
    write: (b) => stream?.write(CHANNEL.stdin, b) ?? false,
    end: () => {
      stream?.end(CHANNEL.stdin);
    },
    resize: (c, r) => {
      stream?.resize(c, r);
    },
    resume: () => {
      if (!paused) return;
      paused = false;
      for (const ch of [CHANNEL.stdout, CHANNEL.stderr]) {
        const n = held[ch] ?? 0;
        held[ch] = 0;
        if (n > 0) stream?.consumed(ch, n);
      }
    },
    close: () => {
      finished = true;
      stream?.reset(RESET_CODE.closedByPeer, 'closed by the server');
    },
    abandon: (reason: string) => {
      finished = true;
      stream?.forget(reason);
    },
  });
  const streamHandlers: StreamHandlers = {
    onOpenOk: (info) => {
      opened = true;
      done.opened(channel(typeof info['protocol'] === 'string' ? info['protocol'] : ''));
    },
    onData: (ch, bytes) => {
      const accepted = handlers.onOutput(ch === CHANNEL.stderr ? 2 : 1, bytes);
      if (accepted && !paused) stream?.consumed(ch, bytes.length);
      else {
        // Keep the credit until the consumer resumes: the agent then pauses the exec.
        paused = true;
        held[ch] = (held[ch] ?? 0) + bytes.length;
      }
    },
    onExit: (r) => {
      finished = true;
      handlers.onExit(r);
    },
    onWritable: () => {
      handlers.onWritable?.();
    },
    onClose: (_code, reason) => {
      record.durationMs = Math.round(performance.now() - started);
      record.bytesIn = stream?.bytesIn ?? 0;
      record.bytesOut = stream?.bytesOut ?? 0;
      record.outcome = opened && finished ? 'ok' : 'error';
      if (record.outcome === 'error') record.error = reason;
      if (!opened) done.failed(reason);
      else if (!finished) handlers.onError(reason);
    },
  };
  return {
    handlers: streamHandlers,
    bind: (s) => {
      stream = s;
    },
    channel,
    markOpened: () => {
      opened = true;
    },
  };
}
