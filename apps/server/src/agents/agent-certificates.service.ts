import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { clientNode } from '@periscope/cluster-ops';

import { SERVER_CONFIG } from '../config/config.module';
import type { ServerConfig } from '../config/server-config';
import { AgentCa, type AgentCaStore } from './agent-ca';
import {
  AgentIdentities,
  type AgentCertificate,
  type AgentRecordStore,
  type CertVerdict,
  type PresentedCert,
} from './agent-identities';
import { DirectoryAgentRecords, DirectoryCaStore, SecretAgentRecords, SecretCaStore } from './ca-store';
import { identityChangeFeed } from './redis-agent-identity-feed';
import { SharedState } from '../shared-state/shared-state.service';

/**
 * Tells the other replicas that a cluster's agent identity changed (registered again, revoked),
 * so the one holding its tunnel reads the records again and drops a connection whose certificate
 * is no longer current. None with one replica; Redis pub/sub with several
 * (agents/redis-agent-identity-feed.ts).
 */
export interface IdentityChangeFeed {
  /** whether other replicas may exist (then the records are also checked periodically) */
  readonly shared: boolean;
  announce(cluster: string): Promise<void>;
  start(onChange: (cluster: string) => void): Promise<void>;
  stop(): Promise<void>;
}

/** With several replicas: every live connection's certificate is checked against the stored records this often. */
export const IDENTITY_RECHECK_MS = 30_000;

/**
 * What a change of identity needs of the live agent connections. The tunnel provides it at start
 * (`connectThrough`), so this folder never imports the tunnel.
 */
export interface LiveAgentConnections {
  /** drops the connection of `cluster` when its certificate is no longer current (its streams wait) */
  supersede(cluster: string): boolean;
  /** ends the link of `cluster` for good (revoked): its streams are reset, its connection dropped */
  revoke(cluster: string, reason: string): boolean;
}

/** TLS material of the tunnel listener: the agent CA and a serving certificate it issued. */
export interface TunnelTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/**
 * The agent CA and the one current certificate of each agent cluster, loaded once at start (from
 * the data directory, or Secrets beside the CA Secret), and every change to them: a registration,
 * a renewal over the tunnel, a revocation. Nothing is loaded without agent clusters.
 */
@Injectable()
export class AgentCertificates implements OnModuleInit, OnApplicationShutdown {
  ca: AgentCa | undefined;
  /** the one current certificate of each agent cluster */
  identities: AgentIdentities | undefined;
  private loading: Promise<void> | undefined;
  private connections: LiveAgentConnections | undefined;
  private readonly feed: IdentityChangeFeed;
  private recheck: NodeJS.Timeout | undefined;
  private readonly log = new Logger('agents');

  constructor(
    @Inject(SERVER_CONFIG) private readonly config: ServerConfig,
    @Optional() shared?: SharedState,
  ) {
    this.feed = identityChangeFeed(shared);
  }

  agentClusters(): string[] {
    return this.config.clusters.filter((c) => c.backend === 'agent').map((c) => c.name);
  }

  onModuleInit(): Promise<void> {
    return this.ready();
  }

  /** Resolves once the CA and the identity records are loaded (at once without agent clusters). */
  ready(): Promise<void> {
    this.loading ??= this.load();
    return this.loading;
  }

  private async load(): Promise<void> {
    if (this.agentClusters().length === 0) return;
    const secret = this.config.agentTunnel.caSecret;
    let store: AgentCaStore = new DirectoryCaStore(this.config.dataDir);
    let records: AgentRecordStore = new DirectoryAgentRecords(this.config.dataDir);
    if (secret) {
      const k8s = clientNode(); // loaded here: only a CA kept in a Secret needs it
      const kc = new k8s.KubeConfig();
      kc.loadFromDefault();
      const api = kc.makeApiClient(k8s.CoreV1Api);
      store = new SecretCaStore(api, secret.namespace, secret.name);
      // Beside the CA Secret, never inside it: the CA key is written once and never rewritten.
      records = new SecretAgentRecords(api, secret.namespace, `${secret.name}-agents`);
    }
    this.ca = await AgentCa.loadOrCreate(store);
    const identities = new AgentIdentities(records);
    await identities.init();
    this.identities = identities;
    if (this.feed.shared) await this.followOtherReplicas(identities);
  }

