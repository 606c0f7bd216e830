import { Injectable } from '@nestjs/common';
import { ERROR_CODE, RPC_OP } from '@periscope/protocol';

import { AgentCertificates } from '../agents/agent-certificates.service';
import { DomainError } from '../common/domain-error';
import { AgentLinks } from './agent-links';
import { AgentStatusShared } from './agent-status-shared';

/** What the admin sees of the agents: each one's link and certificate, and one request's record. */
@Injectable()
export class AgentStatus {
  constructor(
    private readonly links: AgentLinks,
    private readonly certs: AgentCertificates,
    private readonly shared: AgentStatusShared,
  ) {}

  /**
   * Every agent cluster: its link merged with the other replicas' records (several replicas:
   * every replica answers the same; `replica` is the one holding the tunnel, null when none).
   */
  async list(): Promise<Record<string, unknown>[]> {
    const remote = await this.shared.remote();
    return this.certs.agentClusters().map((cluster) => {
      const f = this.shared.facts(cluster, remote);
      const rec = this.certs.identities?.record(cluster);
      return {
        cluster,
        connected: f?.connected ?? false,
        replica: f?.replica ?? null,
        connectedSince: f?.connectedSince ?? null,
        lastSeen: f?.lastSeen ?? null,
        lastRttMs: f?.lastRttMs ?? null,
        openStreams: f?.openStreams ?? 0,
        certificateNotAfter: f?.certificateNotAfter ?? null,
        version: f?.version ?? null,
        clusterShell: f?.clusterShell ?? null,
        // the last connection refused at its handshake (an invalid hello), until a good one
        handshakeProblem: f?.handshakeProblem ?? null,
        revoked: rec?.current === null,
        ...(rec?.revokedAt !== undefined ? { revokedAt: rec.revokedAt } : {}),
        ...(rec?.revokedBy !== undefined ? { revokedBy: rec.revokedBy } : {}),
        // the certificate that may connect (null: none, revoked or not registered yet)
        certificate: rec?.current
          ? {
              serial: rec.current.serial,
              notAfter: rec.current.notAfter,
              since: rec.current.since,
              how: rec.current.how,
            }
          : null,
      };
    });
  }

  /** The joined server + agent record of one request id (both ends keep the last 1000). */
  async requestRecord(cluster: string, rid: string): Promise<Record<string, unknown>> {
    const link = this.links.link(cluster);
    if (!link) throw new DomainError(ERROR_CODE.notFound, `agent ${cluster} has never connected`);
    const server = link.ring.find((r) => r.rid === rid) ?? null;
    let agent: unknown = null;
    let agentError: string | undefined;
    try {
      agent = await link.request(RPC_OP.recentRequest, { rid }, { timeoutMs: 5000 });
    } catch (err) {
      agentError = (err as Error).message;
    }
    if (server === null && agent === null)
      throw new DomainError(
        ERROR_CODE.notFound,
        `no record of request ${rid} on either end (rings keep the last 1000 requests)`,
      );
    return { rid, cluster, server, agent, ...(agentError !== undefined ? { agentError } : {}) };
  }
}
