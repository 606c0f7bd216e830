import type { ClusterGateway, ExecChannel, ExecResult } from '@periscope/cluster-ops';
import { SHELL_PATHS, shellObjectName } from '@periscope/cluster-ops';
import type { Logger } from 'pino';

import type { AuditStore } from '../audit/audit-store';
import type { ClusterShellSettings } from '../config/server-config';
import {
  connectionLost,
  type SessionDriver,
  type SessionEnd,
  type SessionError,
} from '../terminal/terminal-session';
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

/**
 * The cluster-shell part of a terminal session: provision Secret, token and Pod through the
 * cluster's gateway with progress, attach `periscope-shell` with a TTY; at the end read the
 * in-pod command log, delete Pod and Secret, give back the cap slot and audit the close.
 */
export class ShellDriver implements SessionDriver {
  constructor(
    private readonly a: Admitted,
    private readonly gateway: ClusterGateway,
    private readonly shell: ClusterShellSettings,
    private readonly audit: AuditStore,
    private readonly log: Logger,
  ) {}

  async start(io: Parameters<SessionDriver['start']>[0]): Promise<ExecChannel> {
    const { a } = this;
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
        io.status(phase, message);
      },
    );
    io.status('attaching', 'starting bash');
    const { cols, rows } = io.size();
    return this.gateway.openExec(
      {
        sessionId: a.sessionId,
        namespace: this.shell.namespace,
        pod: shellObjectName(a.sessionId),
        container: 'shell',
        command: ['periscope-shell'],
        tty: true,
        stdin: true,
        cols,
        rows,
      },
      io.handlers,
    );
  }

  classifyExit(r: ExecResult): { reason: string; exitCode: number | null; error?: SessionError } {
    return connectionLost(r) ?? { reason: 'exit', exitCode: r.exitCode };
  }

  classifyStartError(err: unknown): { reason: string; error: SessionError } {
    return {
      reason: 'provision_failed',
      error: { code: 'E_PROVISION', message: (err as Error).message, retryable: false },
    };
  }

  async finish(end: SessionEnd): Promise<void> {
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
        duration_ms: end.durationMs,
        exit_code: end.exitCode,
        bytes_in: end.bytesIn,
        bytes_out: end.bytesOut,
        close_reason: end.reason,
        commands,
        ...(skipped > 0 ? { commands_skipped: skipped } : {}),
        ...(truncated ? { commands_truncated: true } : {}),
      },
    });
  }
}
