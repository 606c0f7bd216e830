export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** when the credentials stop working (temporary credentials: web identity, Pod Identity, IMDS) */
  expiration?: Date;
}

/** What `aws eks get-token` and aws-iam-authenticator put before the base64url presigned URL. */
export const EKS_TOKEN_PREFIX = 'k8s-aws-v1.';
/** The presigned URL's lifetime (seconds); EKS accepts the token for 15 minutes after signing. */
export const EKS_TOKEN_PRESIGN_SECONDS = 60;
/** How long EKS accepts a token after its signing time. */
export const EKS_TOKEN_LIFETIME_MS = 15 * 60_000;

/**
 * A bearer token for an EKS cluster, made as `aws eks get-token` and the AWS IAM authenticator
 * make it: an STS GetCallerIdentity URL presigned by the AWS SDK's SigV4 signer (60 s, header
 * `x-k8s-aws-id: <cluster>` signed), base64url-encoded without padding behind `k8s-aws-v1.`.
 * The apiserver's authenticator calls that URL to learn who we are.
 */
export async function eksToken(opts: {
  cluster: string;
  region: string;
  credentials: AwsCredentials;
  now?: Date;
}): Promise<string> {
  const hostname = `sts.${opts.region}.amazonaws.com`;
  // Loaded on first use: only a server with an eks cluster pays for the signer.
  const [{ Hash }, { SignatureV4 }] = await Promise.all([
    import('@smithy/hash-node'),
    import('@smithy/signature-v4'),
  ]);
  const signer = new SignatureV4({
    credentials: {
      accessKeyId: opts.credentials.accessKeyId,
      secretAccessKey: opts.credentials.secretAccessKey,
      ...(opts.credentials.sessionToken !== undefined ? { sessionToken: opts.credentials.sessionToken } : {}),
    },
    region: opts.region,
    service: 'sts',
    sha256: Hash.bind(null, 'sha256'),
    uriEscapePath: true,
  });
  const signed = await signer.presign(
    {
      method: 'GET',
      protocol: 'https:',
      hostname,
      path: '/',
      headers: { host: hostname, 'x-k8s-aws-id': opts.cluster },
      query: { Action: 'GetCallerIdentity', Version: '2011-06-15' },
    },
    { expiresIn: EKS_TOKEN_PRESIGN_SECONDS, ...(opts.now !== undefined ? { signingDate: opts.now } : {}) },
  );
  // Parameters sorted by name and the signature last, as aws-iam-authenticator and `aws eks
  // get-token` write them.
  const { 'X-Amz-Signature': signature, ...rest } = signed.query ?? {};
  const url = new URL(`https://${hostname}/`);
  const entries = Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [k, v] of [...entries, ['X-Amz-Signature', signature] as const])
    for (const one of Array.isArray(v) ? v : [v])
      if (typeof one === 'string') url.searchParams.append(k, one);
  return `${EKS_TOKEN_PREFIX}${Buffer.from(url.toString()).toString('base64url')}`;
}

/**
 * Credentials from the AWS SDK's default chain: environment, shared config/profile, web identity
 * (IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity / container credentials
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI), instance metadata. The provider caches temporary
 * credentials and refreshes them before they expire.
 */
export function defaultAwsCredentialsProvider(): () => Promise<AwsCredentials> {
  let provider: (() => Promise<AwsCredentials>) | undefined;
  return async () => {
    if (provider === undefined) {
      const { defaultProvider } = await import('@aws-sdk/credential-provider-node');
      provider = defaultProvider();
    }
    const c = await provider();
    return {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      ...(c.sessionToken !== undefined ? { sessionToken: c.sessionToken } : {}),
      ...(c.expiration !== undefined ? { expiration: c.expiration } : {}),
    };
  };
}
