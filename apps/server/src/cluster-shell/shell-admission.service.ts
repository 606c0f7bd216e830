import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import { Inject, Injectable } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';

import { DENIED_VERB, DeniedOpens } from '../audit/denied-opens';
import { AuthService } from '../auth/auth.service';
import { ClusterRegistry } from '../clusters/cluster-registry.service';
import { ShellReadinessService } from '../clusters/shell-readiness.service';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import { effectiveShellSettings, shellModeFor } from '../config/effective-shell-settings';
import type { ServerConfig } from '../config/server-config';
import { SHELL_MODES } from '../config/shell-pod-template';
import type { CapSlots } from '../shared-state/cap-slots';
import { SharedState } from '../shared-state/shared-state.service';
import { sharedSlotTransfer, ticketStore } from '../terminal/redis-tickets';
import type { TicketStore } from '../terminal/tickets';

/** The socket path of a cluster's shell; tickets are bound to it. */
export const shellSocketPath = (cluster: string): string => `/api/clusters/${cluster}/shell`;

export interface Admitted {
  sessionId: string;
  subject: string;
  tier: string;
  cluster: string;
  mode: string;
  release: () => void;
}

/**
 * The cluster-shell admission checks, in the documented order, each with its status and code
 * (a caller who is not signed in gets 401 before any of them: RequireSignInMiddleware and the
 * upgrade handler answer it, so cluster names cannot be probed):
 * unknown cluster 404 E_NOT_FOUND → feature off (server-wide, or for this cluster in the clusters
 * file) 403 E_CLUSTER_SHELL_DISABLED → authz mode not
 * tier 403 E_CLUSTER_SHELL_REQUIRES_TIER → no session 401 E_AUTH → tier not allowed 403
 * E_FORBIDDEN → another mode than the cluster's for the tier 400 → caps 429 E_CAP_USER / E_CAP_CLUSTER (the slot is reserved).
 */
