import type { ClusterGateway, ExecChannel, ExecResult } from '@periscope/cluster-ops';
import { SHELL_PATHS, shellObjectName } from '@periscope/cluster-ops';
import { parseClientFrame, SESSION_KIND, type ServerFrame } from '@periscope/protocol';
import type { Logger } from 'pino';
import type WebSocket from 'ws';

import type { AuditStore } from '../audit/audit-store';
import type { ClusterShellSettings, ExecSettings } from '../config/server-config';
import type { Admitted } from './shell-admission.service';

export interface AuditedCommand {
  timestamp: string;
  argv: string[];
  pid: number;
  exit_code: number | null;
  duration_ms: number | null;
}

/** Reads the in-pod audit file: one JSON object per line; bad lines are skipped and counted. */
export function parseCommands(content: string): { commands: AuditedCommand[]; skipped: number } {
  const commands: AuditedCommand[] = [];
  let skipped = 0;
  for (const line of content.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const v = JSON.parse(line) as Partial<AuditedCommand>;
      if (typeof v.timestamp !== 'string' || !Array.isArray(v.argv) || typeof v.pid !== 'number')
        throw new Error('shape');
      commands.push({
        timestamp: v.timestamp,
        argv: v.argv.map(String),
        pid: v.pid,
        exit_code: v.exit_code ?? null,
        duration_ms: v.duration_ms ?? null,
      });
    } catch {
      skipped++;
    }
  }
  return { commands, skipped };
}

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/**
 * One cluster-shell session on an upgraded socket: provision through the cluster's gateway with
 * progress frames, attach `periscope-shell` with a TTY, pump bytes both ways with backpressure,
 * heartbeat, idle warning and cut, hard maximum length; and always the same teardown: read the
 * in-pod audit file, delete Pod and Secret, give back the cap slot, audit the close.
 */
export class ShellSession {
  private exec: ExecChannel | undefined;
  private ended = false;
  private readonly started = Date.now();
  private lastActivity = Date.now();
  private bytesIn = 0;
  private bytesOut = 0;
  private cols = 80;
  private rows = 24;
  private warned = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private alive = true;

  constructor(
    private readonly ws: WebSocket,
    private readonly a: Admitted,
    private readonly gateway: ClusterGateway,
    private readonly shell: ClusterShellSettings,
    private readonly exec_: ExecSettings,
    private readonly audit: AuditStore,
    private readonly log: Logger,
  ) {}

