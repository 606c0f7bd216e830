import { Inject, Injectable } from '@nestjs/common';
import * as k8s from '@kubernetes/client-node';
import {
  defaultAwsCredentials,
  DirectGateway,
  EksGateway,
  type ClusterGateway,
} from '@periscope/cluster-ops';
import { ERROR_CODE } from '@periscope/protocol';

import { AgentsService } from '../agents/agents.service';
import { DomainError } from '../common/domain-error';
import type { ClusterEntry } from '../config/clusters-file';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';

export interface ClusterView {
  name: string;
  backend: ClusterEntry['backend'];
  environment: string | null;
  tags: Record<string, string>;
  execEnabled: boolean;
  clusterShellEnabled: boolean;
  /** why the cluster shell is off for this cluster, when it is */
  clusterShellReason?: string;
  clusterShellMode?: string;
  connection: {
    state: 'direct' | 'connected' | 'disconnected' | 'never-connected';
    since: string | null;
    lastSeen: string | null;
    rttMs: number | null;
  };
}

/** Every registered cluster, how to reach it (one gateway each), and what it offers. */
@Injectable()
export class ClusterRegistry {
  private readonly gateways = new Map<string, ClusterGateway>();

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly agents: AgentsService,
  ) {}

  entry(name: string): ClusterEntry {
    const e = this.config.clusters.find((c) => c.name === name);
    if (!e) throw new DomainError(ERROR_CODE.notFound, `no cluster named ${name}`);
    return e;
  }

  /** The gateway of a cluster, built on first use. Callers never branch on the backend. */
  gateway(name: string): ClusterGateway {
    const existing = this.gateways.get(name);
    if (existing) return existing;
    const e = this.entry(name);
    let gw: ClusterGateway;
    switch (e.backend) {
      case 'agent': {
        gw = this.agents.gateway(e.name);
        break;
      }
      case 'kubeconfig': {
        const kc = new k8s.KubeConfig();
        kc.loadFromFile(e.kubeconfigPath);
        if (e.kubeconfigContext !== undefined) kc.setCurrentContext(e.kubeconfigContext);
        gw = new DirectGateway(kc, { preferClusterInfo: false });
        break;
      }
      case 'in-cluster': {
        const kc = new k8s.KubeConfig();
        kc.loadFromCluster();
        gw = new DirectGateway(kc, { preferClusterInfo: false });
        break;
      }
      case 'eks':
        // Endpoint and CA from EKS DescribeCluster; tokens as the AWS IAM authenticator makes them,
        // with the server's AWS identity (IRSA, Pod Identity, env, profile).
        gw = new EksGateway({ arn: e.arn, region: e.region, credentials: defaultAwsCredentials });
        break;
    }
    this.gateways.set(name, gw);
    return gw;
  }

  private shell(e: ClusterEntry): { enabled: boolean; reason?: string } {
    const s = this.config.clusterShell;
    if (!s.enabled) return { enabled: false, reason: 'cluster shell is disabled on the server' };
    if (e.backend !== 'agent') return { enabled: true };
    const link = this.agents.tunnel?.link(e.name);
    const hello = link?.hello;
    if (!link?.connected || !hello) return { enabled: false, reason: 'the agent is not connected' };
    if (!hello.clusterShell.enabled)
      return {
        enabled: false,
        reason: 'the agent has cluster shell disabled (periscope-agent clusterShell.enabled)',
      };
    if (hello.clusterShell.namespace !== s.namespace) {
      return {
        enabled: false,
        reason: `the agent provisions in ${hello.clusterShell.namespace}, the server uses ${s.namespace}`,
      };
    }
    const missing = s.tiers.filter((t) => !hello.clusterShell.tiers.includes(t));
    if (missing.length > 0)
      return { enabled: false, reason: `the agent does not provision tier(s) ${missing.join(', ')}` };
    return { enabled: true };
  }

  list(): ClusterView[] {
    return this.config.clusters.map((e) => {
      const shell = this.shell(e);
      const link = e.backend === 'agent' ? this.agents.tunnel?.link(e.name) : undefined;
      const connection: ClusterView['connection'] =
        e.backend !== 'agent'
          ? { state: 'direct', since: null, lastSeen: null, rttMs: null }
          : {
              state: link === undefined ? 'never-connected' : link.connected ? 'connected' : 'disconnected',
              since: link?.connectedSince?.toISOString() ?? null,
              lastSeen: link?.lastSeen?.toISOString() ?? null,
              rttMs: link?.lastRttMs ?? null,
            };
      return {
        name: e.name,
        backend: e.backend,
        environment: e.environment ?? null,
        tags: e.tags,
        execEnabled: e.exec.enabled ?? true,
        clusterShellEnabled: shell.enabled,
        ...(shell.reason !== undefined
          ? { clusterShellReason: shell.reason }
          : { clusterShellMode: this.config.clusterShell.mode }),
        connection,
      };
    });
  }
}
