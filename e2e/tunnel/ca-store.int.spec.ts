import 'reflect-metadata';

import * as k8s from '@kubernetes/client-node';
import { Backoff } from '@periscope/protocol';
import { describe, expect, inject, it } from 'vitest';

import { TunnelClient } from '../../apps/agent/src/tunnel/tunnel-client';
import { AgentCa } from '../../apps/server/src/agents/agent-ca';
import { SecretCaStore } from '../../apps/server/src/agents/ca-store';
import { TestClusterClient } from '../k8s/cluster';
import { freePort } from '../k8s/ports';
import { log } from './tunnel-fixture';

const cluster = new TestClusterClient(inject('cluster'));

describe('agent CA in a Kubernetes Secret', () => {
  it('is created once and shared by concurrently starting replicas', async () => {
    const ns = `ca-${Date.now().toString(36)}`;
    await cluster.createNamespace(ns);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(cluster.info.adminKubeconfig);
    const store = (): SecretCaStore =>
      new SecretCaStore(kc.makeApiClient(k8s.CoreV1Api), ns, 'periscope-agent-ca');
    const [a, b, c] = await Promise.all([
      AgentCa.loadOrCreate(store()),
      AgentCa.loadOrCreate(store()),
      AgentCa.loadOrCreate(store()),
    ]);
    expect(b.certPem).toBe(a.certPem);
    expect(c.certPem).toBe(a.certPem);
    const again = await AgentCa.loadOrCreate(store());
    expect(again.certPem).toBe(a.certPem);
    const keys = await cluster.kubectlOk([
      '-n',
      ns,
      'get',
      'secret',
      'periscope-agent-ca',
      '-o',
      'jsonpath={.data}',
    ]);
    expect(Object.keys(JSON.parse(keys) as object).sort()).toEqual(['ca.crt', 'ca.key']);
  });
});

describe('agent watchdog', () => {
  it('gives up (so Kubernetes restarts it) when the server stays unreachable', async () => {
    const port = await freePort(); // nothing listens here
    let gaveUp = 0;
    const client = new TunnelClient({
      serverUrl: `https://127.0.0.1:${port}`,
      cluster: 'edge-1',
      identity: () => ({ certPem: '', keyPem: '', caPem: '' }),
      graceMs: 1000,
      giveUpAfterMs: 800,
      onGiveUp: () => {
        gaveUp++;
      },
      onOpen: () => undefined,
      hello: () => ({
        cluster: 'edge-1',
        version: 't',
        clusterShell: { enabled: false, tiers: [], namespace: 'x' },
        certNotAfter: '',
      }),
      log,
      backoff: new Backoff({ initialMs: 50, maxMs: 100, jitter: 0.5, healthyMs: 1000 }),
    });
    client.start();
    await new Promise((r) => setTimeout(r, 1200));
    client.stop();
    expect(gaveUp).toBe(1);
  });
});
