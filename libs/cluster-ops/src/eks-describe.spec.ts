import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { describeEksCluster, signAwsGet } from './eks-describe';
import { EksGateway } from './eks-gateway';

const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  sessionToken: 'session/token+=',
};
const now = new Date('2026-11-26T12:34:56Z');
const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe(signAwsGet.name, () => {
  it('signs like the AWS SDK (SigV4, service eks)', async () => {
    const url = new URL('https://eks.eu-west-1.amazonaws.com/clusters/prod-1');
    const ours = signAwsGet({ url, region: 'eu-west-1', service: 'eks', credentials, now });
    const signer = new SignatureV4({
      credentials,
      region: 'eu-west-1',
      service: 'eks',
      sha256: Hash.bind(null, 'sha256'),
      applyChecksum: false,
    });
    const ref = await signer.sign(
      {
        method: 'GET',
        protocol: 'https:',
        hostname: url.hostname,
        path: url.pathname,
        headers: { host: url.host },
      },
      { signingDate: now },
    );
    expect(ours.authorization).toBe(ref.headers['authorization']);
    expect(ours['x-amz-security-token']).toBe(credentials.sessionToken);
  });
});

describe(describeEksCluster.name, () => {
  it('reads endpoint and CA, and explains a refusal', async () => {
    const seen: string[] = [];
    const ok = ((u: URL | string) => {
      seen.push(String(u));
      return Promise.resolve(
        new Response(
          JSON.stringify({
            cluster: {
              endpoint: 'https://ABC.gr7.eu-west-1.eks.amazonaws.com',
              certificateAuthority: { data: Buffer.from(CA).toString('base64') },
            },
          }),
        ),
      );
    }) as typeof fetch;
    expect(
      await describeEksCluster({ name: 'prod', region: 'eu-west-1', credentials, fetchImpl: ok }),
    ).toEqual({
      endpoint: 'https://ABC.gr7.eu-west-1.eks.amazonaws.com',
      caPem: CA,
    });
    expect(seen).toEqual(['https://eks.eu-west-1.amazonaws.com/clusters/prod']);
    const denied = (() =>
      Promise.resolve(
        new Response(JSON.stringify({ message: 'User is not authorized to perform: eks:DescribeCluster' }), {
          status: 403,
        }),
      )) as typeof fetch;
    await expect(
      describeEksCluster({ name: 'prod', region: 'eu-west-1', credentials, fetchImpl: denied }),
    ).rejects.toThrow(/HTTP 403.*not authorized.*needs eks:DescribeCluster/);
  });
});

describe(EksGateway.name, () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('describes once, renews the token every 10 minutes, and retries a failed describe', async () => {
    let t = Date.parse('2026-11-26T12:00:00Z');
    vi.useFakeTimers({ now: t });
    let describes = 0;
    const gw = new EksGateway({
      arn: 'arn:aws:eks:eu-west-1:123456789012:cluster/prod',
      region: 'eu-west-1',
      credentials: () => Promise.resolve(credentials),
      now: () => t,
      describe: (o) => {
        describes++;
        expect(o.name).toBe('prod');
        if (describes === 1) return Promise.reject(new Error('throttled'));
        return Promise.resolve({ endpoint: 'https://eks.example', caPem: CA });
      },
    });
    await expect(gw.clusterCa()).rejects.toThrow('throttled');
    expect(await gw.clusterCa()).toMatchObject({ server: 'https://eks.example', caPem: CA });
    const kc = await gw.kubeConfig();
    const first = kc.getCurrentUser()?.token ?? '';
    expect(first).toMatch(/^k8s-aws-v1\./);
    t += 9 * 60_000;
    vi.setSystemTime(t);
    await gw.clusterCa();
    expect(kc.getCurrentUser()?.token).toBe(first);
    t += 2 * 60_000;
    vi.setSystemTime(t);
    await gw.clusterCa();
    expect(kc.getCurrentUser()?.token).not.toBe(first);
    expect(describes).toBe(2);
  });
});
