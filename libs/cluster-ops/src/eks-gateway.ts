import * as k8s from '@kubernetes/client-node';
import type {
  PodListRequest,
  PodReadFileRequest,
  PodSummary,
  ShellProvisionRequest,
  ShellReapRequest,
  ShellTeardownRequest,
} from '@periscope/protocol';

import type { CaSource } from './cluster-ca';
import { describeEksCluster, type EksClusterInfo } from './eks-describe';
import { eksToken, type AwsCredentials } from './eks-token';
import type { ExecTarget } from './exec/exec-session';
import type { CallOptions } from './abort';
import type { ShellAccessResult } from './shell/shell-access';
import { DirectGateway } from './direct-gateway';
import type { ClusterGateway, ExecChannel, ExecChannelHandlers, PhaseListener } from './gateway';

/** EKS tokens live 15 minutes; a fresh one is made well before. */
const TOKEN_REFRESH_MS = 10 * 60_000;

export interface EksGatewayOptions {
  /** e.g. arn:aws:eks:eu-west-1:123456789012:cluster/prod */
  arn: string;
  region: string;
  credentials: () => Promise<AwsCredentials>;
  apiEndpoint?: string;
  /** seams for tests */
  describe?: typeof describeEksCluster;
  now?: () => number;
}

/**
 * An EKS cluster reached directly: endpoint and CA from DescribeCluster (once, retried after a
 * failure), a bearer token made as the AWS IAM authenticator does and renewed every 10 minutes.
 * Everything else is the direct gateway.
 */
export class EksGateway implements ClusterGateway {
  private readonly name: string;
  private inner: Promise<{ gw: DirectGateway; kc: k8s.KubeConfig; info: EksClusterInfo }> | undefined;
  private tokenAt = 0;

  constructor(private readonly opts: EksGatewayOptions) {
    this.name = opts.arn.slice(opts.arn.lastIndexOf('/') + 1);
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private load(kc: k8s.KubeConfig, info: EksClusterInfo, token: string): void {
    kc.loadFromOptions({
      clusters: [
        { name: this.name, server: info.endpoint, caData: Buffer.from(info.caPem).toString('base64') },
      ],
      users: [{ name: 'eks', token }],
      contexts: [{ name: 'eks', cluster: this.name, user: 'eks' }],
      currentContext: 'eks',
    });
  }

  /** The kubeconfig in use (tests, diagnostics). */
  async kubeConfig(): Promise<k8s.KubeConfig> {
    await this.ready();
    const v = await this.inner;
    if (!v) throw new Error('not ready');
    return v.kc;
  }

  private async ready(): Promise<DirectGateway> {
    this.inner ??= (async () => {
      const credentials = await this.opts.credentials();
      const info = await (this.opts.describe ?? describeEksCluster)({
        name: this.name,
        region: this.opts.region,
        credentials,
        ...(this.opts.apiEndpoint !== undefined ? { apiEndpoint: this.opts.apiEndpoint } : {}),
      });
      const kc = new k8s.KubeConfig();
      this.load(kc, info, eksToken({ cluster: this.name, region: this.opts.region, credentials }));
      this.tokenAt = this.now();
      return { gw: new DirectGateway(kc, { preferClusterInfo: false }), kc, info };
    })().catch((err: unknown) => {
      this.inner = undefined;
      throw err;
    });
    const v = await this.inner;
    if (this.now() - this.tokenAt >= TOKEN_REFRESH_MS) {
      const credentials = await this.opts.credentials();
      this.load(v.kc, v.info, eksToken({ cluster: this.name, region: this.opts.region, credentials }));
      this.tokenAt = this.now();
    }
    return v.gw;
  }

  async clusterCa(opts?: CallOptions): Promise<{ caPem: string; server: string; source: CaSource }> {
    return (await this.ready()).clusterCa(opts);
  }
  async provisionShell(
    req: ShellProvisionRequest,
    onPhase?: PhaseListener,
    opts?: CallOptions,
  ): Promise<void> {
    await (await this.ready()).provisionShell(req, onPhase, opts);
  }
  async teardownShell(req: ShellTeardownRequest, opts?: CallOptions): Promise<void> {
    await (await this.ready()).teardownShell(req, opts);
  }
  async reapShells(req: ShellReapRequest, opts?: CallOptions): Promise<string[]> {
    return (await this.ready()).reapShells(req, opts);
  }
  async readPodFile(
    req: PodReadFileRequest,
    opts?: CallOptions,
  ): Promise<{ content: string; truncated: boolean }> {
    return (await this.ready()).readPodFile(req, opts);
  }
  async openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel> {
    return (await this.ready()).openExec(target, handlers);
  }
  async listPods(req: PodListRequest, opts?: CallOptions): Promise<PodSummary[]> {
    return (await this.ready()).listPods(req, opts);
  }
  async checkShellAccess(
    req: { namespace: string; tiers: readonly string[] },
    opts?: CallOptions,
  ): Promise<ShellAccessResult> {
    return (await this.ready()).checkShellAccess(req, opts);
  }
}
