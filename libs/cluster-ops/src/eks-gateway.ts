import type {
  PodListRequest,
  PodReadFileRequest,
  PodSummary,
  ShellProvisionRequest,
  ShellReapRequest,
  ShellTeardownRequest,
} from '@periscope/protocol';

import type { CaSource } from './cluster-ca';
import { describeEksCluster, EksError, regionOfArn, type EksClusterInfo } from './eks-describe';
import { eksToken, EKS_TOKEN_LIFETIME_MS, type AwsCredentials } from './eks-token';
import type { ExecTarget } from './exec/exec-session';
import type { CallOptions } from './abort';
import type { ShellAccessResult } from './shell/shell-access';
import { DirectGateway } from './direct-gateway';
import { LeanKubeConfig } from './kube-config';
import type { ClusterGateway, ExecChannel, ExecChannelHandlers, PhaseListener } from './gateway';

/** EKS accepts a token for 15 minutes after signing; a fresh one is made well before. */
export const EKS_TOKEN_REFRESH_MS = 10 * 60_000;

/** The outcome of one token renewal, for logs and metrics. */
export interface EksRenewal {
  ok: boolean;
  /** what failed, with what to do (never a token or a key) */
  error?: string;
  code?: EksError['code'];
  forced: boolean;
}

export interface EksTokenStatus {
  /** when the token in use was signed (ms since epoch); 0 before the first */
  issuedAt: number;
  /** the last renewal's failure while the token in use is still the older one */
  renewalError?: string;
}

export interface EksGatewayOptions {
  /** e.g. arn:aws:eks:eu-west-1:123456789012:cluster/prod */
  arn: string;
  region: string;
  credentials: () => Promise<AwsCredentials>;
  apiEndpoint?: string;
  /** how often the token is renewed in the background (default 10 min; must stay under 15 min) */
  refreshMs?: number;
  /** each background or forced renewal (log it, count it) */
  onRenewal?: (r: EksRenewal) => void;
  /** seams for tests */
  describe?: typeof describeEksCluster;
  now?: () => number;
}

const UNREACHABLE =
  /ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|socket hang up|connect timeout/i;

/**
 * An EKS cluster reached directly: endpoint and CA from DescribeCluster through the AWS SDK
 * (once, retried after a failure), a bearer token presigned by the SDK's SigV4 signer as the AWS
 * IAM authenticator makes it, renewed in the background every 10 minutes. A renewal that fails is
 * reported (`onRenewal`) and, once the token in use has expired, every call fails with the reason
 * instead of a bare 401. Everything else is the direct gateway.
 */