@Injectable()
export class ShellAdmission {
  /** cluster-shell cap slots: this process's, or shared by the replicas through Redis */
  readonly caps: CapSlots;
  /** in memory, or in Redis: a ticket issued by one replica opens the socket on any */
  readonly tickets: TicketStore<Admitted & { scope: string }>;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly auth: AuthService,
    private readonly registry: ClusterRegistry,
    private readonly denied: DeniedOpens,
    private readonly readiness: ShellReadinessService,
    shared: SharedState,
  ) {
    this.caps = shared.capSlots(
      'cluster_shell',
      config.clusterShell.maxSessionsPerUser,
      config.clusterShell.maxSessionsTotal,
    );
    this.tickets = ticketStore(
      shared,
      'cluster_shell',
      sharedSlotTransfer(() => this.caps),
    );
  }

  /**
   * Checks the cluster's shell RBAC again when it was refused for it a few seconds ago or more
   * (shell-readiness.service.ts), so an install is seen at the next open; then {@link admit}.
   */
  async admitFresh(req: IncomingMessage, cluster: string, mode: unknown): Promise<Admitted> {
    await this.readiness.recheckRefused([cluster]);
    return this.admit(req, cluster, mode);
  }

  /** {@link check}; a refusal is audited (`cluster_shell_denied`, bounded) before it is thrown. */
  async admit(req: IncomingMessage, cluster: string, mode: unknown): Promise<Admitted> {
    try {
      return await this.check(req, cluster, mode);
    } catch (err) {
      const p = this.auth.principal(req);
      this.denied.record(err, {
        verb: DENIED_VERB.clusterShell,
        subject: p?.subject,
        tier: p?.tier,
        cluster,
      });
      throw err;
    }
  }

  private async check(req: IncomingMessage, cluster: string, mode: unknown): Promise<Admitted> {
    const entry = this.registry.entry(cluster); // 404 E_NOT_FOUND
    if (!this.config.clusterShell.enabled)
      throw new DomainError(
        ERROR_CODE.clusterShellDisabled,
        'the cluster shell is disabled on this server (PERISCOPE_CLUSTER_SHELL_ENABLED)',
      );
    // This cluster's settings: the server-wide ones under its clusters-file overrides.
    const s = effectiveShellSettings(this.config.clusterShell, entry);
    if (!s.enabled)
      throw new DomainError(
        ERROR_CODE.clusterShellDisabled,
        `the cluster shell is not available on ${cluster}: ${s.reason ?? 'disabled'}`,
      );
    if (this.config.auth.authorization.mode !== 'tier') {
      throw new DomainError(
        ERROR_CODE.clusterShellRequiresTier,
        'the cluster shell needs authorization mode tier',
      );
    }
    const principal = this.auth.require(req);
    if (principal.tier === undefined || !s.tiers.includes(principal.tier)) {
      throw new DomainError(
        ERROR_CODE.forbidden,
        `your tier (${principal.tier ?? 'none'}) may not open a cluster shell on ${cluster}; allowed: ${s.tiers.join(', ')}. Ask to join a listed tier, or add your tier to clusterShell.tiers (server-wide, or the cluster's in the clusters file)`,
      );
    }
    // The server picks the mode (cluster, tier); a client may only ask for that one.
    const m = shellModeFor(s, principal.tier);
    if (mode !== undefined && mode !== null && !(SHELL_MODES as readonly unknown[]).includes(mode))
      throw new DomainError(
        ERROR_CODE.badRequest,
        `unsupported shell mode ${JSON.stringify(mode)}; supported: ${SHELL_MODES.join(', ')} (or none: the server picks the mode for your tier)`,
      );
    // A mode that exists but is not this tier's: a policy refusal like the tier check (403,
    // audited as cluster_shell_denied), not bad input.
    if (mode !== undefined && mode !== null && mode !== m)
      throw new DomainError(
        ERROR_CODE.forbidden,
        `shell mode ${JSON.stringify(mode)} is not offered to tier ${principal.tier} on ${cluster}: its shells run in ${m} mode. Open the shell without a mode (or with mode ${m})`,
      );
    // This cluster may not offer it (agent disconnected or not enabled there): say why, to
    // signed-in users only.
    const view = this.registry.list().find((c) => c.name === cluster);
    if (view && !view.clusterShellEnabled) {
      throw new DomainError(
        ERROR_CODE.clusterShellDisabled,
        `the cluster shell is not available on ${cluster}: ${view.clusterShellReason ?? 'disabled'}`,
      );
    }
    // A direct cluster without the shell RBAC (for this tier): refused here, not at provisioning.
    const unready = this.readiness.refusal(cluster, principal.tier);
    if (unready !== undefined)
      throw new DomainError(
        ERROR_CODE.clusterShellDisabled,
        `the cluster shell is not available on ${cluster}: ${unready}`,
      );
    const sessionId = randomUUID();
    const r = await this.reserve(principal.subject, cluster, sessionId, s.maxSessionsTotal);
    if (!r.ok) {
      if (r.cap === 'user') {
        throw new DomainError(
          ERROR_CODE.capUser,
          `you already have ${r.activeSessions.length} cluster shells open (limit ${r.limit}); close one first`,
          {
            limit: r.limit,
            activeSessions: r.activeSessions.map((a) => ({
              sessionId: a.sessionId,
              cluster: a.cluster,
              startedAt: a.startedAt,
              kind: 'cluster_shell',
            })),
          },
        );
      }
      throw new DomainError(
        ERROR_CODE.capCluster,
        `${cluster} already has ${r.activeSessions} cluster shells open (limit ${r.limit}); try again later`,
        {
          limit: r.limit,
          activeSessions: r.activeSessions,
        },
      );
    }
    return {
      sessionId,
      subject: principal.subject,
      tier: principal.tier,
      cluster,
      mode: m,
      release: r.release,
    };
  }

  /** The cap slot; the shared state not answering refuses the open (503), it is not a cap. */
  private async reserve(
    subject: string,
    cluster: string,
    sessionId: string,
    perCluster: number,
  ): ReturnType<CapSlots['reserve']> {
    try {
      return await this.caps.reserve(subject, cluster, sessionId, { perCluster });
    } catch (err) {
      throw new DomainError(
        ERROR_CODE.unavailable,
        `the shared state of the server replicas (Redis) did not answer (${(err as Error).message}); try again in a moment`,
      );
    }
  }
}
