import { Injectable } from '@nestjs/common';
import { ERROR_CODE, RPC_OP } from '@periscope/protocol';

import { AgentCertificates } from '../agents/agent-certificates.service';
import { DomainError } from '../common/domain-error';
import { AgentLinks } from './agent-links';

/** What the admin sees of the agents: each one's link and certificate, and one request's record. */
@Injectable()
export class AgentStatus {
  constructor(
    private readonly links: AgentLinks,
    private readonly certs: AgentCertificates,
  ) {}

  list(): Record<string, unknown>[] {
    return this.certs.agentClusters().map((cluster) => {
      const link = this.links.link(cluster);
      const rec = this.certs.identities?.record(cluster);
      return {
        cluster,
        connected: link?.connected ?? false,
        connectedSince: link?.connectedSince?.toISOString() ?? null,
        lastSeen: link?.lastSeen?.toISOString() ?? null,
        lastRttMs: link?.lastRttMs ?? null,
        openStreams: link?.mux.size ?? 0,
        certificateNotAfter: link?.hello?.certNotAfter ?? null,
        version: link?.hello?.version ?? null,
        clusterShell: link?.hello?.clusterShell ?? null,
        // the last connection refused at its handshake (an invalid hello), until a good one
        handshakeProblem: link?.handshakeProblem
          ? { at: link.handshakeProblem.at.toISOString(), reason: link.handshakeProblem.reason }
          : null,
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