export class EksGateway implements ClusterGateway {
  private readonly name: string;
  private inner: Promise<{ gw: DirectGateway; kc: LeanKubeConfig; info: EksClusterInfo }> | undefined;
  private tokenAt = 0;
  private renewalError: EksError | undefined;
  private lastFailure: EksError | undefined;
  private renewing: Promise<EksRenewal> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: EksGatewayOptions) {
    this.name = opts.arn.slice(opts.arn.lastIndexOf('/') + 1);
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /**
   * The kubeconfig in use (tests, diagnostics). Its calls are raw (kube-http.ts, exec/) on one
   * keep-alive agent; `@kubernetes/client-node` loads only for shell provisioning, the access
   * check and the cluster-CA lookup, and follows each renewed token.
   */
  async kubeConfig(): Promise<LeanKubeConfig> {
    await this.ready();
    const v = await this.inner;
    if (!v) throw new Error('not ready');
    return v.kc;
  }

  /** When the token in use was made and whether the last renewal failed. */
  tokenStatus(): EksTokenStatus {
    return {
      issuedAt: this.tokenAt,
      ...(this.renewalError !== undefined ? { renewalError: this.renewalError.message } : {}),
    };
  }

  /**
   * Why the cluster is unavailable, when it is: the last DescribeCluster, credentials, renewal or
   * connection failure not followed by a success (for /api/clusters and the UI).
   */
  failure(): string | undefined {
    return this.lastFailure?.message ?? this.renewalError?.message;
  }

  /** Makes a fresh token now (operators, tests); resolves with the renewal's outcome. */
  async renewToken(): Promise<EksRenewal> {
    const v = await this.inner;
    if (!v) {
      await this.ready();
      return { ok: true, forced: true };
    }
    return this.renew(v, true);
  }

  /** Stops the background renewal. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    void this.inner?.then(
      (v) => {
        v.kc.close();
      },
      () => undefined,
    );
  }

  private async renew(v: { kc: LeanKubeConfig }, forced: boolean): Promise<EksRenewal> {
    this.renewing ??= (async (): Promise<EksRenewal> => {
      try {
        const credentials = await this.opts.credentials();
        v.kc.setToken(await eksToken({ cluster: this.name, region: this.opts.region, credentials }));
        this.tokenAt = this.now();
        this.renewalError = undefined;
        return { ok: true, forced };
      } catch (err) {
        const e = explainCredentials(err, this.name);
        this.renewalError = e;
        return { ok: false, error: e.message, code: e.code, forced };
      }
    })().finally(() => {
      this.renewing = undefined;
    });
    const result = await this.renewing;
    this.opts.onRenewal?.(result);
    return result;
  }

  private async ready(): Promise<DirectGateway> {
    this.inner ??= (async () => {
      const arnRegion = regionOfArn(this.opts.arn);
      if (arnRegion !== undefined && arnRegion !== this.opts.region)
        throw new EksError(
          'region-mismatch',
          `Region mismatch for EKS cluster ${this.name}: the ARN names ${arnRegion} but the clusters file says region ${this.opts.region}. Set region: ${arnRegion} (or fix the ARN).`,
        );
      const credentials = await this.opts.credentials().catch((err: unknown) => {
        throw explainCredentials(err, this.name);
      });
      const info = await (this.opts.describe ?? describeEksCluster)({
        name: this.name,
        region: this.opts.region,
        credentials,
        ...(this.opts.apiEndpoint !== undefined ? { apiEndpoint: this.opts.apiEndpoint } : {}),
      });
      const kc = LeanKubeConfig.withToken({
        name: this.name,
        server: info.endpoint,
        caPem: info.caPem,
        token: await eksToken({ cluster: this.name, region: this.opts.region, credentials }),
      });
      this.tokenAt = this.now();
      const v = { gw: new DirectGateway(kc, { preferClusterInfo: false }), kc, info };
      this.timer = setInterval(() => {
        void this.renew(v, false);
      }, this.opts.refreshMs ?? EKS_TOKEN_REFRESH_MS);
      this.timer.unref();
      return v;
    })().catch((err: unknown) => {
      this.inner = undefined;
      if (err instanceof EksError) this.lastFailure = err;
      throw err;
    });
    const v = await this.inner;
    const age = this.now() - this.tokenAt;
    if (age >= (this.opts.refreshMs ?? EKS_TOKEN_REFRESH_MS)) await this.renew(v, false);
    if (this.renewalError !== undefined && this.now() - this.tokenAt >= EKS_TOKEN_LIFETIME_MS)
      throw (this.lastFailure = new EksError(
        this.renewalError.code,
        `EKS cluster ${this.name} is unavailable: its token expired and renewing it failed. ${this.renewalError.message}`,
      ));
    return v.gw;
  }

  /** Runs a call on the direct gateway; a connection failure to a private endpoint says so. */
  private async run<T>(fn: (gw: DirectGateway) => Promise<T>): Promise<T> {
    const gw = await this.ready();
    try {
      const out = await fn(gw);
      this.lastFailure = undefined;
      return out;
    } catch (err) {
      const info = (await this.inner)?.info;
      const text = `${(err as { code?: string }).code ?? ''} ${(err as Error).message}`;
      if (info && UNREACHABLE.test(text))
        throw (this.lastFailure = new EksError(
          'endpoint-unreachable',
          info.publicAccess
            ? `The API server of EKS cluster ${this.name} (${info.endpoint}) did not answer: ${(err as Error).message}. Check the cluster's public access CIDRs and the server's egress.`
            : `The API server of EKS cluster ${this.name} (${info.endpoint}) is private (endpointPublicAccess false) and unreachable from the server: ${(err as Error).message}. Run the server in the cluster's VPC (or a peered one) or use the agent backend for this cluster.`,
        ));
      throw err;
    }
  }

  async clusterCa(opts?: CallOptions): Promise<{ caPem: string; server: string; source: CaSource }> {
    return this.run((gw) => gw.clusterCa(opts));
  }
  async provisionShell(
    req: ShellProvisionRequest,
    onPhase?: PhaseListener,
    opts?: CallOptions,
  ): Promise<void> {
    await this.run((gw) => gw.provisionShell(req, onPhase, opts));
  }
  async teardownShell(req: ShellTeardownRequest, opts?: CallOptions): Promise<void> {
    await this.run((gw) => gw.teardownShell(req, opts));
  }
  async reapShells(req: ShellReapRequest, opts?: CallOptions): Promise<string[]> {
    return this.run((gw) => gw.reapShells(req, opts));
  }
  async readPodFile(
    req: PodReadFileRequest,
    opts?: CallOptions,
  ): Promise<{ content: string; truncated: boolean }> {
    return this.run((gw) => gw.readPodFile(req, opts));
  }
  async openExec(target: ExecTarget, handlers: ExecChannelHandlers): Promise<ExecChannel> {
    return this.run((gw) => gw.openExec(target, handlers));
  }
  async listPods(req: PodListRequest, opts?: CallOptions): Promise<PodSummary[]> {
    return this.run((gw) => gw.listPods(req, opts));
  }
  async checkShellAccess(
    req: { namespace: string; tiers: readonly string[] },
    opts?: CallOptions,
  ): Promise<ShellAccessResult> {
    return this.run((gw) => gw.checkShellAccess(req, opts));
  }
}

function explainCredentials(err: unknown, cluster: string): EksError {
  if (err instanceof EksError) return err;
  const e = err as { name?: string; message?: string };
  const msg = (e.message ?? String(err)).slice(0, 300);
  if (/ExpiredToken|expired/i.test(`${e.name ?? ''} ${msg}`))
    return new EksError(
      'expired-credentials',
      `The server's AWS credentials for EKS cluster ${cluster} have expired (${msg}). Renew them: replace static keys; for IRSA the projected token file must be current; for Pod Identity its agent must answer.`,
    );
  return new EksError(
    'no-credentials',
    `The server could not get AWS credentials for EKS cluster ${cluster} (${e.name ?? 'error'}: ${msg}). Give it credentials through the SDK's chain: IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity, instance metadata, a profile, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.`,
  );
}
