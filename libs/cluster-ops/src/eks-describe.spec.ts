import { afterEach, describe, expect, it, vi } from 'vitest';

import { EksError, explainAwsError, regionOfArn } from './eks-describe';
import { EksGateway, type EksRenewal } from './eks-gateway';

const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  sessionToken: 'session/token+=',
};
const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const INFO = { endpoint: 'https://eks.example', caPem: CA, publicAccess: true, privateAccess: false };
const ctx = { cluster: 'prod', region: 'eu-west-1' };

describe(explainAwsError.name, () => {
  it('names what to do for each failure a person can fix', () => {
    const cases: [unknown, EksError['code'], RegExp][] = [
      [
        { name: 'ResourceNotFoundException', message: 'No cluster found' },
        'unknown-cluster',
        /No EKS cluster named "prod" in eu-west-1.*list-clusters/,
      ],
      [
        { name: 'AccessDeniedException', message: 'not authorized', $metadata: { httpStatusCode: 403 } },
        'access-denied',
        /eks:DescribeCluster/,
      ],
      [
        { name: 'ExpiredTokenException', message: 'The security token included in the request is expired' },
        'expired-credentials',
        /have expired.*Renew/,
      ],
      [
        { name: 'CredentialsProviderError', message: 'Could not load credentials from any providers' },
        'no-credentials',
        /IRSA.*Pod Identity/,
      ],
      [new Error('socket hang up'), 'failed', /DescribeCluster prod in eu-west-1 failed/],
    ];
    for (const [err, code, text] of cases) {
      const e = explainAwsError(err, ctx);
      expect(e.code).toBe(code);
      expect(e.message).toMatch(text);
    }
  });

  it('reads the region of an ARN', () => {
    expect(regionOfArn('arn:aws:eks:eu-west-1:123456789012:cluster/prod')).toBe('eu-west-1');
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
    const renewals: EksRenewal[] = [];
    const gw = new EksGateway({
      arn: 'arn:aws:eks:eu-west-1:123456789012:cluster/prod',
      region: 'eu-west-1',
      credentials: () => Promise.resolve(credentials),
      now: () => t,
      onRenewal: (r) => renewals.push(r),
      describe: (o) => {
        describes++;
        expect(o.name).toBe('prod');
        if (describes === 1) return Promise.reject(new Error('throttled'));
        return Promise.resolve(INFO);
      },
    });
    await expect(gw.clusterCa()).rejects.toThrow('throttled');
    expect(await gw.clusterCa()).toMatchObject({ server: 'https://eks.example', caPem: CA });
    const kc = await gw.kubeConfig();
    const first = kc.getCurrentUser().token ?? '';
    expect(first).toMatch(/^k8s-aws-v1\./);
    t += 9 * 60_000;
    await vi.advanceTimersByTimeAsync(9 * 60_000);
    expect(kc.getCurrentUser().token).toBe(first);
    expect(renewals).toEqual([]);
    t += 1 * 60_000;
    await vi.advanceTimersByTimeAsync(1 * 60_000);
    expect(kc.getCurrentUser().token).not.toBe(first);
    expect(renewals).toEqual([{ ok: true, forced: false }]);
    expect(describes).toBe(2);
    gw.close();
  });

  it('reports a failed renewal and, once the token has expired, is unavailable with the reason', async () => {
    let t = Date.parse('2026-11-26T12:00:00Z');
    vi.useFakeTimers({ now: t });
    let fail = false;
    const renewals: EksRenewal[] = [];
    const gw = new EksGateway({
      arn: 'arn:aws:eks:eu-west-1:123456789012:cluster/prod',
      region: 'eu-west-1',
      credentials: () =>
        fail
          ? Promise.reject(
              Object.assign(new Error('Token expired: the web identity token is expired'), {
                name: 'ExpiredTokenException',
              }),
            )
          : Promise.resolve(credentials),
      now: () => t,
      onRenewal: (r) => renewals.push(r),
      describe: () => Promise.resolve(INFO),
    });
    await gw.clusterCa();
    const forced = await gw.renewToken();
    expect(forced).toEqual({ ok: true, forced: true });
    fail = true;
    t += 10 * 60_000;
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(renewals.at(-1)).toMatchObject({ ok: false, code: 'expired-credentials', forced: false });
    expect(gw.tokenStatus().renewalError).toMatch(/have expired/);
    // still within the token's 15 minutes: calls go on with the older token
    await expect(gw.clusterCa()).resolves.toMatchObject({ server: 'https://eks.example' });
    t += 5 * 60_000;
    await expect(gw.clusterCa()).rejects.toThrow(
      /unavailable: its token expired and renewing it failed.*have expired/,
    );
    fail = false;
    expect((await gw.renewToken()).ok).toBe(true);
    expect(gw.tokenStatus().renewalError).toBeUndefined();
    await expect(gw.clusterCa()).resolves.toMatchObject({ server: 'https://eks.example' });
    gw.close();
  });

  it('refuses an entry whose ARN and region disagree, saying which to set', async () => {
    const gw = new EksGateway({
      arn: 'arn:aws:eks:eu-west-1:123456789012:cluster/prod',
      region: 'us-east-1',
      credentials: () => Promise.resolve(credentials),
      describe: () => Promise.resolve(INFO),
    });
    await expect(gw.clusterCa()).rejects.toMatchObject({
      code: 'region-mismatch',
      message: expect.stringMatching(
        /ARN names eu-west-1 but the clusters file says region us-east-1/,
      ) as unknown,
    });
  });
});