  /**
   * Several replicas: a change another replica announces is read at once; every live connection
   * is also checked periodically (an announcement lost while Redis was away). The records stay
   * where they are (the data directory, or the Secret: compare-and-set); only the news travels.
   */
  private async followOtherReplicas(identities: AgentIdentities): Promise<void> {
    const failed = (err: unknown): void => {
      this.log.warn(
        { err: (err as Error).message },
        'could not read the agent identity records again; retrying at the next check',
      );
    };
    await this.feed
      .start((cluster) => {
        identities.reload().then(() => {
          const rec = identities.record(cluster);
          if (rec?.current === null)
            this.connections?.revoke(
              cluster,
              `the agent of ${cluster} was revoked (through another replica)`,
            );
          else this.connections?.supersede(cluster);
        }, failed);
      })
      .catch((err: unknown) => {
        this.log.warn(
          { err: (err as Error).message },
          'could not follow agent identity changes of other replicas; checking every 30 s instead',
        );
      });
    this.recheck = setInterval(() => {
      identities.reload().then(() => {
        for (const cluster of this.agentClusters()) this.connections?.supersede(cluster);
      }, failed);
    }, IDENTITY_RECHECK_MS);
    this.recheck.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.recheck);
    await this.feed.stop();
  }

  /** The tunnel hands over its live connections; identity changes act on them from then on. */
  connectThrough(connections: LiveAgentConnections): void {
    this.connections = connections;
  }

  /** A serving certificate for the tunnel listener (its SANs from the configuration). */
  async tunnelTls(): Promise<TunnelTls> {
    await this.ready();
    const ca = this.loadedCa();
    const serving = await ca.issueServerCert(this.config.agentTunnel.sans);
    return { caPem: ca.certPem, certPem: serving.certPem, keyPem: serving.keyPem };
  }

  /** Is `cert` the current certificate of `cluster` (checked at every tunnel connect)? */
  verdict(cluster: string, cert: PresentedCert): Promise<CertVerdict> {
    return this.loadedIdentities().verdict(cluster, cert);
  }

  isCurrent(cluster: string, fingerprint: string | undefined): boolean {
    return this.identities?.isCurrent(cluster, fingerprint) ?? false;
  }

  /**
   * Signs a registering agent's CSR (throws `CsrError` for a bad one); the new certificate is the
   * only one that serves the cluster from now on, and a connection on the old one is dropped.
   */
  async register(
    cluster: string,
    csrPem: string,
  ): Promise<{ certificate: string; current: AgentCertificate; droppedSuperseded: boolean }> {
    const certificate = await this.loadedCa().signAgentCsr(csrPem, cluster);
    const current = await this.loadedIdentities().registered(cluster, certificate);
    const droppedSuperseded = this.connections?.supersede(cluster) ?? false;
    await this.feed.announce(cluster);
    return { certificate, current, droppedSuperseded };
  }

  /**
   * Signs a renewal CSR from a connected agent whose connection authenticated with certificate
   * `from` (fingerprint); the new certificate becomes current (compare-and-set). Rejects when
   * `from` is no longer current.
   */
  async renew(cluster: string, csrPem: string, from: string | undefined): Promise<string> {
    const certificate = await this.loadedCa().signAgentCsr(csrPem, cluster);
    if (from === undefined || !(await this.loadedIdentities().renewed(cluster, from, certificate)))
      throw new Error('the certificate of this connection is no longer current');
    return certificate;
  }

  /** Revokes the cluster's agent: no certificate serves it until it registers again; its link ends. */
  async revoke(
    cluster: string,
    by: string,
  ): Promise<{ previous: AgentCertificate | null; droppedConnection: boolean }> {
    const identities = this.loadedIdentities();
    const previous = identities.record(cluster)?.current ?? null;
    await identities.revoke(cluster, by);
    const droppedConnection =
      this.connections?.revoke(cluster, `the agent of ${cluster} was revoked by ${by}`) ?? false;
    await this.feed.announce(cluster);
    return { previous, droppedConnection };
  }

  private loadedCa(): AgentCa {
    if (!this.ca) throw new Error('the agent CA is not loaded (no agent clusters are configured)');
    return this.ca;
  }

  private loadedIdentities(): AgentIdentities {
    if (!this.identities)
      throw new Error('the agent identities are not loaded (no agent clusters are configured)');
    return this.identities;
  }
}
