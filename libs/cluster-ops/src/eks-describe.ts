import { createHash, createHmac } from 'node:crypto';

import type { AwsCredentials } from './eks-token';

const sha256 = (data: string): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/**
 * SigV4 `Authorization` header for a GET without a body (what EKS DescribeCluster needs).
 * Returns the headers to send.
 */
export function signAwsGet(opts: {
  url: URL;
  region: string;
  service: string;
  credentials: AwsCredentials;
  now?: Date;
}): Record<string, string> {
  const now = opts.now ?? new Date();
  const amzDate = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = { host: opts.url.host, 'x-amz-date': amzDate };
  if (opts.credentials.sessionToken !== undefined)
    headers['x-amz-security-token'] = opts.credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((n) => `${n}:${headers[n] ?? ''}\n`).join('');
  const signedHeaders = names.join(';');
  const canonicalQuery = [...opts.url.searchParams.entries()]
    .map(([k, v]) => [encodeURIComponent(k), encodeURIComponent(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalPath = opts.url.pathname
    .split('/')
    .map((seg) => encodeURIComponent(decodeURIComponent(seg)))
    .join('/');
  const canonicalRequest = [
    'GET',
    canonicalPath,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    sha256(''),
  ].join('\n');
  const scope = `${day}/${opts.region}/${opts.service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const key = hmac(
    hmac(hmac(hmac(`AWS4${opts.credentials.secretAccessKey}`, day), opts.region), opts.service),
    'aws4_request',
  );
  const signature = createHmac('sha256', key).update(stringToSign).digest('hex');
  return {
    ...headers,
    authorization: `AWS4-HMAC-SHA256 Credential=${opts.credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
}

export interface EksClusterInfo {
  /** the apiserver URL */
  endpoint: string;
  caPem: string;
}

/**
 * The endpoint and CA of an EKS cluster from DescribeCluster (`eks:DescribeCluster` on the
 * cluster). `apiEndpoint` overrides `https://eks.<region>.amazonaws.com` (VPC endpoints).
 */
export async function describeEksCluster(opts: {
  name: string;
  region: string;
  credentials: AwsCredentials;
  apiEndpoint?: string;
  fetchImpl?: typeof fetch;
}): Promise<EksClusterInfo> {
  const base = (opts.apiEndpoint ?? `https://eks.${opts.region}.amazonaws.com`).replace(/\/$/, '');
  const url = new URL(`${base}/clusters/${encodeURIComponent(opts.name)}`);
  const headers = signAwsGet({ url, region: opts.region, service: 'eks', credentials: opts.credentials });
  const { host: _host, ...sent } = headers;
  const res = await (opts.fetchImpl ?? fetch)(url, {
    headers: sent,
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  if (!res.ok) {
    let message = text.slice(0, 500);
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      // not JSON
    }
    throw Object.assign(
      new Error(
        `EKS DescribeCluster ${opts.name} in ${opts.region} failed (HTTP ${res.status}): ${message}. The server's AWS identity needs eks:DescribeCluster on this cluster.`,
      ),
      { status: res.status },
    );
  }
  const body = JSON.parse(text) as {
    cluster?: { endpoint?: string; certificateAuthority?: { data?: string }; status?: string };
  };
  const endpoint = body.cluster?.endpoint;
  const ca = body.cluster?.certificateAuthority?.data;
  if (endpoint === undefined || ca === undefined)
    throw new Error(
      `EKS DescribeCluster ${opts.name}: no endpoint or CA in the answer (cluster status ${body.cluster?.status ?? 'unknown'})`,
    );
  return { endpoint, caPem: Buffer.from(ca, 'base64').toString('utf8') };
}
