import * as k8s from '@kubernetes/client-node';
import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';

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
export class AgentCertificates implements OnModuleInit {
  ca: AgentCa | undefined;
  /** the one current certificate of each agent cluster */
  identities: AgentIdentities | undefined;
  private loading: Promise<void> | undefined;
  private connections: LiveAgentConnections | undefined;

  constructor(@Inject(SERVER_CONFIG) private readonly config: ServerConfig) {}

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
