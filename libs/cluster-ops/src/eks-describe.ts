import type { AwsCredentials } from './eks-token';

export interface EksClusterInfo {
  /** the apiserver URL */
  endpoint: string;
  caPem: string;
  /** false when the API server endpoint is reachable only from inside the cluster's VPC */
  publicAccess: boolean;
  privateAccess: boolean;
}

/** Why an EKS call failed, for messages a person can act on. */
export type EksErrorCode =
  | 'unknown-cluster'
  | 'region-mismatch'
  | 'access-denied'
  | 'expired-credentials'
  | 'no-credentials'
  | 'endpoint-unreachable'
  | 'not-active'
  | 'failed';

export class EksError extends Error {
  constructor(
    readonly code: EksErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'EksError';
  }
}

/** The region named in an EKS cluster ARN (arn:aws:eks:<region>:<account>:cluster/<name>). */
export function regionOfArn(arn: string): string | undefined {
  return arn.split(':')[3] || undefined;
}

/** Turns an AWS SDK or credential error into an EksError whose message says what to do. */
export function explainAwsError(err: unknown, ctx: { cluster: string; region: string }): EksError {
  if (err instanceof EksError) return err;
  const e = err as {
    name?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
  };
  const name = e.name ?? e.Code ?? '';
  const status = e.$metadata?.httpStatusCode;
  const msg = (e.message ?? String(err)).slice(0, 300);
  if (name === 'ResourceNotFoundException')
    return new EksError(
      'unknown-cluster',
      `No EKS cluster named "${ctx.cluster}" in ${ctx.region} (DescribeCluster: ${msg}). Check the cluster name at the end of the ARN and the region in the clusters file; \`aws eks list-clusters --region ${ctx.region}\` lists the names.`,
      status,
    );
  if (/AccessDenied|UnauthorizedOperation|UnrecognizedClient|InvalidClientTokenId/.test(name))
    return new EksError(
      'access-denied',
      `AWS refused DescribeCluster on ${ctx.cluster} in ${ctx.region} (${name}: ${msg}). Give the server's AWS identity eks:DescribeCluster on this cluster (IAM policy on its role), and an EKS access entry or aws-auth mapping for Kubernetes access.`,
      status,
    );
  if (/ExpiredToken|RequestExpired|TokenRefreshRequired/.test(name) || /expired/i.test(msg))
    return new EksError(
      'expired-credentials',
      `The server's AWS credentials have expired (${name || 'error'}: ${msg}). Renew them: static keys must be replaced, a web identity token file (IRSA) must be refreshed by the kubelet, Pod Identity by its agent.`,
      status,
    );
  if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(msg))
    return new EksError(
      'no-credentials',
      `The server found no AWS credentials for ${ctx.cluster} (${msg}). Give it credentials through the SDK's chain: IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity, instance metadata, a profile, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.`,
      status,
    );
  return new EksError(
    'failed',
    `EKS DescribeCluster ${ctx.cluster} in ${ctx.region} failed (${name || 'error'}${status !== undefined ? `, HTTP ${status}` : ''}: ${msg}). The server's AWS identity needs eks:DescribeCluster on this cluster and a route to the EKS API.`,
    status,
  );
}

/**
 * The endpoint and CA of an EKS cluster from DescribeCluster (`eks:DescribeCluster` on the
 * cluster), through the AWS SDK's EKS client. `apiEndpoint` overrides the EKS API URL (VPC
 * endpoints); AWS_ENDPOINT_URL_EKS does the same through the SDK's own configuration.
 */
export async function describeEksCluster(opts: {
  name: string;
  region: string;
  credentials: AwsCredentials | (() => Promise<AwsCredentials>);
  apiEndpoint?: string;
  timeoutMs?: number;
}): Promise<EksClusterInfo> {
  // Loaded on first use: only a server with an eks cluster pays for the AWS SDK.
  const { DescribeClusterCommand, EKSClient } = await import('@aws-sdk/client-eks');
  const client = new EKSClient({
    region: opts.region,
    credentials: opts.credentials,
    maxAttempts: 2,
    ...(opts.apiEndpoint !== undefined ? { endpoint: opts.apiEndpoint } : {}),
  });
  try {
    const out = await client.send(new DescribeClusterCommand({ name: opts.name }), {
      abortSignal: AbortSignal.timeout(opts.timeoutMs ?? 15_000),
    });
    const c = out.cluster;
    const endpoint = c?.endpoint;
    const ca = c?.certificateAuthority?.data;
    if (endpoint === undefined || ca === undefined)
      throw new EksError(
        'not-active',
        `EKS cluster ${opts.name} in ${opts.region} has no endpoint or CA yet (status ${c?.status ?? 'unknown'}); wait until it is ACTIVE.`,
      );
    return {
      endpoint,
      caPem: Buffer.from(ca, 'base64').toString('utf8'),
      publicAccess: c?.resourcesVpcConfig?.endpointPublicAccess ?? true,
      privateAccess: c?.resourcesVpcConfig?.endpointPrivateAccess ?? false,
    };
  } catch (err) {
    throw explainAwsError(err, { cluster: opts.name, region: opts.region });
  } finally {
    client.destroy();
  }
}
