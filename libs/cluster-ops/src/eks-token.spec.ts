import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';

import { eksToken } from './eks-token';

const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  sessionToken: 'session/token+=',
};
const now = new Date('2026-11-26T12:34:56Z');

/** The same presigned URL made by the AWS SDK's own SigV4 implementation. */
async function referenceUrl(cluster: string, region: string): Promise<URL> {
  const signer = new SignatureV4({
    credentials,
    region,
    service: 'sts',
    sha256: Hash.bind(null, 'sha256'),
    uriEscapePath: true,
  });
  const req = await signer.presign(
    {
      method: 'GET',
      protocol: 'https:',
      hostname: `sts.${region}.amazonaws.com`,
      path: '/',
      headers: { host: `sts.${region}.amazonaws.com`, 'x-k8s-aws-id': cluster },
      query: { Action: 'GetCallerIdentity', Version: '2011-06-15' },
    },
    { expiresIn: 60, signingDate: now },
  );
  const url = new URL(`https://${req.hostname}${req.path}`);
  for (const [k, v] of Object.entries(req.query ?? {})) url.searchParams.set(k, String(v));
  return url;
}

describe(eksToken.name, () => {
  it('matches the AWS SDK SigV4 presigned GetCallerIdentity URL for fixed credentials', async () => {
    const token = eksToken({ cluster: 'prod-eu', region: 'eu-west-1', credentials, now });
    expect(token.startsWith('k8s-aws-v1.')).toBe(true);
    const ours = new URL(Buffer.from(token.slice('k8s-aws-v1.'.length), 'base64url').toString());
    const ref = await referenceUrl('prod-eu', 'eu-west-1');
    expect(ours.host).toBe('sts.eu-west-1.amazonaws.com');
    expect(ours.searchParams.get('X-Amz-SignedHeaders')).toBe('host;x-k8s-aws-id');
    expect(ours.searchParams.get('X-Amz-Expires')).toBe('60');
    expect(ours.searchParams.get('X-Amz-Signature')).toBe(ref.searchParams.get('X-Amz-Signature'));
    expect(Object.fromEntries(ours.searchParams)).toEqual(Object.fromEntries(ref.searchParams));
  });

  it('signs the cluster name: another cluster gives another signature', () => {
    const a = eksToken({ cluster: 'a', region: 'eu-west-1', credentials, now });
    const b = eksToken({ cluster: 'b', region: 'eu-west-1', credentials, now });
    expect(a).not.toBe(b);
    expect(a).not.toContain('=');
  });
});
