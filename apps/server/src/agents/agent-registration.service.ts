import { Inject, Injectable, Logger } from '@nestjs/common';
import { ERROR_CODE } from '@periscope/protocol';

import { AuditLog } from '../audit/audit-log';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { CsrError } from './agent-ca';
import { AgentCertificates } from './agent-certificates.service';
import { registrationTokenStore } from './redis-registration-tokens';
import { SharedState } from '../shared-state/shared-state.service';
import type { RegistrationTokenStore } from './registration-tokens';

export const REGISTRATION_REJECTED = 'registration rejected';

/** Agent registration: single-use tokens, redeeming one for a certificate, and revocation. */
@Injectable()
export class AgentRegistration {
  private readonly log = new Logger('agents');
  /** in memory, or in Redis: minted through one replica, redeemed once through any */
  readonly tokens: RegistrationTokenStore;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly certs: AgentCertificates,
    private readonly audit: AuditLog,
    shared: SharedState,
  ) {
    this.tokens = registrationTokenStore(shared);
  }

  async mint(cluster: unknown, by: string): Promise<{ token: string; expiresAt: string; cluster: string }> {
    const agentClusters = this.certs.agentClusters();
    if (typeof cluster !== 'string' || !agentClusters.includes(cluster)) {
      throw new DomainError(
        ERROR_CODE.badRequest,
        `cluster must name a cluster with backend: agent in the clusters file (known: ${agentClusters.join(', ') || 'none'})`,
      );
    }
    const { token, expiresAt } = await this.tokens.mint(cluster);
    this.log.log({ cluster, by }, 'agent registration token minted');
    return { token, expiresAt: expiresAt.toISOString(), cluster };
  }

  /** Redeems a token and signs the agent's CSR. Every failure answers the same 401. */
  async register(body: unknown): Promise<{ certificate: string; caBundle: string; tunnelUrl: string }> {
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const { token, cluster, csr } = b;
    const reject = (reason: string): never => {
      this.log.warn(
        { cluster: typeof cluster === 'string' ? cluster.slice(0, 63) : undefined, reason },
        'agent registration rejected',
      );
      throw new DomainError(ERROR_CODE.auth, REGISTRATION_REJECTED);
    };
    const ca = this.certs.ca;
    if (!ca) return reject('no agent clusters are configured');
    if (
      typeof token !== 'string' ||
      typeof cluster !== 'string' ||
      typeof csr !== 'string' ||
      csr.length > 16_384
    )
      return reject('malformed request');
    const redeemed = await this.tokens.redeem(token, cluster);
    if (!redeemed.ok) return reject(`token ${redeemed.reason}`);
    if (!this.certs.agentClusters().includes(cluster)) return reject('cluster is not an agent cluster');
    try {
      const { certificate, current, droppedSuperseded } = await this.certs.register(cluster, csr);
      this.log.log({ cluster, serial: current.serial, droppedSuperseded }, 'agent registered');
      return { certificate, caBundle: ca.certPem, tunnelUrl: this.config.agentTunnel.url };
    } catch (err) {
      if (err instanceof CsrError) return reject(err.message);
      throw err;
    }
  }

  /**
   * Revokes a cluster's agent (admin): its certificate stops serving at once, the tunnel drops
   * and its streams end, every reconnect is refused until the agent registers again with a new
   * token. Audited as `agent_revoke`.
   */
  async revoke(
    cluster: string,
    by: string,
  ): Promise<{ cluster: string; revoked: true; droppedConnection: boolean }> {
    const agentClusters = this.certs.agentClusters();
    if (!agentClusters.includes(cluster) || !this.certs.identities)
      throw new DomainError(
        ERROR_CODE.notFound,
        `no cluster with backend: agent is named ${JSON.stringify(cluster.slice(0, 63))} (known: ${agentClusters.join(', ') || 'none'})`,
      );
    const { previous, droppedConnection } = await this.certs.revoke(cluster, by);
    await this.audit.write({
      verb: 'agent_revoke',
      actor: by,
      cluster,
      sessionId: '',
      body: {
        cluster,
        dropped_connection: droppedConnection,
        certificate_serial: previous?.serial ?? null,
        certificate_not_after: previous?.notAfter ?? null,
      },
    });
    this.log.warn({ cluster, by, droppedConnection, serial: previous?.serial }, 'agent revoked');
    return { cluster, revoked: true, droppedConnection };
  }
}
