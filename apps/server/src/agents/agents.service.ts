import * as k8s from '@kubernetes/client-node';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Metrics, Readiness } from '@periscope/observability';
import { ERROR_CODE, RPC_OP } from '@periscope/protocol';
import { PinoLogger } from 'nestjs-pino';

import { AuditStore } from '../audit/audit-store';
import { DomainError } from '../common/domain-error';
import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AgentGateway } from '../tunnel/agent-gateway';
import { TunnelMetrics } from '../tunnel/tunnel-metrics';
import { TunnelServer } from '../tunnel/tunnel-server';
import { AgentCa, CsrError, type AgentCaStore } from './agent-ca';
import { AgentIdentities, type AgentRecordStore } from './agent-identities';
import { DirectoryAgentRecords, DirectoryCaStore, SecretAgentRecords, SecretCaStore } from './ca-store';
import { RegistrationTokens } from './registration-tokens';

export const REGISTRATION_REJECTED = 'registration rejected';

/**
 * At most `max` log lines per key and window; answers whether to log this one and, at the first
 * line of a new window, how many the last window suppressed. Bounded: one entry per key (keys
 * are cluster names from the clusters file).
 */
export class LogBudget {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  note(key: string): { log: boolean; suppressed: number } {
    const t = this.now();
    let w = this.windows.get(key);
    let suppressed = 0;
    if (!w || t - w.start >= this.windowMs) {
      suppressed = w ? Math.max(0, w.count - this.max) : 0;
      w = { start: t, count: 0 };
      this.windows.set(key, w);
    }
    w.count++;
    return { log: w.count <= this.max, suppressed };
  }
}

/** Agent registration, the tunnel listener and the view of connected agents. */
@Injectable()
export class AgentsService implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('agents');
  readonly tokens = new RegistrationTokens();
  ca: AgentCa | undefined;
  tunnel: TunnelServer | undefined;
  /** the one current certificate of each agent cluster */
  identities: AgentIdentities | undefined;
  private readonly metrics: TunnelMetrics;
  private readonly rejectLog = new LogBudget(10, 10_000);

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    private readonly pino: PinoLogger,
    readiness: Readiness,
    metrics: Metrics,
    private readonly audit: AuditStore,
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
    let records: AgentRecordStore = new DirectoryAgentRecords(this.config.dataDir);
    if (secret) {
      const kc = new k8s.KubeConfig();
      kc.loadFromDefault();
      const api = kc.makeApiClient(k8s.CoreV1Api);
      store = new SecretCaStore(api, secret.namespace, secret.name);
      // Beside the CA Secret, never inside it: the CA key is written once and never rewritten.
      records = new SecretAgentRecords(api, secret.namespace, `${secret.name}-agents`);
    }
    this.ca = await AgentCa.loadOrCreate(store);
    const identities = (this.identities = new AgentIdentities(records));
    await identities.init();
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
      onContended: () => {
        this.metrics.contended.inc();
      },
      onHandshakeFailed: () => {
        this.metrics.handshakesFailed.inc();
      },
      maxSessionSeconds: this.config.clusterShell.maxSessionSeconds,
      identity: identities,
      onMuxEvent: (cluster, e) => {
        if (e.event === 'stream_reset') {
          this.metrics.resets.inc({ reason: String(e.code) });
          this.log.log({ cluster, ...e }, 'tunnel stream closed');
        }
        if (e.event === 'frame_rejected') {
          this.metrics.framesRejected.inc();
          // A flood of bad frames must not become a flood of log lines: a few per cluster and
          // window, then how many more (the metric counts them all).
          const n = this.rejectLog.note(cluster);
          if (n.log) this.log.warn({ cluster, reason: e.reason.slice(0, 200) }, 'tunnel frame rejected');
          if (n.suppressed > 0)
            this.log.warn(
              { cluster, suppressed: n.suppressed },
              'more tunnel frames rejected; not logged one by one (periscope_tunnel_frames_rejected_total)',
            );
        }
      },
      onAgentReady: (cluster) => {
        for (const l of this.readyListeners) l(cluster);
      },
      // Renewal needs the current certificate, and makes the new one current (compare-and-set).
      signRenewal: async (cluster, csr, from) => {
        if (!this.ca) throw new Error('no CA');
        const certificate = await this.ca.signAgentCsr(csr, cluster);
        if (from === undefined || !(await identities.renewed(cluster, from, certificate)))
          throw new Error('the certificate of this connection is no longer current');
        return certificate;
      },
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
      // The new certificate is the only one that serves the cluster from now on.
      const current = await this.identities?.registered(cluster, certificate);
      const dropped = this.tunnel?.supersede(cluster) ?? false;
      this.log.log({ cluster, serial: current?.serial, droppedSuperseded: dropped }, 'agent registered');
      return { certificate, caBundle: this.ca.certPem, tunnelUrl: this.config.agentTunnel.url };
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
    if (!this.agentClusters().includes(cluster) || !this.identities)
      throw new DomainError(
        ERROR_CODE.notFound,
        `no cluster with backend: agent is named ${JSON.stringify(cluster.slice(0, 63))} (known: ${this.agentClusters().join(', ') || 'none'})`,
      );
    const previous = this.identities.record(cluster)?.current ?? null;
    await this.identities.revoke(cluster, by);
    const droppedConnection =
      this.tunnel?.revoke(cluster, `the agent of ${cluster} was revoked by ${by}`) ?? false;
    this.audit.write({
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

  list(): Record<string, unknown>[] {
    return this.agentClusters().map((cluster) => {
      const link = this.tunnel?.link(cluster);
      const rec = this.identities?.record(cluster);
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
