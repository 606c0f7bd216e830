import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import { Inject, Injectable } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';

import { DENIED_VERB, DeniedOpens } from '../audit/denied-opens';
import { AuthService } from '../auth/auth.service';
import type { Principal } from '../auth/session-store';
import { CapReservations } from '../shared-state/cap-slots';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ExecSettings, ServerConfig } from '../config/server-config';
import { localSlotTransfer, ticketStore } from '../terminal/redis-tickets';
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
 * cluster overrides them; the slot is reserved atomically). Whether the person may exec into that
 * pod is otherwise the cluster's RBAC decision, made as them.
 */
@Injectable()
export class PodExecAdmission {
  readonly caps: CapReservations;
  /** in memory, or in Redis: a ticket issued by one replica opens the socket on any */
  readonly tickets: TicketStore<ExecAdmitted & { scope: string }>;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly auth: AuthService,
    private readonly registry: ClusterRegistry,
    private readonly denied: DeniedOpens,
    shared: SharedState,
  ) {
    this.caps = new CapReservations(config.exec.maxSessionsPerUser, config.exec.maxSessionsTotal);
    // Pod-exec caps are each replica's own: a ticket redeemed on another replica takes a slot there.
    this.tickets = ticketStore(
      shared,
      'pod_exec',
      localSlotTransfer(
        () => this.caps,
        (t) => ({ perUser: t.settings.maxSessionsPerUser, perCluster: t.settings.maxSessionsTotal }),
      ),
    );
  }

  /**
   * {@link check}; a refusal is audited (`exec_denied`, bounded, without the command) before it
   * is thrown.
   */
  admit(
    req: IncomingMessage,
    target: { cluster: string; namespace: string; pod: string; container: string | undefined },
    command: Checked<string[]>,
    tty: boolean,
  ): ExecAdmitted {
    try {
      return this.check(req, target, command, tty);
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

  private check(
    req: IncomingMessage,
    target: { cluster: string; namespace: string; pod: string; container: string | undefined },
    command: Checked<string[]>,
    tty: boolean,
  ): ExecAdmitted {
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
    const r = this.caps.reserve(principal.subject, target.cluster, sessionId, {
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
}

function withoutEnabled<T extends { enabled?: boolean }>(o: T): Omit<T, 'enabled'> {
  const { enabled: _ignored, ...rest } = o;
  return rest;
}
