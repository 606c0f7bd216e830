import { Inject, Injectable, Optional, type OnModuleDestroy } from '@nestjs/common';
import {
  defaultAwsCredentialsProvider,
  DirectGateway,
  EksGateway,
  LeanKubeConfig,
  type ClusterGateway,
} from '@periscope/cluster-ops';
import { Metrics } from '@periscope/observability';
import { ERROR_CODE } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';
import { Counter, Registry } from 'prom-client';

import {
  effectiveShellSettings,
  shellSummary,
  type ClusterShellSummary,
} from '../config/effective-shell-settings';
import { DomainError } from '../common/domain-error';
import type { ClusterEntry } from '../config/clusters-file';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AgentGateway } from '../tunnel/agent-gateway';
import { AgentLinks } from '../tunnel/agent-links';
import {
  localFacts,
  mergeAgentFacts,
  type AgentFacts,
  type RemoteAgent,
} from '../tunnel/agent-status-shared';

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
  /**
   * the cluster's effective shell settings (server-wide values under its clusters-file overrides);
   * absent when the server has the cluster shell off
   */
  clusterShell?: ClusterShellSummary;
  connection: {
    /**
     * `unavailable`: the agent's last connection was refused at its handshake, or an eks cluster's
     * DescribeCluster, credentials, token renewal or endpoint failed (see `reason`)
     */
    state: 'direct' | 'connected' | 'disconnected' | 'never-connected' | 'unavailable';
    since: string | null;
    lastSeen: string | null;
    rttMs: number | null;
    /** why the agent or eks cluster is unavailable, with what to do, when it is */
    reason?: string;
  };
}

