import { describe, expect, it } from 'vitest';

import { EKS_TOKEN_PREFIX, eksToken } from './eks-token';

const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  sessionToken: 'session/token+=',
};
const now = new Date('2026-11-26T12:34:56Z');

/**
 * Known answers for these inputs, cross-checked when they were recorded by two independent
 * SigV4 implementations (a textbook one and the AWS SDK's): the URL is what `aws eks get-token`
 * and aws-iam-authenticator produce, parameters sorted by name, base64url without padding.
 */
const GOLDEN_WITH_SESSION =
  'k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjYxMTI2JTJGZXUtd2VzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNjExMjZUMTIzNDU2WiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNlY3VyaXR5LVRva2VuPXNlc3Npb24lMkZ0b2tlbiUyQiUzRCZYLUFtei1TaWduZWRIZWFkZXJzPWhvc3QlM0J4LWs4cy1hd3MtaWQmWC1BbXotU2lnbmF0dXJlPTgxZmE5MjJkYTk0MGI4NTY5MDFjZTEwNzMwODY5YjQ2N2VmOThhNGI3MTlhZGYyNzdiNGZmNGIzOGM2YjU0MmE';
const GOLDEN_STATIC =
  'k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjYxMTI2JTJGZXUtd2VzdC0xJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNjExMjZUMTIzNDU2WiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9YmE5MWI0M2JlMjQ5NTMyODY3NDMxZmI1NTAzMmYyYWRlYTY0YzBhY2QxODU2M2ZmNzFmODRlZWVlNmYxMjNiZg';

describe(eksToken.name, () => {
  it('is byte-identical to the known token for fixed credentials, with and without a session token', async () => {
    expect(await eksToken({ cluster: 'prod-eu', region: 'eu-west-1', credentials, now })).toBe(
      GOLDEN_WITH_SESSION,
    );
    expect(
      await eksToken({
        cluster: 'prod-eu',
        region: 'eu-west-1',
        credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
        now,
      }),
    ).toBe(GOLDEN_STATIC);
  });

  it('has the authenticator shape: prefix, base64url without padding, x-k8s-aws-id signed, 60 s', async () => {
    const token = await eksToken({ cluster: 'prod-eu', region: 'eu-west-1', credentials, now });
    expect(token.startsWith(EKS_TOKEN_PREFIX)).toBe(true);
    expect(token.slice(EKS_TOKEN_PREFIX.length)).toMatch(/^[A-Za-z0-9_-]+$/);
    const url = new URL(Buffer.from(token.slice(EKS_TOKEN_PREFIX.length), 'base64url').toString());
    expect(url.origin + url.pathname).toBe('https://sts.eu-west-1.amazonaws.com/');
    expect([...url.searchParams.keys()]).toEqual([
      'Action',
      'Version',
      'X-Amz-Algorithm',
      'X-Amz-Credential',
      'X-Amz-Date',
      'X-Amz-Expires',
      'X-Amz-Security-Token',
      'X-Amz-SignedHeaders',
      'X-Amz-Signature',
    ]);
    expect(url.searchParams.get('Action')).toBe('GetCallerIdentity');
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host;x-k8s-aws-id');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('60');
    expect(url.searchParams.get('X-Amz-Credential')).toBe('AKIDEXAMPLE/20261126/eu-west-1/sts/aws4_request');
  });

  it('signs the cluster name: another cluster gives another signature', async () => {
    const a = await eksToken({ cluster: 'a', region: 'eu-west-1', credentials, now });
    const b = await eksToken({ cluster: 'b', region: 'eu-west-1', credentials, now });
    expect(a).not.toBe(b);
    expect(a).not.toContain('=');
  });
});
