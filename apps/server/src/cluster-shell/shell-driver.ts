import type { ClusterGateway, ExecChannel, ExecResult } from '@periscope/cluster-ops';
import { SHELL_PATHS, shellObjectName } from '@periscope/cluster-ops';
import { newRid, TERMINAL_ERROR } from '@periscope/protocol';
import type { Logger } from 'pino';

import type { AuditLog } from '../audit/audit-log';
import { settleWithin, withDeadline } from '../common/deadline';
import type { ClusterShellSettings } from '../config/server-config';
import {
  connectionLost,
  endedByFields,
  type SessionDriver,
  type SessionEnd,
  type SessionError,
} from '../terminal/terminal-session';
import { commandLogFields, EMPTY_COMMAND_LOG, parseCommandLog } from './command-log';
import { podTemplateFields } from '../config/effective-shell-settings';
import type { Admitted } from './shell-admission.service';

/**
 * Deadlines of the teardown steps, each on its own, so that a step that hangs (a command log the
 * operator replaced with a FIFO, a dead pod, an apiserver that does not answer) never holds up
 * the next: the objects are deleted, the slot is released and the close is written regardless.
 */
export interface TeardownDeadlines {
  /** the in-pod read of the command log, exec included (the gateway closes the exec after it) */
  readLogMs: number;
  /** added to readLogMs for the caller's own deadline (the tunnel to an agent) */
  readLogSlackMs: number;
  /** deleting the session's Pod, Secret and other objects */
  deleteMs: number;
  /** a provision still running at the end is waited for up to the pod start timeout plus this */
  provisionSlackMs: number;
}

export const TEARDOWN_DEADLINES: TeardownDeadlines = {
  readLogMs: 10_000,
  readLogSlackMs: 5_000,
  deleteMs: 20_000,
  provisionSlackMs: 30_000,
};

/**
 * The cluster-shell part of a terminal session: provision Secret, token and Pod through the
 * cluster's gateway with progress, attach `periscope-shell` with a TTY; at the end read the
 * in-pod command log, delete Pod and Secret, give back the cap slot and audit the close.
 */
export class ShellDriver implements SessionDriver {
  /** the provision, once started: an end during it waits for it, then tears everything down */
  private provisioning: Promise<void> | undefined;
  private finishing = false;
  private readonly deadlines: TeardownDeadlines;
  /**
   * The request id of each cluster operation of this session (the apiserver's `Audit-ID` of its
   * calls, and over an agent the tunnel request's id), kept for the close record.
   */
  private readonly requestIds: Partial<Record<'provision' | 'attach' | 'read_log' | 'teardown', string>> = {};
  /** the operation `start` was running when it failed */
  private starting: 'provision' | 'attach' = 'provision';

  constructor(
    private readonly a: Admitted,
    private readonly gateway: ClusterGateway,
    private readonly shell: ClusterShellSettings,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    deadlines: Partial<TeardownDeadlines> = {},
  ) {
    this.deadlines = { ...TEARDOWN_DEADLINES, ...deadlines };
  }