/** Every registered cluster, how to reach it (one gateway each), and what it offers. */
@Injectable()
export class ClusterRegistry implements OnModuleDestroy {
  private readonly gateways = new Map<string, ClusterGateway>();
  /** the direct clusters' configs, whose keep-alive sockets are closed at shutdown */
  private readonly kubeConfigs: LeanKubeConfig[] = [];
  /** the AWS SDK's default credential chain, shared by every eks cluster (it caches and refreshes) */
  private readonly awsCredentials = defaultAwsCredentialsProvider();
  private readonly eksRenewals: Counter<'cluster' | 'outcome'>;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly links: AgentLinks,
    private readonly log: PinoLogger,
    @Optional() metrics?: Metrics,
  ) {
    this.eksRenewals = new Counter({
      name: 'periscope_eks_token_renewals_total',
      help: 'EKS token renewals by cluster and outcome (ok, failed); a failed one leaves the cluster unavailable once the current token expires',
      labelNames: ['cluster', 'outcome'],
      registers: [metrics?.registry ?? new Registry()],
    });
  }

  /** Stops the eks gateways' background token renewal; closes idle apiserver connections. */
  onModuleDestroy(): void {
    for (const gw of this.gateways.values()) if (gw instanceof EksGateway) gw.close();
    for (const kc of this.kubeConfigs) kc.close();
  }

  /** Warnings of a direct gateway (token rotation, the leftover reaper), tagged with the cluster. */
  private gatewayLog(cluster: string): (fields: Record<string, unknown>, message: string) => void {
    return (fields, message) => {
      this.log.warn({ cluster, ...fields }, message);
    };
  }

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
        gw = new AgentGateway(() => this.links.link(e.name), e.name);
        break;
      }
      case 'kubeconfig': {
        // Raw calls (exec, pods, teardown, reaper); client-node loads on the first shell
        // provisioning or access check (LeanKubeConfig), or at once for an exec / auth-provider user.
        const kc = LeanKubeConfig.loadFromFile(e.kubeconfigPath, e.kubeconfigContext);
        this.kubeConfigs.push(kc);
        gw = new DirectGateway(kc, {
          preferClusterInfo: false,
          log: this.gatewayLog(e.name),
          ...(e.inClusterServer !== undefined ? { inClusterServer: e.inClusterServer } : {}),
        });
        break;
      }
      case 'in-cluster': {
        const kc = LeanKubeConfig.loadFromCluster();
        this.kubeConfigs.push(kc);
        gw = new DirectGateway(kc, { preferClusterInfo: false, log: this.gatewayLog(e.name) });
        break;
      }
      case 'eks':
        // Endpoint and CA from EKS DescribeCluster; tokens as the AWS IAM authenticator makes them,
        // with the server's AWS identity (IRSA, Pod Identity, env, profile).
        gw = new EksGateway({
          arn: e.arn,
          region: e.region,
          credentials: this.awsCredentials,
          onRenewal: (r) => {
            this.eksRenewals.inc({ cluster: e.name, outcome: r.ok ? 'ok' : 'failed' });
            if (r.ok) this.log.debug({ cluster: e.name, forced: r.forced }, 'renewed the EKS token');
            else
              this.log.warn(
                { cluster: e.name, code: r.code, err: r.error },
                'could not renew the EKS token; the cluster becomes unavailable when the current one expires',
              );
          },
        });
        break;
    }
    this.gateways.set(name, gw);
    return gw;
  }

  /**
   * Periscope's own namespaces on a cluster, which only the admin tier may exec into or list pods
   * of (design §10): the shell namespace while the cluster shell is on; the server's own namespace
   * on an in-cluster backend (PERISCOPE_PROTECTED_NAMESPACES); on an agent cluster what the agent
   * reported in its hello (its namespace and its chart's list); plus the cluster's
   * `protectedNamespaces` in the clusters file.
   */
  protectedNamespaces(name: string): string[] {
    const e = this.entry(name);
    const all = new Set<string>(e.protectedNamespaces);
    if (this.config.clusterShell.enabled) all.add(this.config.clusterShell.namespace);
    if (e.backend === 'in-cluster') for (const ns of this.config.protection.ownNamespaces) all.add(ns);
    if (e.backend === 'agent') {
      const hello = this.links.link(e.name)?.hello;
      if (hello?.namespace !== undefined) all.add(hello.namespace);
      for (const ns of hello?.protectedNamespaces ?? []) all.add(ns);
    }
    return [...all].sort();
  }

  private shell(e: ClusterEntry, agent: AgentFacts | undefined): { enabled: boolean; reason?: string } {
    const s = effectiveShellSettings(this.config.clusterShell, e);
    if (!s.enabled) return { enabled: false, reason: s.reason ?? 'cluster shell is disabled on the server' };
    if (e.backend !== 'agent') return { enabled: true };
    if (agent?.connected !== true || agent.version === null)
      return {
        enabled: false,
        reason:
          agent?.unavailable !== undefined
            ? `the agent is unavailable: ${agent.unavailable}`
            : 'the agent is not connected',
      };
    const cs = agent.clusterShell ?? undefined;
    if (cs === undefined)
      return {
        enabled: false,
        reason: `the agent (version ${agent.version}) predates the cluster shell; upgrade the periscope-agent chart`,
      };
    if (!cs.enabled)
      return {
        enabled: false,
        reason: 'the agent has cluster shell disabled (periscope-agent clusterShell.enabled)',
      };
    if (cs.namespace !== s.namespace) {
      return {
        enabled: false,
        reason: `the agent provisions in ${cs.namespace}, the server uses ${s.namespace}`,
      };
    }
    const missing = s.tiers.filter((t) => !cs.tiers.includes(t));
    if (missing.length > 0)
      return { enabled: false, reason: `the agent does not provision tier(s) ${missing.join(', ')}` };
    return { enabled: true };
  }

  /**
   * Every cluster as this replica sees it. `remote`: the other replicas' records of the agent
   * clusters (several replicas, AgentStatusShared.remote), so an agent whose tunnel another
   * replica holds shows connected here too; without it, this replica's own links only.
   */
  list(remote?: ReadonlyMap<string, RemoteAgent>): ClusterView[] {
    return this.config.clusters.map((e) => {
      const agent =
        e.backend === 'agent'
          ? mergeAgentFacts(localFacts(this.links.link(e.name), ''), remote?.get(e.name))
          : undefined;
      const shell = this.shell(e, agent);
      const settings = effectiveShellSettings(this.config.clusterShell, e);
      const gw = this.gateways.get(e.name);
      const eksFailure = gw instanceof EksGateway ? gw.failure() : undefined;
      const connection: ClusterView['connection'] =
        eksFailure !== undefined
          ? { state: 'unavailable', since: null, lastSeen: null, rttMs: null, reason: eksFailure }
          : e.backend !== 'agent'
            ? { state: 'direct', since: null, lastSeen: null, rttMs: null }
            : agentConnection(agent);
      return {
        name: e.name,
        backend: e.backend,
        environment: e.environment ?? null,
        tags: e.tags,
        execEnabled: e.exec.enabled ?? true,
        clusterShellEnabled: shell.enabled,
        ...(shell.reason !== undefined
          ? { clusterShellReason: shell.reason }
          : { clusterShellMode: settings.mode }),
        ...(this.config.clusterShell.enabled ? { clusterShell: shellSummary(settings) } : {}),
        connection,
      };
    });
  }
}

/** The `connection` of an agent cluster from its merged facts (undefined: never connected anywhere). */
export function agentConnection(agent: AgentFacts | undefined): ClusterView['connection'] {
  return {
    state:
      agent === undefined
        ? 'never-connected'
        : agent.connected
          ? 'connected'
          : agent.unavailable !== undefined
            ? 'unavailable'
            : agent.lastSeen === null
              ? 'never-connected'
              : 'disconnected',
    since: agent?.connectedSince ?? null,
    lastSeen: agent?.lastSeen ?? null,
    rttMs: agent?.lastRttMs ?? null,
    ...(agent?.unavailable !== undefined ? { reason: agent.unavailable } : {}),
  };
}
