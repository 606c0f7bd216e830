import * as k8s from '@kubernetes/client-node';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Metrics, Readiness } from '@periscope/observability';
import { ERROR_CODE, RPC_OP } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AgentGateway } from '../clusters/agent-gateway';
import { TunnelMetrics } from '../tunnel/tunnel-metrics';
import { TunnelServer } from '../tunnel/tunnel-server';
import { AgentCa, CsrError, type AgentCaStore } from './agent-ca';
import { DirectoryCaStore, SecretCaStore } from './ca-store';
import { RegistrationTokens } from './registration-tokens';

export const REGISTRATION_REJECTED = 'registration rejected';

/** Agent registration, the tunnel listener and the view of connected agents. */
@Injectable()
export class AgentsService implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('agents');
  readonly tokens = new RegistrationTokens();
  ca: AgentCa | undefined;
  tunnel: TunnelServer | undefined;
  private readonly metrics: TunnelMetrics;

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly pino: PinoLogger,
    readiness: Readiness,
    metrics: Metrics,
  ) {
    this.metrics = new TunnelMetrics(metrics.registry, () => this.tunnel);
    readiness.register('agent-tunnel', () =>
      this.agentClusters().length === 0 || this.tunnel ? undefined : 'tunnel listener not started',
    );
  }

  private readonly readyListeners: ((cluster: string) => void)[] = [];

  /** Called each time an agent completes its tunnel handshake (e.g. after it restarted). */
  onAgentReady(listener: (cluster: string) => void): void {
    this.readyListeners.push(listener);
  }

  agentClusters(): string[] {
    return this.config.clusters.filter((c) => c.backend === 'agent').map((c) => c.name);
  }

  async onModuleInit(): Promise<void> {
    if (this.agentClusters().length === 0) return;
    const secret = this.config.agentTunnel.caSecret;
    let store: AgentCaStore = new DirectoryCaStore(this.config.dataDir);
    if (secret) {
      const kc = new k8s.KubeConfig();
      kc.loadFromDefault();
      store = new SecretCaStore(kc.makeApiClient(k8s.CoreV1Api), secret.namespace, secret.name);
    }
    this.ca = await AgentCa.loadOrCreate(store);
    const t = this.config.agentTunnel;
    const serving = await this.ca.issueServerCert(t.sans);
    const agentNames = new Set(this.agentClusters());
    this.tunnel = new TunnelServer({
      host: t.address,
      port: t.port,
      caPem: this.ca.certPem,
      certPem: serving.certPem,
      keyPem: serving.keyPem,
      isAgentCluster: (c) => agentNames.has(c),
      admissionsPerSecond: 50,
      admissionBurst: 100,
      graceMs: t.graceSeconds * 1000,
      maxPendingRequests: 1000,
      pingIntervalMs: 20_000,
      log: this.pino.logger.child({ component: 'tunnel' }),
      onRequestDone: (op, seconds, outcome) => {
        this.metrics.rpcSeconds.observe({ op, outcome }, seconds);
      },
      onRefused: (reason) => {
        this.metrics.refusals.inc({ reason });
      },
      onMuxEvent: (cluster, e) => {
        if (e.event === 'stream_reset') {
          this.metrics.resets.inc({ reason: String(e.code) });
          this.log.log({ cluster, ...e }, 'tunnel stream closed');
        }
        if (e.event === 'frame_rejected')
          this.log.warn({ cluster, reason: e.reason }, 'tunnel frame rejected');
      },
      onAgentReady: (cluster) => {
        for (const l of this.readyListeners) l(cluster);
      },
      signRenewal: (cluster, csr) =>
        this.ca?.signAgentCsr(csr, cluster) ?? Promise.reject(new Error('no CA')),
    });
    await this.tunnel.start();
    this.log.log(`agent tunnel listening on ${t.address}:${t.port}`);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.tunnel?.stop();
  }

  mint(cluster: unknown, by: string): { token: string; expiresAt: string; cluster: string } {
    if (typeof cluster !== 'string' || !this.agentClusters().includes(cluster)) {
      throw new DomainError(
        ERROR_CODE.badRequest,
        `cluster must name a cluster with backend: agent in the clusters file (known: ${this.agentClusters().join(', ') || 'none'})`,
      );
    }
    const { token, expiresAt } = this.tokens.mint(cluster);
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
    if (!this.ca) return reject('no agent clusters are configured');
    if (
      typeof token !== 'string' ||
      typeof cluster !== 'string' ||
      typeof csr !== 'string' ||
      csr.length > 16_384
    )
      return reject('malformed request');
    const redeemed = this.tokens.redeem(token, cluster);
    if (!redeemed.ok) return reject(`token ${redeemed.reason}`);
    if (!this.agentClusters().includes(cluster)) return reject('cluster is not an agent cluster');
    try {
      const certificate = await this.ca.signAgentCsr(csr, cluster);
      this.log.log({ cluster }, 'agent registered');
      return { certificate, caBundle: this.ca.certPem, tunnelUrl: this.config.agentTunnel.url };
    } catch (err) {
      if (err instanceof CsrError) return reject(err.message);
      throw err;
    }
  }

  list(): Record<string, unknown>[] {
    return this.agentClusters().map((cluster) => {
      const link = this.tunnel?.link(cluster);
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
      };
    });
  }

  /** The gateway of an agent cluster (operations and exec over its tunnel). */
  gateway(cluster: string): AgentGateway {
    return new AgentGateway(() => this.tunnel?.link(cluster), cluster);
  }

  /** The joined server + agent record of one request id. */
  async requestRecord(cluster: string, rid: string): Promise<Record<string, unknown>> {
    const link = this.tunnel?.link(cluster);
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
