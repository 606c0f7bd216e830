import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as k8s from '@kubernetes/client-node';
import { discoverClusterCa } from '@periscope/cluster-ops';
import { describe, expect, inject, it } from 'vitest';

import { TestClusterClient } from '../k8s/cluster';

const cluster = new TestClusterClient(inject('cluster'));

function kcFor(user: { token?: string }, withCa: boolean): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'c',
        server: cluster.url,
        ...(withCa
          ? { caData: Buffer.from(cluster.info.caPem).toString('base64') }
          : { skipTLSVerify: true }),
      },
    ],
    users: [{ name: 'u', ...(user.token !== undefined ? { token: user.token } : {}) }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe(discoverClusterCa.name, () => {
  it('reads kube-public/cluster-info when allowed', async () => {
    const r = await discoverClusterCa(kcFor({ token: cluster.info.tokens.admin }, true), {
      preferClusterInfo: true,
    });
    expect(r).toMatchObject({ source: 'cluster-info', server: cluster.url });
    expect(r.caPem).toBe(cluster.info.caPem);
  });

  it('falls back to its own kubeconfig CA when cluster-info is unreadable', async () => {
    // alice may not read kube-public/cluster-info (only system:anonymous may, as kubeadm sets it up)
    const r = await discoverClusterCa(kcFor({ token: cluster.info.tokens.alice }, true), {
      preferClusterInfo: true,
    });
    expect(r.source).toBe('kubeconfig');
    expect(r.caPem).toBe(cluster.info.caPem);
  });

  it('falls back to the mounted service-account CA, and fails clearly without any', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ca-'));
    writeFileSync(join(dir, 'ca.crt'), cluster.info.caPem);
    const noCa = kcFor({ token: cluster.info.tokens.alice }, false);
    const r = await discoverClusterCa(noCa, { preferClusterInfo: true, saCaPath: join(dir, 'ca.crt') });
    expect(r.source).toBe('service-account');
    await expect(
      discoverClusterCa(noCa, { preferClusterInfo: true, saCaPath: join(dir, 'missing.crt') }),
    ).rejects.toThrow(
      /cannot find the cluster CA: kube-public\/cluster-info unreadable .*; no service-account CA at/,
    );
  });
});