  async start(io: Parameters<SessionDriver['start']>[0]): Promise<ExecChannel> {
    const { a } = this;
    const provisionRid = (this.requestIds.provision = newRid());
    this.provisioning = this.gateway.provisionShell(
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
        ...podTemplateFields(this.shell.pod),
      },
      (phase, message) => {
        io.status(phase, message);
      },
      { requestId: provisionRid },
    );
    await this.provisioning;
    // Closed while provisioning: finish() is waiting for us and tears down what we made.
    if (this.finishing) throw new Error('the session ended while its pod was being provisioned');
    io.status('attaching', 'starting bash');
    const { cols, rows } = io.size();
    this.starting = 'attach';
    return this.gateway.openExec(
      {
        auditId: (this.requestIds.attach = newRid()),
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

  /** The message names the failed operation's request id: the cluster's audit log has it as `auditID`. */
  classifyStartError(err: unknown): { reason: string; error: SessionError } {
    const rid = this.requestIds[this.starting];
    const message = `${(err as Error).message}${rid !== undefined ? ` (request id ${rid})` : ''}`;
    return {
      reason: 'provision_failed',
      error: { code: TERMINAL_ERROR.provision, message, retryable: false },
    };
  }

  /**
   * Teardown, every step with its own deadline: wait for a provision still running (bounded),
   * read the command log, delete the objects, release the cap slot, write the one close record.
   * Never throws and always ends.
   */
  async finish(end: SessionEnd): Promise<void> {
    const { a } = this;
    const d = this.deadlines;
    const ns = this.shell.namespace;
    this.finishing = true;
    let released = false;
    try {
      let provisioned: 'ok' | 'failed' | 'timeout' | 'none' = 'none';
      if (this.provisioning) {
        provisioned = await settleWithin(
          this.provisioning,
          this.shell.podStartTimeoutSeconds * 1000 + d.provisionSlackMs,
        );
      }
      let commandLog = EMPTY_COMMAND_LOG;
      let unavailable: string | undefined;
      if (provisioned === 'ok') {
        try {
          const file = await withDeadline(
            this.gateway.readPodFile(
              {
                namespace: ns,
                pod: shellObjectName(a.sessionId),
                container: 'shell',
                path: SHELL_PATHS.auditFile,
                maxBytes: this.shell.transcriptMaxBytes,
                timeoutMs: d.readLogMs,
              },
              { requestId: (this.requestIds.read_log = newRid()) },
            ),
            d.readLogMs + d.readLogSlackMs,
            'reading the command log',
          );
          const closedAt = Date.now();
          commandLog = parseCommandLog(file.content, {
            fileTruncated: file.truncated,
            window: { from: closedAt - end.durationMs, to: closedAt },
          });
        } catch (err) {
          // A pod that is gone has no command log, and one the operator tampered with is not
          // read; open and close are recorded either way, and the close says why.
          unavailable = (err as Error).message;
          this.log.warn(
            { sessionId: a.sessionId, err: unavailable, rid: this.requestIds.read_log },
            'command log not read',
          );
        }
      }
      await this.deleteObjects();
      if (provisioned === 'timeout') {
        // Still provisioning after the wait: delete again once it is done (or has failed).
        void this.provisioning?.then(
          () => this.deleteObjects(),
          () => this.deleteObjects(),
        );
      }
      released = true;
      a.release();
      const written = await this.audit.writeOnce({
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
          ...endedByFields(end),
          ...commandLogFields(commandLog),
          ...end.tapFields,
          ...(unavailable !== undefined ? { commands_unavailable: unavailable } : {}),
          request_ids: { ...this.requestIds },
        },
      });
      // Another replica found the session without a live owner first (replica_lost).
      if (written === undefined)
        this.log.warn(
          { sessionId: a.sessionId },
          'the session already had its close record; this one was not written',
        );
    } catch (err) {
      this.log.error({ sessionId: a.sessionId, err: (err as Error).message }, 'cluster shell close failed');
    } finally {
      if (!released) a.release(); // whatever failed above, the slot comes back
    }
  }

  /** Deletes Pod, Secret and the session's other objects, within the deadline; never throws. */
  private async deleteObjects(): Promise<void> {
    const { a } = this;
    const rid = (this.requestIds.teardown = newRid());
    try {
      await withDeadline(
        this.gateway.teardownShell(
          { sessionId: a.sessionId, namespace: this.shell.namespace },
          { requestId: rid },
        ),
        this.deadlines.deleteMs,
        'deleting the session objects',
      );
    } catch (err) {
      this.log.warn(
        { sessionId: a.sessionId, err: (err as Error).message, rid },
        'teardown failed; the reaper will remove the leftovers',
      );
    }
  }
}