  private send(frame: ServerFrame): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(frame));
  }

  async run(): Promise<void> {
    const { ws, a } = this;
    this.send({
      type: 'hello',
      sessionId: a.sessionId,
      kind: SESSION_KIND.clusterShell,
      cluster: a.cluster,
      mode: a.mode,
    });
    ws.on('pong', () => {
      this.alive = true;
    });
    this.timers.push(
      setInterval(() => {
        if (!this.alive) {
          void this.end('heartbeat_timeout', null);
          return;
        }
        this.alive = false;
        ws.ping();
      }, this.exec_.heartbeatSeconds * 1000),
      setInterval(() => {
        this.checkIdle();
      }, 1000),
      setTimeout(() => void this.end('max_duration', null), this.shell.maxSessionSeconds * 1000),
    );
    for (const t of this.timers) t.unref();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.onMessage(data, isBinary);
    });
    ws.on('close', () => void this.end('client_disconnect', null));
    ws.on('error', () => void this.end('client_error', null));

    try {
      await this.gateway.provisionShell(
        {
          sessionId: a.sessionId,
          namespace: this.shell.namespace,
          tier: a.tier,
          subject: a.subject,
          image: this.shell.image,
          imagePullPolicy: this.shell.imagePullPolicy,
          mode: a.mode,
          tokenSeconds: this.shell.maxSessionSeconds + 600,
          podStartTimeoutMs: this.shell.podStartTimeoutSeconds * 1000,
        },
        (phase, message) => {
          this.send({ type: 'status', phase, message });
        },
      );
      if (this.isEnded()) return;
      this.send({ type: 'status', phase: 'attaching', message: 'starting bash' });
      this.exec = await this.gateway.openExec(
        {
          sessionId: a.sessionId,
          namespace: this.shell.namespace,
          pod: shellObjectName(a.sessionId),
          container: 'shell',
          command: ['periscope-shell'],
          tty: true,
          stdin: true,
          cols: this.cols,
          rows: this.rows,
        },
        {
          onOutput: (_ch, bytes) => this.onOutput(bytes),
          onExit: (r: ExecResult) => {
            this.send({
              type: 'closed',
              reason: 'exit',
              ...(r.exitCode !== null ? { exitCode: r.exitCode } : {}),
            });
            void this.end('exit', r.exitCode);
          },
          onError: (message) => {
            this.send({ type: 'error', code: 'E_STREAM', message, retryable: true });
            void this.end('stream_error', null);
          },
        },
      );
      // The client may have gone while bash was starting.
      if (this.isEnded()) this.exec.close();
    } catch (err) {
      const message = (err as Error).message;
      this.log.warn(
        { sessionId: a.sessionId, cluster: a.cluster, err: message },
        'cluster shell could not start',
      );
      this.send({ type: 'error', code: 'E_PROVISION', message, retryable: false });
      await this.end('provision_failed', null);
    }
  }

  private onOutput(bytes: Uint8Array): boolean {
    this.bytesOut += bytes.length;
    this.lastActivity = Date.now();
    this.ws.send(bytes, { binary: true });
    if (this.ws.bufferedAmount < HIGH_WATER) return true;
    // The browser is not keeping up: pause the exec until its socket drains.
    const wait = setInterval(() => {
      if (this.ended || this.ws.bufferedAmount < LOW_WATER) {
        clearInterval(wait);
        this.exec?.resume();
      }
    }, 20);
    wait.unref();
    return false;
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      if (!this.exec || data.length === 0) return;
      this.bytesIn += data.length;
      this.lastActivity = Date.now();
      this.warned = false;
      this.exec.write(data, () => undefined);
      return;
    }
    const frame = parseClientFrame(data.toString('utf8'));
    if (!frame) {
      this.send({
        type: 'error',
        code: 'E_BAD_FRAME',
        message: 'unknown or malformed control frame',
        retryable: false,
      });
      return;
    }
    switch (frame.type) {
      case 'resize':
        this.cols = frame.cols;
        this.rows = frame.rows;
        this.exec?.resize(frame.cols, frame.rows);
        return;
      case 'close':
        void this.end('client_close', null);
        return;
    }
  }

  private checkIdle(): void {
    const idleMs = Date.now() - this.lastActivity;
    const limitMs = this.shell.idleSeconds * 1000;
    const warnMs = this.exec_.idleWarnSeconds * 1000;
    if (idleMs >= limitMs) {
      void this.end('idle', null);
    } else if (!this.warned && idleMs >= limitMs - warnMs) {
      this.warned = true;
      this.send({ type: 'idle_warn', secondsRemaining: Math.ceil((limitMs - idleMs) / 1000) });
    }
  }

  /** Read through a method: the flag changes while awaits are pending. */
  private isEnded(): boolean {
    return this.ended;
  }

  /** The one teardown path, whatever ended the session. */
  async end(reason: string, exitCode: number | null): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    // Say why first (the client may already be gone; then nobody reads it).
    this.send({ type: 'closed', reason, ...(exitCode !== null ? { exitCode } : {}) });
    for (const t of this.timers) clearTimeout(t);
    this.exec?.close();
    const { a } = this;
    let commands: AuditedCommand[] = [];
    let skipped = 0;
    let truncated = false;
    try {
      const file = await this.gateway.readPodFile({
        namespace: this.shell.namespace,
        pod: shellObjectName(a.sessionId),
        container: 'shell',
        path: SHELL_PATHS.auditFile,
        maxBytes: this.shell.transcriptMaxBytes,
      });
      ({ commands, skipped } = parseCommands(file.content));
      truncated = file.truncated;
    } catch {
      // Best effort: a pod that is gone has no command log; open/close are still recorded.
    }
    try {
      await this.gateway.teardownShell({ sessionId: a.sessionId, namespace: this.shell.namespace });
    } catch (err) {
      this.log.warn(
        { sessionId: a.sessionId, err: (err as Error).message },
        'teardown failed; the reaper will remove the leftovers',
      );
    }
    a.release();
    this.audit.write({
      verb: 'cluster_shell_close',
      actor: a.subject,
      cluster: a.cluster,
      sessionId: a.sessionId,
      body: {
        cluster: a.cluster,
        mode: a.mode,
        tier: a.tier,
        session_id: a.sessionId,
        duration_ms: Date.now() - this.started,
        exit_code: exitCode,
        bytes_in: this.bytesIn,
        bytes_out: this.bytesOut,
        close_reason: reason,
        commands,
        ...(skipped > 0 ? { commands_skipped: skipped } : {}),
        ...(truncated ? { commands_truncated: true } : {}),
      },
    });
    this.log.info(
      {
        sessionId: a.sessionId,
        cluster: a.cluster,
        reason,
        exitCode,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
      },
      'cluster shell closed',
    );
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(1000, reason);
  }
}
