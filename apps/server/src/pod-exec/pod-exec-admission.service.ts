import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import { Inject, Injectable } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';

import { DENIED_VERB, DeniedOpens } from '../audit/denied-opens';
import { AuthService } from '../auth/auth.service';
import type { Principal } from '../auth/session-store';
import type { CapSlots, ReserveOptions } from '../shared-state/cap-slots';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ExecSettings, ServerConfig } from '../config/server-config';
import { sharedSlotTransfer, ticketStore } from '../terminal/redis-tickets';
import { SharedState } from '../shared-state/shared-state.service';
import type { TicketStore } from '../terminal/tickets';
import { checkNames, type Checked } from './exec-request';
import { mayEnterProtected, protectedNamespaceError } from './protected-namespaces';

export interface ExecAdmitted {
  sessionId: string;
  principal: Principal;
  subject: string;
  cluster: string;
  namespace: string;
  pod: string;
  /** resolved later from the pod when not given */
  container: string | undefined;
  command: string[];
  tty: boolean;
  settings: ExecSettings;
  release: () => void;
}

/** The socket path of one pod's exec; tickets are bound to it. */
export const execSocketPath = (cluster: string, namespace: string, pod: string): string =>
  `/api/clusters/${cluster}/pods/${namespace}/${pod}/exec`;

/**
 * Pod-exec admission, in order: unknown cluster 404 → no session 401 → bad names or command 400 →
 * exec disabled for the cluster 403 E_EXEC_DISABLED → one of Periscope's own namespaces and not
 * the admin tier 403 E_PROTECTED_NAMESPACE → caps 429 E_CAP_USER / E_CAP_CLUSTER (5/50 unless the
 * cluster overrides them; the slot is reserved atomically, across every replica with Redis;
 * Redis not answering refuses the open with 503 E_UNAVAILABLE). Whether the person may exec into that
 * pod is otherwise the cluster's RBAC decision, made as them.
 */
@Injectable()
export class PodExecAdmission {
  /** pod-exec cap slots: this process's, or shared by the replicas through Redis */
  readonly caps: CapSlots;
  /** in memory, or in Redis: a ticket issued by one replica opens the socket on any */
  readonly tickets: TicketStore<ExecAdmitted & { scope: string }>;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly auth: AuthService,
    private readonly registry: ClusterRegistry,
    private readonly denied: DeniedOpens,
    shared: SharedState,
  ) {
    // As the cluster shell's: in Redis the caps hold across replicas (a lease per slot, renewed
    // while the session lives); the slot travels with the ticket to the replica that redeems it.
    this.caps = shared.capSlots('pod_exec', config.exec.maxSessionsPerUser, config.exec.maxSessionsTotal);
    this.tickets = ticketStore(
      shared,
      'pod_exec',
      sharedSlotTransfer(() => this.caps),
    );
  }

  /**
   * {@link check}; a refusal is audited (`exec_denied`, bounded, without the command) before it
   * is thrown.
   */
  async admit(
    req: IncomingMessage,
    target: { cluster: string; namespace: string; pod: string; container: string | undefined },
    command: Checked<string[]>,
    tty: boolean,
  ): Promise<ExecAdmitted> {
    try {
      return await this.check(req, target, command, tty);
    } catch (err) {
      const p = this.auth.principal(req);
      const { cluster, ...where } = target;
      this.denied.record(err, {
        verb: DENIED_VERB.podExec,
        subject: p?.subject,
        tier: p?.tier,
        cluster,
        target: where,
      });
      throw err;
    }
  }

  private async check(
    req: IncomingMessage,
    target: { cluster: string; namespace: string; pod: string; container: string | undefined },
    command: Checked<string[]>,
    tty: boolean,
  ): Promise<ExecAdmitted> {
    const entry = this.registry.entry(target.cluster); // 404 E_NOT_FOUND
    const principal = this.auth.require(req);
    const bad = checkNames(target.namespace, target.pod, target.container);
    if (bad !== undefined) throw new DomainError(ERROR_CODE.badRequest, bad);
    if (!command.ok) throw new DomainError(ERROR_CODE.badRequest, command.message);
    if (entry.exec.enabled === false)
      throw new DomainError(
        ERROR_CODE.execDisabled,
        `pod exec is turned off for cluster ${target.cluster} (exec.enabled: false in the clusters file)`,
      );
    // Refused here, before the apiserver is asked; the charts' admission policy refuses it there too.
    if (
      !mayEnterProtected(principal) &&
      this.registry.protectedNamespaces(target.cluster).includes(target.namespace)
    )
      throw protectedNamespaceError(principal, target.cluster, target.namespace, 'exec into its pods');
    const settings: ExecSettings = { ...this.config.exec, ...withoutEnabled(entry.exec) };
    const sessionId = randomUUID();
    const r = await this.reserve(principal.subject, target.cluster, sessionId, {
      perUser: settings.maxSessionsPerUser,
      perCluster: settings.maxSessionsTotal,
      detail: {
        namespace: target.namespace,
        pod: target.pod,
        ...(target.container !== undefined ? { container: target.container } : {}),
      },
    });
    if (!r.ok) {
      if (r.cap === 'user')
        throw new DomainError(
          ERROR_CODE.capUser,
          `you already have ${r.activeSessions.length} pod shells open (limit ${r.limit}); close one to open another`,
          {
            limit: r.limit,
            activeSessions: r.activeSessions.map((a) => ({
              sessionId: a.sessionId,
              cluster: a.cluster,
              startedAt: a.startedAt,
              kind: 'pod_exec',
              ...a.detail,
            })),
          },
        );
      throw new DomainError(
        ERROR_CODE.capCluster,
        `${target.cluster} already has ${r.activeSessions} pod shells open (limit ${r.limit}); try again later`,
        { limit: r.limit, activeSessions: r.activeSessions },
      );
    }
    return {
      sessionId,
      principal,
      subject: principal.subject,
      cluster: target.cluster,
      namespace: target.namespace,
      pod: target.pod,
      container: target.container,
      command: command.value,
      tty,
      settings,
      release: r.release,
    };
  }

  /** The cap slot; the shared state not answering refuses the open (503), it is not a cap. */
  private async reserve(
    subject: string,
    cluster: string,
    sessionId: string,
    opts: ReserveOptions,
  ): ReturnType<CapSlots['reserve']> {
    try {
      return await this.caps.reserve(subject, cluster, sessionId, opts);
    } catch (err) {
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the shared state of the server replicas (Redis) did not answer (${(err as Error).message}); try again in a moment`,
        { reason: 'shared_state_unavailable' },
      );
    }
  }
}

function withoutEnabled<T extends { enabled?: boolean }>(o: T): Omit<T, 'enabled'> {
  const { enabled: _ignored, ...rest } = o;
  return rest;
}
