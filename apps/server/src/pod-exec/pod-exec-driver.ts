import type { ClusterGateway, ExecChannel, ExecResult } from '@periscope/cluster-ops';
import { newRid, TERMINAL_ERROR } from '@periscope/protocol';

import type { AuditLog } from '../audit/audit-log';
import { redactArgv } from '../cluster-shell/argv-redaction';
import type { AuthSettings } from '../config/auth-file';
import { impersonationFor } from '../clusters/impersonation';
import {
  connectionLost,
  endedByFields,
  type SessionDriver,
  type SessionEnd,
  type SessionError,
} from '../terminal/terminal-session';
import type { ExecAdmitted } from './pod-exec-admission.service';

const statusOf = (err: unknown): number | undefined => {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' ? s : undefined;
};

/**
 * The pod-exec part of a terminal session: exec into the pod as the human (impersonation per
 * authorization mode, the session id as an audit extra), resolve the default container when none
 * was named, tell "no shell in this container" and "RBAC says no" apart from other failures,
 * and audit the close.
 */
export class PodExecDriver implements SessionDriver {
  private container: string | undefined;
  /** the request id of each apiserver call (sent as Audit-ID, listed in exec_close) */
  private readonly requestIds: Partial<Record<'resolve' | 'attach', string>> = {};

  constructor(
    private readonly a: ExecAdmitted,
    private readonly gateway: ClusterGateway,
    private readonly authz: AuthSettings['authorization'],
    private readonly audit: AuditLog,
    /** a session taken over from a lost replica: the fields of its open record, for its close */
    private readonly openFields?: Record<string, unknown>,
  ) {
    this.container = a.container;
  }

  async start(io: Parameters<SessionDriver['start']>[0]): Promise<ExecChannel> {
    const { a } = this;
    const impersonate = impersonationFor(a.principal, this.authz, a.sessionId);
    if (this.container === undefined) {
      io.status('resolving', `finding the default container of ${a.namespace}/${a.pod}`);
      const pods = await this.gateway.listPods(
        {
          namespace: a.namespace,
          name: a.pod,
          limit: 1,
          ...(impersonate ? { impersonate } : {}),
        },
        { requestId: (this.requestIds.resolve = newRid()) },
      );
      // Never another pod's container: an agent that predates `name` answers the first pod of
      // the namespace instead.
      const pod = pods.find((p) => p.namespace === a.namespace && p.name === a.pod);
      if (!pod && pods.length > 0)
        throw Object.assign(
          new Error(
            `the agent of cluster ${a.cluster} cannot look up the default container of ${a.namespace}/${a.pod} (it predates pod lookup by name); name the container, or upgrade the agent`,
          ),
          { status: 400 },
        );
      if (!pod) throw Object.assign(new Error(`pod ${a.namespace}/${a.pod} not found`), { status: 404 });
      this.container = pod.defaultContainer ?? pod.containers[0];
      if (this.container === undefined) throw new Error(`pod ${a.namespace}/${a.pod} has no containers`);
    }
    io.status('attaching', `exec into ${a.namespace}/${a.pod}/${this.container}`);
    const { cols, rows } = io.size();
    return this.gateway.openExec(
      {
        sessionId: a.sessionId,
        namespace: a.namespace,
        pod: a.pod,
        container: this.container,
        command: a.command,
        tty: a.tty,
        stdin: true,
        ...(a.tty ? { cols, rows } : {}),
        ...(impersonate ? { impersonate } : {}),
        auditId: (this.requestIds.attach = newRid()),
      },
      io.handlers,
    );
  }

  classifyExit(
    r: ExecResult,
    stats: { bytesIn: number; bytesOut: number; runMs: number },
  ): { reason: string; exitCode: number | null; error?: SessionError } {
    const quietAndQuick = stats.bytesIn === 0 && stats.bytesOut === 0 && stats.runMs < 1500;
    const notFound = /executable file not found|no such file or directory/i.test(r.message ?? '');
    if ((r.exitCode === 127 && quietAndQuick) || (r.exitCode !== 0 && notFound && stats.bytesIn === 0)) {
      return {
        reason: 'no_shell',
        exitCode: r.exitCode,
        error: {
          code: TERMINAL_ERROR.noShell,
          message:
            'this container has no shell on its PATH (distroless or scratch image); pick another container, or debug it with an ephemeral container (kubectl debug)',
          retryable: false,
        },
      };
    }
    return connectionLost(r) ?? { reason: 'exit', exitCode: r.exitCode };
  }

  classifyStartError(err: unknown): { reason: string; error: SessionError } {
    const message = (err as Error).message;
    const status = statusOf(err);
    if (status === 403 || /forbidden/i.test(message)) {
      return {
        reason: 'forbidden',
        error: {
          code: TERMINAL_ERROR.forbidden,
          message: `your role does not allow exec into ${this.a.namespace}/${this.a.pod} (tier ${this.a.principal.tier ?? 'none'}; needs pods/exec in that namespace). Ask a cluster admin, or use a tier that has it. Cluster said: ${message}`,
          retryable: false,
        },
      };
    }
    return {
      reason: status === 404 ? 'not_found' : 'exec_failed',
      error: { code: TERMINAL_ERROR.execFailed, message, retryable: false },
    };
  }

  /** Gives the slot back and writes the one close (a no-op when another replica wrote it first). */
  async finish(end: SessionEnd): Promise<void> {
    const { a } = this;
    a.release();
    await this.audit.writeOnce({
      verb: 'exec_close',
      actor: a.subject,
      cluster: a.cluster,
      sessionId: a.sessionId,
      body: {
        ...(this.openFields ?? execAuditFields(a, this.container)),
        duration_ms: end.durationMs,
        exit_code: end.exitCode,
        bytes_in: end.bytesIn,
        bytes_out: end.bytesOut,
        close_reason: end.reason,
        ...endedByFields(end),
        ...end.tapFields,
        request_ids: { ...this.requestIds },
      },
    });
  }
}

/**
 * The fields exec_open and exec_close share. Never stdin: only byte counts. The command's secret
 * values are redacted as the cluster shell's command log is (`***`, marked `command_redacted`).
 */
export function execAuditFields(a: ExecAdmitted, container: string | undefined): Record<string, unknown> {
  const command = redactArgv(a.command);
  return {
    session_id: a.sessionId,
    actor: a.subject,
    tier: a.principal.tier ?? null,
    cluster: a.cluster,
    namespace: a.namespace,
    pod: a.pod,
    container: container ?? null,
    command: command.argv,
    ...(command.redacted ? { command_redacted: true } : {}),
    tty: a.tty,
  };
}
